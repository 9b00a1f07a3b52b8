"""Numbers and pictures for exploring a dataset: samples, class means, normalization, augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.data import (
    NORMALIZATIONS,
    Augmentation,
    DataError,
    Dataset,
    normalization,
    random_affine,
    to_model_input,
)


def sample_indices(labels: torch.Tensor, classes: list[int], count: int, seed: int) -> torch.Tensor:
    """`count` random indices (fewer if the classes hold fewer) among images whose label is in `classes`."""
    if not classes:
        return torch.empty(0, dtype=torch.int64)
    candidates = torch.nonzero(torch.isin(labels, torch.tensor(classes)), as_tuple=True)[0]
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(candidates), generator=generator)[:count]
    return candidates[chosen]


@dataclass(frozen=True)
class ClassBalance:
    """The smallest and the largest class of a split, by image count."""

    smallest: str  # class name
    smallest_count: int  # images
    largest: str
    largest_count: int

    @property
    def equal(self) -> bool:
        """True when every class has the same number of images."""
        return self.smallest_count == self.largest_count


def class_balance(counts: Sequence[int], classes: Sequence[str]) -> ClassBalance:
    """The smallest and largest of `counts` (one per class, in class order), named; ties go to the first."""
    if not counts or len(counts) != len(classes):
        raise ValueError(f"expected one count per class, got {len(counts)} counts for {len(classes)} classes")
    low = min(range(len(counts)), key=counts.__getitem__)
    high = max(range(len(counts)), key=counts.__getitem__)
    return ClassBalance(classes[low], int(counts[low]), classes[high], int(counts[high]))


MEAN_CHUNK = 10_000  # images converted to float at a time: 31 MB for MNIST, not the whole 188 MB


def class_mean_images(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The average image of each class, float (num_classes, 28, 28) on the 0-255 scale."""
    flat = images.reshape(len(images), -1)  # (N, 784) uint8
    # Per-class sums as one-hot (C, n) @ (n, 784) products, a chunk at a time: 2-3x faster than a masked sum
    # per class. Every sum is a whole number below N * 255, exact in float32 up to 2**24 (MNIST: 15.3 M).
    dtype = torch.float32 if len(flat) * 255 < 2**24 else torch.float64
    sums = torch.zeros(num_classes, flat.shape[1], dtype=dtype)
    for start in range(0, len(flat), MEAN_CHUNK):
        chunk = slice(start, start + MEAN_CHUNK)
        sums += torch.nn.functional.one_hot(labels[chunk], num_classes).T.to(dtype) @ flat[chunk].to(dtype)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1)
    return (sums.double() / counts[:, None]).to(torch.float32).view(num_classes, *images.shape[1:])


@dataclass(frozen=True)
class NormalizationRow:
    """One preset: its formula and where three example pixel values land."""

    preset: str
    description: str
    mean: float
    std: float
    low: float  # model input for a black pixel (0)
    high: float  # model input for a white pixel (255)
    examples: dict[int, float]  # raw pixel value -> model input


def normalization_table(dataset: Dataset, pixels: tuple[int, ...] = (0, 64, 128, 255)) -> list[NormalizationRow]:
    """Every normalization preset applied to a few raw pixel values, with the computed mean and std."""
    raw = torch.tensor(pixels, dtype=torch.uint8).view(1, 1, -1)  # (1, 1, P): one tiny "image"
    rows = []
    for preset, description in NORMALIZATIONS.items():
        norm = normalization(preset, dataset)
        values = to_model_input(raw, norm).flatten().tolist()
        low, high = norm.value_range()
        examples = dict(zip(pixels, values, strict=True))
        rows.append(NormalizationRow(preset, description, norm.mean, norm.std, low, high, examples))
    return rows


def augmentation_preview(image: torch.Tensor, draws: int, seed: int, aug: Augmentation | None = None) -> torch.Tensor:
    """One uint8 image (28, 28) under `draws` independent random affines: uint8 (draws, 28, 28)."""
    if image.dim() != 2:
        raise DataError(f"expected one 2-D image, got shape {tuple(image.shape)}")
    batch = image.to(torch.float32).expand(draws, 1, *image.shape)  # (draws, 1, 28, 28), 0-255
    generator = torch.Generator().manual_seed(seed)
    moved = random_affine(batch, aug or Augmentation(), generator)
    return moved.round().clamp(0, 255).to(torch.uint8).squeeze(1)
