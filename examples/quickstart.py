"""The Python API end to end on the embedded synthetic set, in well under a minute on a CPU.

    python examples/quickstart.py [WORK_FOLDER]      # default: a temporary folder, removed at the end

Prepare a store, train a small ProtoNet, draw fixed episodes, evaluate the model and the raw-pixel floor,
print the table, a paired comparison, a DataFrame of the records and a few embeddings. Every object is
plain: the run summary and the records are dicts, the frame is pandas, embeddings are numpy.
(tests/test_examples.py runs this script.)
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import fewshot


def main(work: Path) -> None:
    store = fewshot.prepare("synthetic", work / "store")  # generated glyphs, 64/16/20 classes; reused if there
    print(f"store {store.root}: splits {', '.join(store.split_names)}")

    # A small, quick ProtoNet: any config key may be overridden (`fewshot list keys` lists them).
    config = fewshot.load_config("protonet", {"train.steps": 60, "episodes.ways": 10, "backbone.hidden": 32,
                                              "train.val_every": 30, "train.val_episodes": 50,
                                              "train.log_every": 10, "train.device": "cpu"})
    summary = fewshot.train_run(config, store, work / "run", progress=False, resume=(work / "run").exists())
    print(f"trained {summary['steps']} steps, best validation {summary['best']['val_acc']:.2f}% "
          f"at step {summary['best']['step']}")

    # Fixed test episodes, then one record (a dict) per episode file for the model and for raw pixels.
    episodes = [fewshot.make_episodes(store, ways=5, shots=shots, count=200, seed=0) for shots in (1, 5)]
    model = fewshot.evaluate_run(work / "run", episodes, out=work / "results", device="cpu")
    pixels = fewshot.evaluate_run("pixels", episodes, data=store, out=work / "results", device="cpu")
    print(fewshot.table(model + pixels))

    d = fewshot.compare(model[0], pixels[0])  # paired, on the same 200 episodes
    print(f"protonet - pixels, {d['setting']}: {d['mean']:+.2f} +- {d['ci95']:.2f} points (p = {d['p_ttest']:.2g})")

    frame = fewshot.records_frame(work / "results")  # records read back from the folder, as a DataFrame
    print(frame[["method", "setting", "n_episodes", "mean", "ci95"]].to_string(index=False))

    images = store.split("test").images[:8]  # uint8 (8, 28, 28, 1), straight from the store
    print(f"embeddings of {len(images)} test images: {fewshot.embed(work / 'run', images, device='cpu').shape}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(Path(folder))
