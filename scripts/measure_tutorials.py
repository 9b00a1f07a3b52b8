"""Measure the Tutorials page's trained figures and write docs/tutorial-results.json.

    DIGITS_DATA_DIR=/path/to/datasets .venv/bin/python scripts/measure_tutorials.py [--train-images N]
        [--epochs N] [--seed N] [--threads N] [--out PATH]

On a fixed, small budget (default: the first 5,000 training images, the whole 10,000-image test set,
3 epochs, seed 0), it trains tutorial 001's DemoModel twice, as written (Softmax before
CrossEntropyLoss) and with the Softmax removed; evaluates the as-written model on the training images
it learned from (what the tutorial's `test_ds`, loaded with train=True, reports) and on the real test
set; and trains tutorial 002's Digit for 50 steps with F.cross_entropy and with F.nll_loss from the same
weights. Runs go to a scratch folder that is deleted afterwards; the date, budget and machine are
written with the figures, and the page shows them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

import core  # noqa: E402,F401  (first: it sets GOMP_SPINCOUNT before torch loads)
from core.data import load_dataset  # noqa: E402
from core.tutorials import RESULTS_PATH, Budget, measure, write_results  # noqa: E402


def main() -> int:
    defaults = Budget()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=defaults.train_images)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args()
    import torch  # after core (see above)

    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(train_images=args.train_images, epochs=args.epochs, seed=args.seed)
    dataset = load_dataset("mnist")
    with tempfile.TemporaryDirectory(prefix="tutorial-runs-") as scratch:
        results = measure(dataset, Path(scratch), budget, progress=lambda text: print(text, flush=True))
    path = write_results(results, args.out)
    for name, training in results["trainings"].items():
        print(f"{name}: test accuracy {training['epochs'][-1]['test_accuracy']:.2%} after {budget.epochs} epochs")
    train_set = results["train_set_as_test_set"]
    print(f"train=True 'test' accuracy {train_set['reported_accuracy']:.2%}, "
          f"true test accuracy {train_set['true_test_accuracy']:.2%}")
    print(f"wrote {path} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
