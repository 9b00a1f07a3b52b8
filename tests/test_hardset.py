"""The personal hard set: save, reload, duplicates, damaged files, export/import, and scoring against predict."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import hardset
from core.checkpoints import load_checkpoint
from core.data import Dataset
from core.hardset import HardSetError
from core.inference import DEFAULT_CHECKPOINT, predict_image
from core.preprocess import render_as_canvas


def drawn(mnist: Dataset, digit: int, nth: int = 0) -> np.ndarray:
    """The nth test-set example of `digit`, as the canvas would send it (280x280 RGBA)."""
    return render_as_canvas(mnist.test_images[int((mnist.test_labels == digit).nonzero()[nth][0])])


def test_save_reload_duplicate_and_delete(mnist: Dataset, tmp_path: Path) -> None:
    seven, three = drawn(mnist, 7), drawn(mnist, 3)
    first = hardset.save_item(seven, "mnist", 7, "draw", root=tmp_path)
    assert first.duplicate_of is None and (tmp_path / ".hardset" / f"{first.item.item_id}.npz").is_file()
    hardset.save_item(three, "mnist", 5, "upload", root=tmp_path)  # a wrong label is the user's to give
    again = hardset.save_item(seven, "mnist", 7, root=tmp_path)
    assert again.duplicate_of is not None and again.item.item_id == first.item.item_id
    loaded = hardset.load_hardset(tmp_path)  # read back from disk, as after a restart
    assert loaded.problems == () and [(i.label, i.source) for i in loaded.items] == [(7, "draw"), (5, "upload")]
    assert np.array_equal(loaded.items[0].raw, seven)  # the raw drawing, byte for byte
    assert np.array_equal(loaded.items[0].pixels, hardset.preprocessed_pixels(seven))
    assert not list((tmp_path / ".hardset").glob(".*.tmp"))  # atomic writes leave no temp file
    assert hardset.delete_item(first.item.item_id, tmp_path) and not hardset.delete_item(first.item.item_id, tmp_path)
    assert [item.label for item in hardset.load_hardset(tmp_path).items] == [5]
    with pytest.raises(HardSetError, match="not the id"):
        hardset.delete_item("../../etc", tmp_path)


def test_bad_input_is_refused_with_a_reason(tmp_path: Path) -> None:
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    with pytest.raises(HardSetError, match="no ink"):
        hardset.save_item(blank, "mnist", 1, root=tmp_path)
    ink = blank.copy()
    ink[100:200, 130:150, :3] = 255
    with pytest.raises(HardSetError, match="not one of the 10 classes"):
        hardset.save_item(ink, "mnist", 10, root=tmp_path)
    assert hardset.load_hardset(tmp_path).items == ()


def test_a_damaged_file_is_reported_skipped_and_kept(mnist: Dataset, tmp_path: Path) -> None:
    good = hardset.save_item(drawn(mnist, 1), "mnist", 1, root=tmp_path).item
    bad = hardset.save_item(drawn(mnist, 2), "mnist", 2, root=tmp_path).item
    bad_path = tmp_path / ".hardset" / f"{bad.item_id}.npz"
    bad_path.write_bytes(bad_path.read_bytes()[:200])  # cut short, as a crash of another tool might
    loaded = hardset.load_hardset(tmp_path)
    assert [item.item_id for item in loaded.items] == [good.item_id]
    assert len(loaded.problems) == 1 and str(bad_path) in str(loaded.problems[0])
    assert "left on disk" in str(loaded.problems[0]) and bad_path.is_file()
    # Saving the same drawing again replaces the damaged copy.
    assert hardset.save_item(drawn(mnist, 2), "mnist", 2, root=tmp_path).duplicate_of is None
    assert hardset.load_hardset(tmp_path).problems == ()


def test_export_import_round_trip(mnist: Dataset, tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    for digit in (4, 9):
        hardset.save_item(drawn(mnist, digit), "mnist", digit, root=source)
    hardset.save_item(drawn(mnist, 0), "fashion-mnist", 8, root=source)  # labelled as a bag
    exported = hardset.export_hardset(hardset.load_hardset(source).items)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(exported)).read("manifest.json"))
    assert manifest["format"] == "mnist-lab-hardset" and [i["class"] for i in manifest["items"]] == ["4", "9", "Bag"]
    hardset.save_item(drawn(mnist, 9), "mnist", 9, root=target)  # already there: a duplicate on import
    result = hardset.import_hardset(exported, target)
    assert (result.added, result.duplicates, result.problems) == (2, 1, ())
    before = {(i.item_id, i.dataset, i.label) for i in hardset.load_hardset(source).items}
    assert {(i.item_id, i.dataset, i.label) for i in hardset.load_hardset(target).items} == before
    assert hardset.import_hardset(exported, target).duplicates == 3  # importing twice adds nothing


def test_import_refuses_foreign_files_and_damaged_entries(mnist: Dataset, tmp_path: Path) -> None:
    with pytest.raises(HardSetError, match="not a hard-set export"):
        hardset.import_hardset(b"PK not really a zip", tmp_path)
    hardset.save_item(drawn(mnist, 6), "mnist", 6, root=tmp_path / "a")
    exported = hardset.export_hardset(hardset.load_hardset(tmp_path / "a").items)
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(exported)) as original, zipfile.ZipFile(tampered, "w") as copy:
        for name in original.namelist():
            copy.writestr(name, original.read(name))
        copy.writestr("items/0123456789abcdef.npz", b"garbage")
    result = hardset.import_hardset(tampered.getvalue(), tmp_path / "b")
    assert result.added == 1 and len(result.problems) == 1
    assert "items/0123456789abcdef.npz was not imported: not a readable item" in str(result.problems[0])


def test_scores_match_the_draw_pages_prediction(mnist: Dataset, tmp_path: Path) -> None:
    """Each answer equals predict_image on the raw drawing; fashion items are not scored by an MNIST model."""
    loaded = load_checkpoint(DEFAULT_CHECKPOINT)
    raws = [drawn(mnist, digit, nth) for digit in range(10) for nth in range(2)]
    for index, raw in enumerate(raws):
        hardset.save_item(raw, "mnist", index // 2, root=tmp_path)
    hardset.save_item(drawn(mnist, 5, 3), "fashion-mnist", 1, root=tmp_path)
    items = hardset.load_hardset(tmp_path).items
    score = hardset.score_model(loaded.model, loaded.normalization, "mnist", loaded.task, loaded.target_digit, items)
    assert len(score.answers) == 20
    by_id = {answer.item_id: answer for answer in score.answers}
    right = 0
    for index, raw in enumerate(raws):
        _, reference = predict_image(loaded.model, loaded.normalization, raw)
        assert reference is not None
        answer = by_id[hardset.item_id_of("mnist", hardset.preprocessed_pixels(raw))]
        assert answer.predicted == reference.label and answer.confidence == pytest.approx(reference.confidence)
        right += reference.label == index // 2
    assert score.right == right and score.accuracy == right / 20
    fashion = hardset.score_model(loaded.model, loaded.normalization, "fashion-mnist", "multiclass", 8, items)
    assert [answer.label for answer in fashion.answers] == [1]  # a Fashion-MNIST model gets its one item only
    one_vs_rest = hardset.score_model(loaded.model, loaded.normalization, "mnist", "binary", 3, items)
    assert one_vs_rest.accuracy is not None and len(one_vs_rest.answers) == 20
    assert hardset.set_fingerprint(items) != hardset.set_fingerprint(items[1:])


def test_grey_and_rgb_drawings_are_stored_as_rgba_and_a_zip_bomb_is_refused(mnist: Dataset, tmp_path: Path) -> None:
    seven = drawn(mnist, 7)
    grey = hardset.save_item(seven[..., 0], "mnist", 7, "upload", root=tmp_path).item
    assert grey.raw.shape == (280, 280, 4) and np.array_equal(grey.raw, seven)  # the canvas is opaque grey
    assert hardset.save_item(seven[..., :3], "mnist", 7, root=tmp_path).duplicate_of is not None  # same 28x28
    buffer = io.BytesIO()  # 100 MB of zeros, a few hundred KB packed
    np.savez_compressed(buffer, pixels=np.zeros((28, 28), np.uint8), raw=np.zeros((5000, 5000, 4), np.uint8),
                        meta=np.array("{}"))
    with pytest.raises(ValueError, match="would unpack to 100 MB"):
        hardset.item_from_bytes(buffer.getvalue(), "0123456789abcdef")


def test_the_stamp_changes_with_every_save_and_delete(mnist: Dataset, tmp_path: Path) -> None:
    assert hardset.hardset_stamp(tmp_path) == ()
    item = hardset.save_item(drawn(mnist, 4), "mnist", 4, root=tmp_path).item
    saved = hardset.hardset_stamp(tmp_path)
    assert [name for name, _mtime, _size in saved] == [f"{item.item_id}.npz"]
    hardset.save_item(drawn(mnist, 4), "mnist", 4, root=tmp_path)  # a duplicate writes nothing
    assert hardset.hardset_stamp(tmp_path) == saved
    hardset.delete_item(item.item_id, tmp_path)
    assert hardset.hardset_stamp(tmp_path) == ()
