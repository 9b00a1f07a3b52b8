"""Digits that MNIST's training set never saw: how well does a model read other writers and pens?

Two check sets, both fed through the drawing pipeline (core.preprocess) exactly like a drawing or
an upload on the Draw page:

- **uci**: scikit-learn's copy of the UCI optical-digits test set (Alpaydin & Kaynak): 1,797 digits
  by the 13 writers of that test part (43 people filled in the forms, 30 of them for the training
  part), none of them MNIST's, scanned to 32x32 bitmaps and block-averaged to 8x8 with 17
  grey levels. Each is scaled up 10x with Lanczos resampling, as a scan would come in, and drawn
  dark on white. Other writers, other scanning: the harder set.
- **pens**: MNIST *test* digits (their writers are disjoint from the training set's) redrawn as a
  canvas stroke would be: scaled up to a 280x280 canvas at a random size and position, slanted,
  the pen made thinner or thicker, the stroke inked solid. Other pens, sizes, slants, positions.

`python -m core writers export DIR` writes both as PNG files in DIR/<set>/<label>/ (for
`python -m core predict --image DIR/uci/7`); `python -m core writers score` prints per-digit
accuracy of a checkpoint on both.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from core.checkpoints import load_checkpoint
from core.data import Normalization, load_dataset
from core.inference import DEFAULT_CHECKPOINT, evaluating, hook_lock
from core.preprocess import preprocess

UCI_UPSCALE = 10  # 8x8 -> 80x80, like a scan at a usable resolution
CANVAS = 280  # the Draw page's canvas side, px
PEN_SAMPLES = 2000  # MNIST test digits redrawn per "pens" set
SETS = ("uci", "pens")


@dataclass(frozen=True)
class CheckSet:
    """Images as a user would give them (RGB uint8, dark ink on white) and their labels."""

    name: str
    images: list[np.ndarray]  # each (H, W, 3) uint8
    labels: np.ndarray  # (N,) int64


def uci_digits() -> CheckSet:
    """The UCI optical digits (scikit-learn's load_digits), upscaled and drawn dark on white."""
    from sklearn.datasets import load_digits  # only here: sklearn costs a second to import

    digits = load_digits()
    images = []
    for small in digits.images:  # (8, 8) floats 0..16
        grey = Image.fromarray(np.rint(small * 255 / 16).astype(np.uint8))
        big = np.asarray(grey.resize((8 * UCI_UPSCALE,) * 2, Image.Resampling.LANCZOS))
        images.append(np.repeat((255 - big)[..., None], 3, axis=2))
    return CheckSet("uci", images, digits.target.astype(np.int64))


def redraw_with_pen(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One MNIST digit (28, 28) uint8 -> a canvas-like RGB image: other size, place, slant and pen."""
    height = int(rng.integers(110, 261))  # the digit's height on the canvas, px
    slant = float(rng.uniform(-0.35, 0.35))  # x moves by slant * y: about +-19 degrees
    big = Image.fromarray(digit).resize((height, height), Image.Resampling.BICUBIC)
    width = height + int(abs(slant) * height)
    offset = -slant * height if slant > 0 else 0.0
    big = big.transform((width, height), Image.Transform.AFFINE, (1, slant, offset, 0, 1, 0),
                        Image.Resampling.BICUBIC)
    pen = int(rng.integers(-2, 3)) * max(1, height // 70)  # thinner (<0) or thicker (>0), px per side
    if pen > 0:
        big = big.filter(ImageFilter.MaxFilter(2 * pen + 1))
    ink = np.asarray(big) > 96  # a canvas stroke is solid ink, no grey
    if pen < 0:  # a thinner pen, unless it would wipe out most of the stroke (then the pen as it was)
        thinner = np.asarray(big.filter(ImageFilter.MinFilter(-2 * pen + 1))) > 96
        ink = thinner if thinner.sum() >= 0.4 * ink.sum() else ink
    scale = min(1.0, (CANVAS - 8) / max(ink.shape))  # keep it on the canvas
    if scale < 1.0:
        shrunk = Image.fromarray(ink.astype(np.uint8) * 255).resize(
            (max(1, int(ink.shape[1] * scale)), max(1, int(ink.shape[0] * scale))), Image.Resampling.BILINEAR)
        ink = np.asarray(shrunk) > 127
    canvas = np.full((CANVAS, CANVAS), 255, np.uint8)
    top = int(rng.integers(0, CANVAS - ink.shape[0] + 1))
    left = int(rng.integers(0, CANVAS - ink.shape[1] + 1))
    canvas[top : top + ink.shape[0], left : left + ink.shape[1]][ink] = 0
    return np.repeat(canvas[..., None], 3, axis=2)


def redrawn_mnist(count: int = PEN_SAMPLES, seed: int = 0) -> CheckSet:
    """`count` MNIST test digits (a fixed random choice) redrawn with other pens, sizes, slants, places."""
    test = load_dataset("mnist")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(test.test_labels), size=count, replace=False)
    images = [redraw_with_pen(test.test_images[i].numpy(), rng) for i in picks]
    return CheckSet("pens", images, test.test_labels[picks].numpy().astype(np.int64))


def check_set(name: str) -> CheckSet:
    """One of SETS by name."""
    if name == "uci":
        return uci_digits()
    if name == "pens":
        return redrawn_mnist()
    raise ValueError(f"unknown check set {name!r}; choose one of {', '.join(SETS)}")


@dataclass(frozen=True)
class Score:
    """How a model did on one check set."""

    name: str
    accuracy: float
    per_class: list[float]  # accuracy of each true label 0-9
    count: int
    predictions: np.ndarray  # (N,) the model's answers
    correct: int  # right answers: 1,761 of 1,797 is 97.997%, which a rounded "98.00%" would hide
    per_digit_correct: list[int]  # right answers among each true label 0-9
    per_digit_count: list[int]  # images of each true label 0-9

    def record(self) -> dict[str, object]:
        """The figures as JSON (`writers score --json`, the default model's metrics.json): exact counts overall
        and per digit, so a percentage quoted anywhere can be worked out from them, and rounded accuracies."""
        return {"accuracy": round(self.accuracy, 6), "correct": self.correct, "count": self.count,
                "per_digit": [round(a, 4) for a in self.per_class], "per_digit_correct": self.per_digit_correct,
                "per_digit_count": self.per_digit_count}


def model_inputs(check: CheckSet, norm: Normalization) -> torch.Tensor:
    """Every image through the drawing pipeline: (N, 1, 28, 28), normalized as the model was trained."""
    inputs = [preprocess(image, norm).model_input for image in check.images]
    missing = [i for i, x in enumerate(inputs) if x is None]
    if missing:
        raise ValueError(f"{check.name}: {len(missing)} images have no ink (first: {missing[0]})")
    return torch.cat([x for x in inputs if x is not None])


@torch.inference_mode()
def score(model: torch.nn.Module, inputs: torch.Tensor, check: CheckSet, batch: int = 500) -> Score:
    """Accuracy overall and per true label of a 10-digit `model` on preprocessed `inputs` (in eval mode)."""
    with hook_lock(model), evaluating(model):
        outputs = [model(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    if outputs[0].shape[1] != 10:
        raise ValueError(f"the check sets need a model with the ten digits as outputs, not {outputs[0].shape[1]}")
    answers = torch.cat([out.argmax(1) for out in outputs]).numpy()
    right = answers == check.labels
    per_digit_correct = [int(right[check.labels == c].sum()) for c in range(10)]
    per_digit_count = [int((check.labels == c).sum()) for c in range(10)]
    per_class = [float(right[check.labels == c].mean()) for c in range(10)]
    return Score(check.name, float(right.mean()), per_class, len(right), answers, int(right.sum()),
                 per_digit_correct, per_digit_count)


def export(folder: Path, names: tuple[str, ...] | list[str] = SETS) -> dict[str, int]:
    """Write check sets as PNGs in folder/<set>/<label>/<set>-<index>.png; counts per set."""
    counts = {}
    for name in names:
        check = check_set(name)
        for index, (image, label) in enumerate(zip(check.images, check.labels, strict=True)):
            target = folder / name / str(int(label))
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(target / f"{name}-{index:05d}.png")
        counts[name] = len(check.labels)
    return counts


def _cmd_score(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.checkpoint)
    if loaded.dataset != "mnist" or loaded.task != "multiclass":
        print(f"error: {args.checkpoint} answers {loaded.task} on {loaded.dataset}; the check sets are handwritten "
              "digits, scored by a 10-digit MNIST model", file=sys.stderr)
        return 2
    result = {}
    for name in args.sets:
        check = check_set(name)
        found = score(loaded.model, model_inputs(check, loaded.normalization), check)
        result[name] = found.record()
        if not args.json:
            digits = "  ".join(f"{c}: {a:.1%}" for c, a in enumerate(found.per_class))
            print(f"{name}: {found.correct} of {found.count} right ({found.accuracy:.3%})   {digits}")
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "sets": result}))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    counts = export(Path(args.folder), args.sets)
    print(", ".join(f"{name}: {count} images in {Path(args.folder) / name}" for name, count in counts.items()))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core writers score|export`."""
    writers = subparsers.add_parser("writers", help="digits from other writers and pens: score a model, export PNGs")
    actions = writers.add_subparsers(dest="action", required=True)
    scoring = actions.add_parser("score", help="per-digit accuracy of a checkpoint on the check sets")
    scoring.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                         help="a checkpoint file or a run folder (its best checkpoint); default: the shipped model")
    scoring.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    scoring.add_argument("--json", action="store_true", help="one JSON object on stdout")
    scoring.set_defaults(func=_cmd_score)
    exporting = actions.add_parser("export", help="write the check sets as PNG files, one folder per label")
    exporting.add_argument("folder")
    exporting.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    exporting.set_defaults(func=_cmd_export)


if __name__ == "__main__":
    sys.exit("run it as `python -m core writers ...`")
