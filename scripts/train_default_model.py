"""Train the shipped default model with the project's own engine and write checkpoints/default/.

    .venv/bin/python scripts/train_default_model.py [--threads N] [--seed N]

Runs the `best` preset (fastcnn, light random-affine augmentation, label smoothing, one-cycle
AdamW, 12 epochs) in a scratch runs folder, then copies the run's best checkpoint to
checkpoints/default/model.pt, its config record to config.json, and writes metrics.json with the
per-epoch numbers, the file size and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from core import runs  # noqa: E402
from core.train import EpochEnd, Failed, Finished, Stopped, preset_config, train  # noqa: E402

PRESET = "best"
TARGET = ROOT / "checkpoints" / "default"
MAX_BYTES = 2 * 1024 * 1024  # the size limit for the shipped model
MIN_ACCURACY = 0.993  # the accuracy floor


def train_run(threads: int, seed: int, runs_root: Path) -> Finished:
    """Run the preset to the end, printing one line per epoch; the Finished event."""
    config = preset_config(PRESET, device="cpu", threads=threads, seed=seed)
    for event in train(config, run_name="default-model", runs_root=runs_root):
        if isinstance(event, EpochEnd):
            print(f"epoch {event.epoch}/{event.total_epochs}: test accuracy {event.test_accuracy:.2%}, "
                  f"{event.seconds:.0f} s", flush=True)
        elif isinstance(event, Finished):
            return event
        elif isinstance(event, Failed | Stopped):
            raise SystemExit(f"training did not finish: {event.message}")
    raise SystemExit("training ended without a Finished event")


def export(finished: Finished, command: str) -> dict[str, object]:
    """Copy the best checkpoint and config into checkpoints/default/ and write metrics.json."""
    TARGET.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(finished.best_checkpoint, TARGET / "model.pt")
    shutil.copyfile(finished.run_dir / runs.CONFIG_FILE, TARGET / "config.json")
    size = (TARGET / "model.pt").stat().st_size
    metrics: dict[str, object] = {
        "preset": PRESET,
        "test_accuracy": finished.best_test_accuracy,  # of the saved (best) epoch, on all 10,000 test images
        "best_epoch": finished.best_epoch,
        "epochs": finished.epochs,
        "train_seconds": round(finished.train_seconds, 1),
        "model_bytes": size,
        "command": command,
        "per_epoch": runs.read_metrics(finished.run_dir),
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
        export(finished, " ".join(["python scripts/train_default_model.py", *sys.argv[1:]]))
    size = (TARGET / "model.pt").stat().st_size
    print(f"checkpoints/default/model.pt: {size} bytes, "
          f"test accuracy {finished.best_test_accuracy:.2%} (epoch {finished.best_epoch})")
    if finished.best_test_accuracy < MIN_ACCURACY or size > MAX_BYTES:
        print(f"warning: below {MIN_ACCURACY:.1%} or above {MAX_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
