"""Make a drawn or uploaded digit look like an MNIST digit, one switchable step at a time.

MNIST digits were scaled to fit a 20x20 box keeping their aspect ratio (anti-aliased, hence the
grey levels), then pasted into 28x28 so that their center of mass sits at pixel (14, 14). The
steps below redo that for any image: ink map -> bounding box -> crop -> fit to 20 px -> center
of mass -> the chosen model's normalization. Each is a pure function on numpy arrays; `preprocess`
runs them in order and keeps every intermediate image so a page can show them side by side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data import Normalization, to_model_input
from core.i18n import N_, Message, MessageError

MNIST_SIZE = 28  # side of the model's input, px
MNIST_BOX = 20  # MNIST digits' longer side, px
# Where MNIST puts the center of mass, in index coordinates (pixel i's center is at i). Not the
# geometric center 13.5: the test set's mean center of mass is (13.99, 14.01), i.e. MNIST shifted
# by whole pixels so that the mass lands on pixel 14. tests/test_preprocess.py checks this.
MNIST_CENTER = 14.0
MIN_CONTRAST = 0.2  # ink must stand this far (on a 0-1 scale) above the background to count
MAX_IMAGE_BYTES = 2 * 1024 * 1024  # largest upload / image file we read
MAX_IMAGE_PIXELS = 4096 * 4096  # larger images are refused before decoding (decompression bombs)


Pixels = npt.NDArray[np.float32]  # an (H, W) grey image, 0 = background, 1 = full ink


class ImageError(MessageError):
    """An image the user gave that we cannot use; `message` says why, for a page to say in its language."""


@dataclass(frozen=True)
class PreprocessOptions:
    """Which steps run; switching one off shows what it is for."""

    polarity: bool = True  # ink map: invert a light background, use alpha on a transparent one
    crop: bool = True  # crop to the ink's bounding box (off: the whole image is the digit)
    fit: bool = True  # scale the longer side to 20 px keeping the aspect ratio (off: stretch to 28x28)
    antialias: bool = True  # area-weighted downscaling (off: nearest neighbour, jagged)
    center_of_mass: bool = True  # shift the center of mass to pixel 14 (off: center the box)
    normalize: bool = True  # the model's own mean/std (off: pixels / 255 fed as they are)
    ink_threshold: float = 0.1  # ink level in [0, 1] that counts as drawn (box and emptiness)


@dataclass(frozen=True)
class Preprocessed:
    """Every stage of one image's trip through the pipeline; images are float32 arrays in [0, 1]."""

    ink: Pixels  # (H, W) bright ink on dark, at the input's resolution
    box: tuple[int, int, int, int] | None  # (top, left, bottom, right), exclusive; None = no ink
    cropped: Pixels | None  # (h, w) the ink's bounding box (or the whole ink map)
    fitted: Pixels | None  # (h', w') longer side 20 px, or (28, 28) stretched when fit is off
    centered: Pixels | None  # (28, 28) what the model sees, before normalization
    model_input: torch.Tensor | None  # (1, 1, 28, 28) normalized as the model was trained

    @property
    def empty(self) -> bool:
        """True when there is no ink: nothing to predict."""
        return self.box is None


@dataclass(frozen=True)
class Prepared:
    """Every stage of an image that has ink, up to the 28x28 frame; each model then normalizes it its own way.

    What `prepare` returns: done once per drawing, however many models look at it.
    """

    ink: Pixels  # (H, W) bright ink on dark, at the input's resolution
    box: tuple[int, int, int, int]  # (top, left, bottom, right) of the ink, exclusive
    cropped: Pixels  # (h, w) the ink's bounding box (or the whole ink map when cropping is off)
    fitted: Pixels  # (h', w') longer side 20 px, or (28, 28) stretched when fitting is off
    centered: Pixels  # (28, 28) in [0, 1]: what every model sees, before its normalization
    normalized: bool  # whether `model_input` applies the model's mean/std (the "normalize" step)

    def model_input(self, norm: Normalization) -> torch.Tensor:
        """(1, 1, 28, 28) for a model trained with `norm` (or pixels in 0-1 when normalizing is off)."""
        return normalize(self.centered, norm if self.normalized else None)


# ---------------------------------------------------------------------------------------------
# The steps (numpy and Pillow: single-threaded C, so a busy machine's thread pool never stalls them)


def _border(values: Pixels) -> Pixels:
    """The one-pixel ring around an (H, W) image, flattened: what the background looks like."""
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def ink_map(image: np.ndarray, polarity: bool = True) -> Pixels:
    """Bright-on-dark ink in [0, 1], (H, W) float32, from an RGBA, RGB or grey uint8 array.

    With `polarity`, white-on-black, black-on-white and black-on-transparent all give the same
    map: a transparent background means the alpha channel is the ink, a light one is inverted.
    The background level is then subtracted and the ink stretched to reach 1 (faint scans); an
    image whose brightest ink is less than MIN_CONTRAST above the background has no ink.
    Without it, the luminance is taken as it is, as a naive pipeline would.
    """
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]  # (H, W, 1)
    channels = pixels.shape[-1]
    alpha = pixels[..., -1] if channels in (2, 4) else None  # grey+alpha or RGBA
    rgb_weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's convert("L")
    luminance = np.asarray(pixels[..., :3] @ rgb_weights if channels >= 3 else pixels[..., 0], dtype=np.float32)
    if not polarity:
        return luminance
    ink: Pixels
    if alpha is not None and np.median(_border(alpha)) < 0.5:
        ink = alpha  # transparent background: coverage is the ink, whatever its colour
    elif np.median(_border(luminance)) > 0.5:
        ink = np.asarray(1.0 - luminance, dtype=np.float32)
    else:
        ink = luminance
    background, peak = float(np.median(_border(ink))), float(ink.max())
    if peak - background < MIN_CONTRAST:  # a blank canvas, or only JPEG noise / paper grain
        return np.zeros_like(ink)
    return np.clip((ink - background) / (peak - background), 0.0, 1.0).astype(np.float32, copy=False)


def ink_box(ink: Pixels, threshold: float) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the pixels above `threshold`, exclusive; None when there are none."""
    mask = ink > threshold
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def crop_to_box(ink: Pixels, box: tuple[int, int, int, int]) -> Pixels:
    """The part of the ink map inside the box."""
    top, left, bottom, right = box
    return ink[top:bottom, left:right]


def resize(image: Pixels, size: tuple[int, int], antialias: bool = True) -> Pixels:
    """(h, w) -> `size` (h', w'): bilinear with a filter widened to the scale (anti-aliased), or nearest."""
    height, width = size
    resample = Image.Resampling.BILINEAR if antialias else Image.Resampling.NEAREST
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize((width, height), resample)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def fitted_size(height: int, width: int, box: int = MNIST_BOX) -> tuple[int, int]:
    """The size that makes the longer side `box` px and keeps the aspect ratio (at least 1 px)."""
    scale = box / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_to_mnist_box(image: Pixels, antialias: bool = True) -> Pixels:
    """Scale so the longer side is 20 px, keeping the aspect ratio: (h, w) -> (h', w')."""
    return resize(image, fitted_size(*image.shape), antialias)


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean position, in index coordinates."""
    weights = np.asarray(image, dtype=np.float64)
    total = weights.sum()
    rows, cols = np.arange(weights.shape[0]), np.arange(weights.shape[1])
    return float(weights.sum(1) @ rows / total), float(weights.sum(0) @ cols / total)


def paste_offset(length: int, mass_center: float | None, size: int = MNIST_SIZE) -> int:
    """Where to paste `length` px into `size` px: the mass on MNIST_CENTER, or the box centered.

    Whole-pixel shifts, as MNIST did (its centers of mass spread +-0.5 px around 14), so strokes
    stay sharp. The offset is clamped so no ink falls off the frame; only a lopsided digit whose
    mass lies within 6 px of one end of its box ever needs that.
    """
    if mass_center is None:
        return (size - length) // 2
    offset = round(MNIST_CENTER - mass_center)
    return min(max(offset, 0), max(size - length, 0))


def place_in_frame(image: Pixels, by_mass: bool = True, size: int = MNIST_SIZE) -> Pixels:
    """Paste an (h, w) image with h, w <= size into a black (size, size) frame."""
    mass = center_of_mass(image) if by_mass and image.sum() > 0 else (None, None)
    top = paste_offset(image.shape[0], mass[0], size)
    left = paste_offset(image.shape[1], mass[1], size)
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top : top + image.shape[0], left : left + image.shape[1]] = image
    return frame


def normalize(centered: Pixels, norm: Normalization | None) -> torch.Tensor:
    """(28, 28) in [0, 1] -> (1, 1, 28, 28) as the model was trained: via uint8, like the dataset."""
    pixels = torch.from_numpy(np.rint(centered * 255.0).astype(np.uint8)[None])  # (1, 28, 28) uint8
    return to_model_input(pixels, norm or Normalization("none", 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# The pipeline


def prepare(image: np.ndarray, options: PreprocessOptions | None = None) -> Prepared | None:
    """Run every step but the normalization on an RGBA/RGB/grey uint8 array (H, W[, C]); None when it has no ink.

    No ink means nothing above `options.ink_threshold`: there is nothing to predict.
    """
    opts = options or PreprocessOptions()
    ink = ink_map(image, opts.polarity)
    box = ink_box(ink, opts.ink_threshold)
    if box is None:
        return None
    cropped = crop_to_box(ink, box) if opts.crop else ink
    if opts.fit:
        fitted = fit_to_mnist_box(cropped, opts.antialias)
    else:
        fitted = resize(cropped, (MNIST_SIZE, MNIST_SIZE), opts.antialias)
    centered = place_in_frame(fitted, by_mass=opts.center_of_mass)
    return Prepared(ink, box, cropped, fitted, centered, opts.normalize)


def preprocess(
    image: np.ndarray, norm: Normalization, options: PreprocessOptions | None = None
) -> Preprocessed:
    """`prepare`, then `norm`: every stage, for one model; `empty` (and no model input) when there is no ink."""
    opts = options or PreprocessOptions()
    prepared = prepare(image, opts)
    if prepared is None:
        return Preprocessed(ink_map(image, opts.polarity), None, None, None, None, None)
    return Preprocessed(prepared.ink, prepared.box, prepared.cropped, prepared.fitted, prepared.centered,
                        prepared.model_input(norm))


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """PNG/JPEG/... bytes -> RGBA uint8 array (H, W, 4); an ImageError says what is wrong."""
    if len(data) > max_bytes:
        raise ImageError(Message(N_("the file is %(size).1f MB; the limit is %(limit).1f MB"),
                                 {"size": len(data) / 1e6, "limit": max_bytes / 1e6}))
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageError(Message(N_("the image is %(width)dx%(height)d px; at most 4096x4096 is read"),
                                         {"width": image.width, "height": image.height}))
            upright = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
            return np.asarray(upright.convert("RGBA"))
    except UnidentifiedImageError as error:
        raise ImageError(N_("not a PNG or JPEG image (or any format Pillow can read)")) from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        damaged = Message(N_("the image is damaged or truncated (%(detail)s)"), {"detail": str(error)})
        raise ImageError(damaged) from error


def render_as_canvas(image: torch.Tensor | np.ndarray, size: int = 280) -> np.ndarray:
    """A uint8 (28, 28) digit drawn large, white on opaque black like the canvas: (size, size, 4).

    Bilinear upscaling gives smooth strokes of the right width; the benchmark and the tests push
    real test digits through `preprocess` this way, "as if drawn".
    """
    pixels = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    big = np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR))
    return np.stack([big, big, big, np.full_like(big, 255)], axis=-1)
