"""Train the shipped default model with the project's own engine and write checkpoints/default/.

    .venv/bin/python scripts/train_default_model.py [--threads N] [--seed N]

Trains RECIPE below (fastcnn, core.data.Distortion: what other writers and pens do to a digit,
label smoothing, one-cycle AdamW, 12 epochs) in a scratch runs folder, then copies the run's
checkpoint of its last epoch (not the epoch that did best on the test set: that would pick on the
test set) to checkpoints/default/model.pt, its config record to config.json, and writes
metrics.json with the per-epoch numbers, the scores on the other-writers and other-pens check sets
(core.writers), the file size and the command that made it. The recipe is pinned here rather
than taken from a preset, so that changing a preset never changes what this command makes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from core import runs, writers  # noqa: E402
from core.checkpoints import build_from_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from core.training import EpochEnd, Failed, Finished, Stopped, TrainConfig, override, train  # noqa: E402

# The shipped model's recipe, as flat settings of core.training (see FLAT_FIELDS there).
RECIPE = {
    "arch": "fastcnn",  # 29k parameters: small, fast on a CPU, 99.4-99.5% with augmentation
    "distort": True,  # per image: rotation, slant, zoom, stretch, wobble, pen width, coarse scans (core.data)
    "label_smoothing": 0.1,  # softer probabilities: fewer 100% answers to odd drawings
    "optimizer": "adamw",
    "lr": 3e-3,  # peak of the one-cycle schedule
    "weight_decay": 5e-4,  # decoupled, per step
    "scheduler": "onecycle",
    "pct_start": 0.2,  # share of steps warming up to the peak
    "batch_size": 128,
    "epochs": 12,
    "normalization": "dataset",  # (x - 0.1307) / 0.3081
}
TARGET = ROOT / "checkpoints" / "default"
MAX_BYTES = 2 * 1024 * 1024  # the size limit for the shipped model
MIN_ACCURACY = 0.994  # MNIST test accuracy floor
MIN_WRITERS = 0.98  # accuracy floor on each core.writers check set


def train_run(threads: int, seed: int, runs_root: Path) -> Finished:
    """Train RECIPE to the end, printing one line per epoch; the Finished event."""
    config = override(TrainConfig(), **RECIPE, device="cpu", threads=threads, seed=seed, preset="default-model")
    for event in train(config, run_name="default-model", runs_root=runs_root):
        if isinstance(event, EpochEnd):
            print(f"epoch {event.epoch}/{event.total_epochs}: test accuracy {event.test_accuracy:.2%}, "
                  f"{event.seconds:.0f} s", flush=True)
        elif isinstance(event, Finished):
            return event
        elif isinstance(event, Failed | Stopped):
            raise SystemExit(f"training did not finish: {event.message}")
    raise SystemExit("training ended without a Finished event")


def writers_scores(model_path: Path) -> dict[str, dict[str, object]]:
    """Accuracy overall and per digit on core.writers' check sets, through the drawing pipeline."""
    loaded = load_checkpoint(model_path)
    scores: dict[str, dict[str, object]] = {}
    for name in writers.SETS:
        check = writers.check_set(name)
        found = writers.score(loaded.model, writers.model_inputs(check, loaded.normalization), check)
        scores[name] = {"accuracy": round(found.accuracy, 4), "count": found.count,
                        "per_digit": [round(a, 4) for a in found.per_class]}
        print(f"{name}: {found.accuracy:.2%} of {found.count}", flush=True)
    return scores


def export(finished: Finished, command: str) -> dict[str, object]:
    """Save the last epoch's weights into checkpoints/default/ with its config; write metrics.json."""
    TARGET.mkdir(parents=True, exist_ok=True)
    last = read_checkpoint(finished.run_dir / runs.LAST_CHECKPOINT)  # weights + meta, without the optimizer
    model = build_from_checkpoint(last)
    save_checkpoint(TARGET / "model.pt", model, last["meta"])
    shutil.copyfile(finished.run_dir / runs.CONFIG_FILE, TARGET / "config.json")
    size = (TARGET / "model.pt").stat().st_size
    metrics: dict[str, object] = {
        "recipe": RECIPE,
        "test_accuracy": finished.test_accuracy,  # of the last epoch (the shipped one), all 10,000 test images
        "epochs": finished.epochs,
        "train_seconds": round(finished.train_seconds, 1),
        "model_bytes": size,
        "writers": writers_scores(TARGET / "model.pt"),
        "command": command,
        "per_epoch": [asdict(row) for row in runs.read_metrics(finished.run_dir).rows],
    }
    (TARGET / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="default-model-") as scratch:
        finished = train_run(args.threads, args.seed, Path(scratch))
        metrics = export(finished, " ".join(["python scripts/train_default_model.py", *sys.argv[1:]]))
    size = (TARGET / "model.pt").stat().st_size
    print(f"checkpoints/default/model.pt: {size} bytes, test accuracy {finished.test_accuracy:.2%} "
          f"(last epoch, {finished.epochs})")
    scores = metrics["writers"]
    assert isinstance(scores, dict)
    weak = [name for name, found in scores.items() if found["accuracy"] < MIN_WRITERS]
    if finished.test_accuracy < MIN_ACCURACY or size > MAX_BYTES or weak:
        print(f"warning: below {MIN_ACCURACY:.1%} on MNIST, below {MIN_WRITERS:.0%} on {weak or 'no check set'}, "
              f"or above {MAX_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
