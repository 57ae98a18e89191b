"""`fewshot list keys`: every config key with its default and a line of help."""
from __future__ import annotations

from fewshot.cli import main
from fewshot.config import KEY_HELP, VALID_KEYS


def test_every_config_key_has_a_line_of_help():
    assert sorted(set(VALID_KEYS) - set(KEY_HELP)) == []
    assert sorted(set(KEY_HELP) - set(VALID_KEYS)) == []


def test_list_keys_prints_key_default_and_help(capsys):
    assert main(["list", "keys", "--config", "protonet-omniglot"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == set(VALID_KEYS)
    assert lines["optim.lr"].split(None, 2)[1:] == ["0.001", KEY_HELP["optim.lr"]]
    assert "20 (protonet-omniglot: 60)" in lines["episodes.ways"]
    assert KEY_HELP["cir.apply_to"] in lines["cir.apply_to"]
