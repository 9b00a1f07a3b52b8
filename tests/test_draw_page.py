"""The Draw page under Streamlit's AppTest.

What AppTest can drive: the model selectbox and toggles, the step toggles, the file uploader, and
the canvas *value*: the drawable canvas is a Components-v2 element that AppTest cannot render or
draw on, but its key in session state holds what the browser would send (the Fabric.js objects and
a PNG data URL), so setting that state stands in for a drawing. Real mouse drawing is tested in
tests/e2e/test_draw_browser.py.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from core.checkpoints import save_checkpoint
from core.data import Dataset
from core.inference import DEFAULT_CHECKPOINT
from core.models import arch_config, build_model
from core.preprocess import render_as_canvas
from core.runs import BEST_CHECKPOINT, EpochMetrics, append_metrics, new_run, write_status
from tests.apptest_helpers import images_of

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "draw.py")
TIMEOUT_S = 60  # the first run imports torch and loads the model on a busy CPU


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def canvas_state(rgba: np.ndarray) -> dict[str, object]:
    """What the canvas component sends after a stroke: its objects and the PNG as a data URL."""
    url = "data:image/png;base64," + base64.b64encode(png(rgba)).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}], "background": "#000000"}, "data": url},
            "backgroundFit": None}


def start(runs_dir: Path) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [i.value for i in at.info] + [w.value for w in at.warning]
                     + [e.value for e in at.error])


def test_empty_canvas_asks_for_a_digit(runs_dir: Path) -> None:
    at = start(runs_dir)
    assert at.selectbox(key="model").options == ["Default model (shipped)"]
    assert "Draw a digit on the black canvas" in texts(at)
    assert "Predicted" not in texts(at) and not images_of(at)
    # the hard set is there before anything is drawn: its list, export and import, but nothing to save
    assert [expander.label for expander in at.expander] == ["My hard set"]
    assert "Your hard set is empty" in texts(at) and "Draw or upload something to save it here." in [
        caption.value for caption in at.caption]
    assert not [button for button in at.button if button.key == "hardset_save"]


def test_drawn_seven_is_predicted_with_strip_and_network_view(runs_dir: Path, seven: np.ndarray) -> None:
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "Predicted **7**" in page
    assert "longer side is 20 px" in page and "lands on pixel 14" in page
    assert "**Saliency**" not in page  # only the open tab is computed
    captions = [image.captions[0] for image in images_of(at)]
    assert [caption.split(" ")[1] for caption in captions] == ["ink", "cropped", "fitted", "centered", "model"]
    assert "fitted 20×20" not in captions[2]  # a 7 is taller than wide


def test_saliency_and_feature_map_tabs(runs_dir: Path, seven: np.ndarray) -> None:
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.session_state["view"] = "Saliency"
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "**Saliency**: which input pixels the network's score for *7* depends on" in page and not images_of(at)
    assert "**Plain gradient**" in page and "**SmoothGrad**" in page and "32 copies" in page
    figure = at.get("plotly_chart")[-1].proto.spec
    assert "Plain gradient for 7" in figure and "SmoothGrad for 7" in figure
    at.session_state["view"] = "Feature maps"
    at.run()
    page = texts(at)
    assert "*conv1 → bn1 → relu1*: 32 maps of 28×28" in page and "*conv4 → bn4 → relu4*: 128 maps of 7×7" in page


def test_switching_a_step_off_changes_the_input(runs_dir: Path, seven: np.ndarray) -> None:
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.run()
    at.toggle(key="step_crop").set_value(False).run()
    assert not at.exception
    captions = [image.captions[0] for image in images_of(at)]
    assert captions[1] == "2. uncropped 280×280" and captions[2] == "3. fitted 20×20"  # the whole canvas
    assert "Cropping is off: the whole 280×280 image counts as the digit" in texts(at)


def test_explanation_follows_the_toggles(runs_dir: Path, seven: np.ndarray) -> None:
    """With fitting and normalizing off, the text no longer says they happened, and says what happened instead."""
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.run()
    page = texts(at)
    assert "longer side is 20 px" in page and "are normalized as this model was trained" in page
    at.toggle(key="step_fit").set_value(False).run()
    at.toggle(key="step_normalize").set_value(False).run()
    at.toggle(key="step_antialias").set_value(False).run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "longer side is 20 px" not in page and "keeping the aspect ratio" not in page
    assert "normalized as this model was trained" not in page and "anti-aliasing, hence the grey edges" not in page
    assert "Fitting is off: the image is stretched to 28×28 without anti-aliasing" in page
    assert "Normalization is off: pixels in 0–1 (0.00 to 1.00) are fed as they are" in page
    assert "lands on pixel 14" in page  # centering is still on
    captions = [image.captions[0] for image in images_of(at)]
    assert captions[2] == "3. stretched 28×28" and captions[4] == "5. model input 0.00 … 1.00"


def test_upload_png_and_bad_files(runs_dir: Path, seven: np.ndarray) -> None:
    at = start(runs_dir)
    at.segmented_control(key="source").set_value("Upload").run()
    assert "Upload an image of a digit" in texts(at)
    paper = 255 - seven[..., :3]  # black ink on white paper, as a scan would be
    at.file_uploader(key="upload").set_value(("seven.png", png(paper), "image/png")).run()
    assert not at.exception and "Predicted **7**" in texts(at)
    at.file_uploader(key="upload").set_value(("notes.png", b"not really a png", "image/png")).run()
    assert "not a PNG or JPEG image" in texts(at) and "Predicted" not in texts(at)
    at.file_uploader(key="upload").set_value(("huge.png", b"\0" * (3 * 2**20), "image/png")).run()
    assert "the limit is" in texts(at)


def add_run(runs_dir: Path, checkpoint: Path, task: str = "multiclass", dataset: str = "mnist") -> str:
    """A finished run folder whose best.pt is `checkpoint`."""
    config = {"model": {"arch": "fastcnn"}, "task": {"kind": task}, "data": {"dataset": dataset}, "preset": ""}
    run_id, folder = new_run(config, name=f"test {task}", root=runs_dir)
    shutil.copy(checkpoint, folder / BEST_CHECKPOINT)
    append_metrics(folder, EpochMetrics(epoch=1, train_loss=0.7, train_accuracy=0.5, test_loss=0.7, test_accuracy=0.5))
    write_status(folder, "finished", epoch=1, total_epochs=1, best_test_accuracy=0.5)
    return run_id


def binary_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    meta = {"arch_config": arch_config("fastcnn", 1), "task": "binary", "target_digit": 7, "dataset": "mnist",
            "normalization": {"preset": "dataset", "mean": 0.1307, "std": 0.3081}}
    return save_checkpoint(path, build_model("fastcnn", num_outputs=1), meta)


def test_model_choice_and_side_by_side(runs_dir: Path, tmp_path: Path, seven: np.ndarray) -> None:
    run_id = add_run(runs_dir, binary_checkpoint(tmp_path / "binary.pt"), task="binary")
    at = start(runs_dir)
    options = at.selectbox(key="model").options
    assert len(options) == 2 and options[1].startswith(run_id) and "one-vs-rest" in options[1]
    at.session_state["canvas-0"] = canvas_state(seven)
    at.toggle(key="compare").set_value(True).run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "Predicted **7**" in page  # the default model
    assert "P(7) = " in page and "only answers whether this is a 7" in page  # the binary run


def test_broken_run_checkpoint_gives_a_message(runs_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    add_run(runs_dir, broken)
    at = start(runs_dir)
    at.selectbox(key="model").set_value(at.selectbox(key="model").options[1]).run()
    assert not at.exception and "cannot be loaded" in texts(at)


def test_default_model_is_shipped() -> None:
    assert DEFAULT_CHECKPOINT.is_file(), "checkpoints/default/model.pt is missing: run scripts/train_default_model.py"


def test_the_same_model_twice_side_by_side(runs_dir: Path, tmp_path: Path, seven: np.ndarray) -> None:
    add_run(runs_dir, binary_checkpoint(tmp_path / "binary.pt"), task="binary")
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.toggle(key="compare").set_value(True).run()
    at.selectbox(key="model2").set_value(at.selectbox(key="model").value).run()
    assert not at.exception, at.exception
    assert texts(at).count("Predicted **7**") == 2


def test_fashion_mnist_in_the_sidebar_is_told_the_model_reads_digits(runs_dir: Path, seven: np.ndarray) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    at.session_state["dataset"] = "fashion-mnist"  # the sidebar's choice (pages.common.DATASET_KEY)
    at.run()
    assert not at.exception, at.exception
    note = "The sidebar's dataset is Fashion-MNIST, but **Default model (shipped)** is an MNIST digit model"
    assert note in texts(at) and "one of the digits 0–9" in texts(at)
    assert at.title[0].value == "Draw a digit"
    at.session_state["canvas-0"] = canvas_state(seven)
    at.run()
    assert note in texts(at) and "Predicted **7**" in texts(at)  # a digit, said plainly to be one


def fashion_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    meta = {"arch_config": arch_config("fastcnn", 10), "task": "multiclass", "dataset": "fashion-mnist",
            "normalization": {"preset": "dataset", "mean": 0.2860, "std": 0.3530}}
    return save_checkpoint(path, build_model("fastcnn", num_outputs=10), meta)


def test_a_fashion_mnist_model_is_said_to_read_clothing(runs_dir: Path, tmp_path: Path, seven: np.ndarray) -> None:
    run_id = add_run(runs_dir, fashion_checkpoint(tmp_path / "fashion.pt"), dataset="fashion-mnist")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    at.session_state["dataset"] = "fashion-mnist"
    at.run()
    assert "MNIST digit model" in texts(at)  # the default model still comes first
    label = at.selectbox(key="model").options[1]
    assert label.startswith(run_id) and "Fashion-MNIST" in label
    at.selectbox(key="model").set_value(label).run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "MNIST digit model" not in page and f"**{label}** was trained on Fashion-MNIST: it reads" in page
    assert "T-shirt/top" in page and "the sidebar's dataset" not in page
    assert at.title[0].value == "Draw a fashion item"
    at.session_state["canvas-0"] = canvas_state(seven)
    at.run()
    assert "Predicted **" in texts(at) and "Predicted **7**" not in texts(at)  # a clothing class, not a digit


def hard_set_rows(at: AppTest) -> dict[str, list[object]]:
    """The hard-set score table: model name -> its row."""
    frame = at.table[0].value  # the only table on the Draw page
    return {str(row.iloc[0]): list(row) for _, row in frame.iterrows()}


def test_save_to_the_hard_set_and_see_every_model_scored(runs_dir: Path, tmp_path: Path, seven: np.ndarray,
                                                         mnist: Dataset) -> None:
    """Save a 7 and a 3 labelled 5 from the canvas; the default model and a run's copy of it score 1 of 2 (50%)."""
    run_id = add_run(runs_dir, DEFAULT_CHECKPOINT)  # the same weights as the default model, so the same answers
    add_run(runs_dir, fashion_checkpoint(tmp_path / "fashion.pt"), dataset="fashion-mnist")
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.session_state["view"] = "My hard set"
    at.run()
    assert not at.exception, at.exception
    assert "Your hard set is empty" in texts(at)
    assert at.selectbox(key="hardset_label_mnist_7").value == 7  # the model's answer, to correct when wrong
    at.button(key="hardset_save").click().run()
    assert not at.exception, at.exception
    assert "Saved as 7." in [s.value for s in at.success]
    assert len(list((runs_dir / ".hardset").glob("*.npz"))) == 1
    rows = hard_set_rows(at)
    assert rows["Default model (shipped)"][1:] == ["MNIST", 1, 1, "100.0%"]
    assert rows[run_id][1:] == ["MNIST", 1, 1, "100.0%"]
    fashion_row = next(row for name, row in rows.items() if row[1] == "Fashion-MNIST")
    assert fashion_row[2:] == [0, 0, "no item of its dataset"]
    at.button(key="hardset_save").click().run()  # the same drawing again
    assert "This drawing is already in your hard set, labelled 7." in texts(at)
    three = render_as_canvas(mnist.test_images[int((mnist.test_labels == 3).nonzero()[0][0])])
    at.session_state["canvas-0"] = canvas_state(three)
    at.run()
    at.selectbox(key="hardset_label_mnist_3").set_value(5).run()  # the model says 3; the truth is 5
    at.button(key="hardset_save").click().run()
    assert not at.exception, at.exception
    rows = hard_set_rows(at)
    assert rows["Default model (shipped)"][1:] == ["MNIST", 2, 1, "50.0%"] and rows[run_id][3:] == [1, "50.0%"]
    captions = sorted(image.captions[0] for image in images_of(at))
    assert captions == ["5 ✗ 3", "7 ✓"]  # each item: its label, then the default model's answer
    deletes = [button for button in at.button if str(button.key).startswith("hardset_delete_")]
    deletes[0].click().run()  # the newest first: the 3 labelled 5
    assert not at.exception, at.exception
    assert hard_set_rows(at)["Default model (shipped)"][1:] == ["MNIST", 1, 1, "100.0%"]


def test_the_hard_set_tab_in_chinese(runs_dir: Path, seven: np.ndarray) -> None:
    """The hard-set tab, empty and then with a saved item and scores, has no English prose in zh-CN."""
    from tests.test_i18n_pages import english_runs, shown_texts

    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    at.query_params["lang"] = "zh-CN"
    at.session_state["canvas-0"] = canvas_state(seven)
    at.session_state["view"] = "我的难例集"
    at.run()
    assert "你的难例集是空的" in texts(at)
    at.button(key="hardset_save").click().run()
    assert not at.exception, at.exception
    assert "已保存，标签为 7。" in [s.value for s in at.success] and "**你的难例集**" in texts(at)
    shown = shown_texts(at.main) + [str(column) for column in at.table[0].value.columns]
    assert not sorted({run for text in shown for run in english_runs(text)})


def test_import_an_export_and_a_wrong_file(runs_dir: Path, tmp_path: Path, seven: np.ndarray, mnist: Dataset) -> None:
    """An export made elsewhere adds its items (the one already here counted as such); a foreign file is refused."""
    from core import hardset

    elsewhere = tmp_path / "elsewhere"
    for digit in (0, 1):
        hardset.save_item(render_as_canvas(mnist.test_images[int((mnist.test_labels == digit).nonzero()[0][0])]),
                          "mnist", digit, root=elsewhere)
    hardset.save_item(seven, "mnist", 7, root=elsewhere)
    hardset.save_item(seven, "mnist", 7, root=runs_dir)
    exported = hardset.export_hardset(hardset.load_hardset(elsewhere).items)
    at = start(runs_dir)
    at.session_state["canvas-0"] = canvas_state(seven)
    at.session_state["view"] = "My hard set"
    at.run()
    at.file_uploader(key="hardset_import").set_value(("hardset.zip", exported, "application/zip")).run()
    assert not at.exception, at.exception
    assert "Imported 2 new items. 1 was already in your set." in [s.value for s in at.success]
    assert hard_set_rows(at)["Default model (shipped)"][2] == 3
    at.file_uploader(key="hardset_import").set_value(("notes.zip", b"not a zip", "application/zip")).run()
    assert "**notes.zip**: this file is not a hard-set export of MNIST Lab" in texts(at)
    assert hard_set_rows(at)["Default model (shipped)"][2] == 3  # nothing lost


def test_a_fashion_mnist_models_drawings_are_saved_as_clothing(runs_dir: Path, tmp_path: Path,
                                                                seven: np.ndarray) -> None:
    """With a Fashion-MNIST model shown, the label is a fashion item and the item belongs to Fashion-MNIST."""
    from core import hardset

    run_id = add_run(runs_dir, fashion_checkpoint(tmp_path / "fashion.pt"), dataset="fashion-mnist")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S).run()
    at.selectbox(key="model").set_value(run_id).run()
    at.session_state["canvas-0"] = canvas_state(seven)
    at.session_state["view"] = "My hard set"
    at.run()
    box = next(box for box in at.selectbox if str(box.key).startswith("hardset_label_fashion-mnist_"))
    assert box.label == "True label of this drawing (Fashion-MNIST)" and box.options[0] == "T-shirt/top"
    box.set_value(8).run()  # Bag
    at.button(key="hardset_save").click().run()
    assert not at.exception, at.exception
    assert "Saved as Bag." in [s.value for s in at.success]
    (item,) = hardset.load_hardset(runs_dir).items
    assert (item.dataset, item.label) == ("fashion-mnist", 8)
    rows = hard_set_rows(at)
    assert rows["Default model (shipped)"][1:] == ["MNIST", 0, 0, "no item of its dataset"]
    assert rows[run_id][1:3] == ["Fashion-MNIST", 1]


def test_upload_errors_in_chinese(runs_dir: Path) -> None:
    """An upload the page cannot use is explained in the page's language, its values kept."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S)
    at.query_params["lang"] = "zh-CN"
    at.session_state["source"] = "Upload"  # AppTest cannot click a translated segment (it matches shown labels)
    at.run()
    at.file_uploader(key="upload").set_value(("notes.png", b"not really a png", "image/png")).run()
    errors = [e.value for e in at.error]
    assert errors == ["**notes.png**：不是 PNG 或 JPEG 图像（也不是 Pillow 能读取的任何格式）"]
    at.file_uploader(key="upload").set_value(("huge.png", b"\0" * (3 * 2**20), "image/png")).run()
    assert [e.value for e in at.error] == ["**huge.png**：文件大小为 3.1 MB；上限为 2.1 MB"]
