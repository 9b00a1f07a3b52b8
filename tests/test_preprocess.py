"""The drawing pipeline against MNIST's own geometry: 20 px box, aspect ratio, center of mass."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import Normalization, load_dataset
from core.preprocess import (
    MNIST_BOX,
    MNIST_CENTER,
    ImageError,
    Preprocessed,
    PreprocessOptions,
    center_of_mass,
    decode_image,
    ink_box,
    ink_map,
    prepare,
    preprocess,
    render_as_canvas,
)

RAW = Normalization("none", 0.0, 1.0)


def white_on_black(ink: np.ndarray) -> np.ndarray:
    """uint8 ink (H, W) -> opaque RGBA, white strokes on black (the canvas)."""
    return np.stack([ink, ink, ink, np.full_like(ink, 255)], axis=-1)


def black_on_white(ink: np.ndarray) -> np.ndarray:
    paper = 255 - ink
    return np.stack([paper, paper, paper, np.full_like(ink, 255)], axis=-1)


def black_on_transparent(ink: np.ndarray) -> np.ndarray:
    zeros = np.zeros_like(ink)
    return np.stack([zeros, zeros, zeros, ink], axis=-1)


def stroke_digit(height: int = 300, width: int = 200) -> np.ndarray:
    """A '7'-like uint8 ink image: a top bar and a slanted stem, off-center on a 400x400 canvas."""
    canvas = np.zeros((400, 400), dtype=np.uint8)
    top, left = 40, 120
    canvas[top : top + 25, left : left + width] = 255
    for row in range(height):
        col = left + width - 25 - int(row * (width - 60) / height)
        canvas[top + row, col : col + 25] = 255
    return canvas


def ink_extent(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the nonzero pixels' bounding box."""
    box = ink_box(image, 0.0)
    assert box is not None
    return box[2] - box[0], box[3] - box[1]


@pytest.fixture(scope="module")
def mnist_test_images() -> torch.Tensor:
    return load_dataset("mnist").test_images[:300]


def test_mnist_itself_puts_the_mass_on_pixel_14(mnist_test_images: torch.Tensor) -> None:
    """The reference our centering copies: MNIST's centers of mass sit at 14 +- 0.5 in index coordinates."""
    centers = np.array([center_of_mass(image.numpy()) for image in mnist_test_images])
    assert np.allclose(centers.mean(0), [MNIST_CENTER, MNIST_CENTER], atol=0.05)
    assert np.abs(centers - MNIST_CENTER).max() <= 0.5 + 1e-4


def test_center_of_mass_within_half_a_pixel(mnist_test_images: torch.Tensor) -> None:
    images = [white_on_black(stroke_digit())] + [render_as_canvas(image) for image in mnist_test_images[:50]]
    for image in images:
        row, col = center_of_mass(preprocess(image, RAW).centered)
        assert abs(row - MNIST_CENTER) <= 0.5 and abs(col - MNIST_CENTER) <= 0.5


def test_longer_side_is_20_px_and_aspect_ratio_kept() -> None:
    for height, width in [(300, 200), (200, 300), (120, 120)]:
        canvas = np.zeros((400, 400), dtype=np.uint8)
        canvas[50 : 50 + height, 30 : 30 + width] = 255  # a solid block: its box is exact
        result = preprocess(white_on_black(canvas), RAW)
        assert result.fitted is not None and result.centered is not None
        assert max(result.fitted.shape) == MNIST_BOX
        assert ink_extent(result.centered) == tuple(result.fitted.shape)
        fitted_height, fitted_width = result.fitted.shape
        assert fitted_height / fitted_width == pytest.approx(height / width, rel=0.06)  # 1 px in 20


def test_thin_stroke_keeps_at_least_one_pixel() -> None:
    canvas = np.zeros((400, 400), dtype=np.uint8)
    canvas[20:380, 198:202] = 255  # a '1' 90 times taller than wide
    result = preprocess(white_on_black(canvas), RAW)
    assert result.fitted is not None and tuple(result.fitted.shape) == (MNIST_BOX, 1)


@pytest.mark.parametrize("image", [np.zeros((280, 280, 4), np.uint8), np.full((50, 60, 3), 255, np.uint8)])
def test_blank_is_empty(image: np.ndarray) -> None:
    result = preprocess(image, RAW)
    assert result.empty and result.model_input is None and result.centered is None


def test_faint_noise_and_specks_are_empty() -> None:
    noise = (np.random.default_rng(0).random((100, 100)) * 40).astype(np.uint8)  # < 0.16: JPEG grain
    assert preprocess(white_on_black(noise), RAW).empty
    assert preprocess(black_on_white(noise), RAW).empty
    dim = noise.copy()
    dim[40:60, 45:50] = 120  # a dim but real stroke is stretched to full ink
    result = preprocess(white_on_black(dim), RAW)
    assert not result.empty and result.ink.max() == 1.0


@pytest.mark.parametrize("paint", [black_on_white, black_on_transparent])
def test_polarities_give_the_same_result(paint: Callable[[np.ndarray], np.ndarray]) -> None:
    ink = stroke_digit()
    reference = preprocess(white_on_black(ink), RAW)
    other = preprocess(paint(ink), RAW)
    assert np.allclose(ink_map(paint(ink)), ink_map(white_on_black(ink)), atol=1e-6)
    assert reference.model_input is not None and other.model_input is not None
    assert torch.equal(reference.model_input, other.model_input)


def test_grey_and_rgb_inputs_work() -> None:
    ink = stroke_digit()
    reference = preprocess(white_on_black(ink), RAW).model_input
    assert torch.equal(preprocess(ink, RAW).model_input, reference)
    assert torch.equal(preprocess(white_on_black(ink)[..., :3], RAW).model_input, reference)


def test_normalization_is_the_models() -> None:
    ink = white_on_black(stroke_digit())
    raw = preprocess(ink, RAW).model_input
    norm = Normalization("dataset", 0.1307, 0.3081)
    normalized = preprocess(ink, norm).model_input
    assert raw is not None and normalized is not None and raw.shape == (1, 1, 28, 28)
    assert torch.allclose(normalized, (raw - 0.1307) / 0.3081, atol=1e-5)


# Each toggle: switch one step off and check that exactly its effect goes away.

DIGIT = white_on_black(stroke_digit())
NORM = Normalization("dataset", 0.1307, 0.3081)


def run(**off: bool) -> Preprocessed:
    """The '7' through the pipeline with the named steps switched off."""
    result = preprocess(DIGIT, NORM, replace(PreprocessOptions(), **off))
    assert not result.empty
    return result


def grey_levels(image: np.ndarray) -> int:
    """How many pixels are neither black nor full ink."""
    return int(((image > 0) & (image < 1)).sum())


def test_toggle_polarity_leaves_light_background_light() -> None:
    light = black_on_white(stroke_digit())
    naive = preprocess(light, RAW, PreprocessOptions(polarity=False))
    assert naive.ink[0, 0] == 1.0  # white paper taken as ink: the whole image is the "digit"
    assert naive.box == (0, 0, 400, 400)
    assert preprocess(light, RAW).ink[0, 0] == 0.0


def test_toggle_crop_keeps_the_whole_canvas() -> None:
    on, off = run(), run(crop=False)
    assert tuple(on.cropped.shape) == (300, 200)
    assert tuple(off.cropped.shape) == (400, 400)
    assert max(ink_extent(off.centered)) < MNIST_BOX  # the digit shrinks with the canvas


def test_toggle_fit_stretches_to_the_frame() -> None:
    off = run(fit=False)
    assert tuple(off.fitted.shape) == (28, 28)
    assert ink_extent(off.centered) == (28, 28)  # no margin, aspect ratio lost


def test_toggle_antialias_gives_hard_edges() -> None:
    on, off = run(), run(antialias=False)
    assert grey_levels(on.fitted) > 10
    assert grey_levels(off.fitted) == 0


def test_toggle_center_of_mass_centers_the_box_instead() -> None:
    on, off = run(), run(center_of_mass=False)
    assert np.array_equal(on.fitted, off.fitted)
    box = ink_box(off.centered, 0.0)
    assert box is not None and (box[0] + box[2]) / 2 == pytest.approx(14, abs=0.5)
    assert (box[1] + box[3]) / 2 == pytest.approx(14, abs=0.5)
    row, _ = center_of_mass(off.centered)
    assert row < MNIST_CENTER - 1  # a '7' is top-heavy: the box center is not the mass center


def test_toggle_normalize_feeds_raw_pixels() -> None:
    on, off = run(), run(normalize=False)
    assert np.array_equal(on.centered, off.centered)
    assert off.model_input.min() == 0.0 and off.model_input.max() == 1.0
    assert on.model_input.min() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def png_bytes(array: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format)
    return buffer.getvalue()


def test_decode_image_reads_png_and_jpeg() -> None:
    ink = stroke_digit()
    assert decode_image(png_bytes(ink)).shape == (400, 400, 4)
    jpeg = decode_image(png_bytes(255 - ink, "JPEG"))
    result = preprocess(jpeg, RAW)
    assert not result.empty and result.fitted is not None and max(result.fitted.shape) == MNIST_BOX


def test_decode_image_refuses_non_images_and_large_files() -> None:
    with pytest.raises(ImageError, match="not a PNG or JPEG image"):
        decode_image(b"hello, this is text")
    with pytest.raises(ImageError, match="damaged or truncated"):
        decode_image(png_bytes(stroke_digit())[:100])
    with pytest.raises(ImageError, match="limit"):
        decode_image(png_bytes(stroke_digit()), max_bytes=100)


def test_prepared_once_serves_every_models_normalization() -> None:
    """`prepare` then `model_input(norm)` gives exactly what `preprocess(image, norm)` gives, for any norm."""
    half = Normalization("half", 0.5, 0.5)
    for options in (PreprocessOptions(), PreprocessOptions(normalize=False), PreprocessOptions(crop=False)):
        prepared = prepare(DIGIT, options)
        assert prepared is not None
        for norm in (NORM, half, RAW):
            reference = preprocess(DIGIT, norm, options)
            assert reference.model_input is not None and reference.box == prepared.box
            assert torch.equal(prepared.model_input(norm), reference.model_input)
    assert torch.allclose(prepare(DIGIT).model_input(half),  # type: ignore[union-attr]
                          (preprocess(DIGIT, RAW).model_input - 0.5) / 0.5, atol=1e-6)  # type: ignore[operator]
    assert prepare(white_on_black(np.zeros((100, 100), np.uint8))) is None  # no ink: nothing to prepare
