"""`fewshot prepare omniglot-runs`: Lake et al.'s 20 one-shot runs (all_runs.zip) as a small store."""
from fewshot.data.lake_runs import prepare_lake_runs
from fewshot.data.registry import DatasetFormat, register_format


def _prepare(src, out, force: bool = False, progress: bool = True, **_ignored) -> dict:
    return prepare_lake_runs(src, out, force=force, progress=progress)


register_format(DatasetFormat(
    name="omniglot-runs",
    description="Lake et al.'s 20 within-alphabet 20-way 1-shot runs: 400 classes (run/class) x 2 drawings, "
                "28x28 like the Omniglot store; `fewshot episodes --protocol lake-runs` makes the 20 episodes",
    prepare=_prepare,
    variants={"all-runs-zip": "all_runs.zip (runNN/training/classMM.png, runNN/test/itemKK.png, "
                              "runNN/class_labels.txt) or its extracted runNN/ folders"},
))
