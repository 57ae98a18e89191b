"""The head registry and config wiring: names, options from eval.* keys, labels, errors."""
from __future__ import annotations

import pytest

from fewshot.config import DEFAULTS, config_digest, load_config, run_digest, with_default_head
from fewshot.errors import FewshotError
from fewshot.evaluate.heads import create_head, head_from_config, list_heads


def test_every_head_is_listed_and_nearest_prototype_is_the_default():
    assert list_heads() == ["finetune", "logistic", "nearest_prototype", "simpleshot"]
    assert DEFAULTS["eval"]["head"] == "nearest_prototype"
    head = head_from_config(DEFAULTS["eval"])
    assert head.name == "nearest_prototype" and head.norm.kind == "UN" and head.distance == "euclidean"


def test_options_come_from_the_eval_keys():
    config = load_config("protonet", ["eval.head=logistic", "eval.head_C=0.25"])
    head = head_from_config(config["eval"])
    assert (head.name, head.C, head.norm.kind) == ("logistic", 0.25, "L2N")
    assert head.describe() == {"name": "logistic", "norm": "L2N", "C": 0.25, "label": "logistic(C=0.25)"}
    config = load_config("protonet", ["eval.head=finetune", "eval.head_classifier=cosine", "eval.head_seed=3"])
    head = head_from_config(config["eval"])
    assert (head.classifier, head.seed, head.epochs, head.batch, head.norm.kind) == ("cosine", 3, 100, 4, "UN")
    assert head.label() == "finetune(classifier=cosine, seed=3)"
    simpleshot = head_from_config(load_config("protonet", ["eval.head=simpleshot"])["eval"])
    assert simpleshot.norm.kind == "CL2N" and simpleshot.needs_train_split and simpleshot.label() == "simpleshot"
    assert create_head("simpleshot", norm="L2N").label() == "simpleshot(norm=L2N)"


def test_bad_names_and_values_are_one_line_errors():
    with pytest.raises(FewshotError, match="unknown head 'logistc' \\(did you mean 'logistic'\\?\\)"):
        create_head("logistc")
    with pytest.raises(FewshotError, match="eval.head_norm='CL2'; choose one of: UN, L2N, CL2N"):
        create_head("simpleshot", norm="CL2")
    with pytest.raises(FewshotError, match="eval.head_C must be positive"):
        create_head("logistic", C=0.0)
    with pytest.raises(FewshotError, match="eval.head_classifier='svm'"):
        create_head("finetune", classifier="svm")
    with pytest.raises(FewshotError, match="eval.head_C must be a float"):
        load_config("protonet", ["eval.head_C=big"])


def test_digests_ignore_default_heads_and_runs_ignore_heads():
    plain = load_config("protonet")
    old = {**plain, "eval": {"distance": "euclidean", "batch_episodes": 250}}  # a config from before heads
    assert config_digest(plain) == config_digest(old) == run_digest(plain)
    logistic = load_config("protonet", ["eval.head=logistic"])
    assert config_digest(logistic) != config_digest(plain)  # records of two heads are told apart
    assert run_digest(logistic) == run_digest(plain)  # one run serves both
    assert config_digest(with_default_head(logistic)) == config_digest(plain)
    assert logistic["eval"]["head"] == "logistic"  # with_default_head copied, did not change it
