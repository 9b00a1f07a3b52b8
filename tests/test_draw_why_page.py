"""The Draw page's "Why this answer?" views under AppTest (a drawing is set as in tests/test_draw_page.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from core.checkpoints import load_checkpoint, save_checkpoint
from core.explain import SWEEP, blank_value, robustness_sweep
from core.inference import DEFAULT_CHECKPOINT
from core.models import arch_config, build_model
from core.preprocess import preprocess
from tests.apptest_helpers import images_of
from tests.test_draw_page import PAGE, TIMEOUT_S, add_run, canvas_state, png, texts
from tests.test_i18n_pages import english_runs, shown_texts

TINY_CNN = [{"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 1}, {"type": "ReLU"},
            {"type": "MaxPool2d", "kernel_size": 4}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]


def drawn(seven: np.ndarray, view: str | None = None, lang: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S * 3)
    if lang:
        at.query_params["lang"] = lang
    at.session_state["canvas-0"] = canvas_state(seven)
    if view:
        at.session_state["why_view"] = view
    at.run()
    assert not at.exception, at.exception
    return at


def checkpoint_run(runs_dir: Path, tmp_path: Path, arch: str, dataset: str = "mnist",
                   options: dict[str, object] | None = None) -> str:
    """A finished run of an untrained `arch` network (its answers are arbitrary; the views must still be true)."""
    torch.manual_seed(0)
    norm = {"preset": "dataset", "mean": 0.1307, "std": 0.3081}
    meta = {"arch_config": arch_config(arch, 10, options), "task": "multiclass", "dataset": dataset,
            "normalization": norm}
    path = save_checkpoint(tmp_path / f"{arch}.pt", build_model(arch, 10, options), meta)
    return add_run(runs_dir, path, dataset=dataset)


def traces(at: AppTest, kind: str) -> int:
    """How many traces of this kind the page's last chart draws."""
    return sum(trace["type"] == kind for trace in json.loads(at.get("plotly_chart")[-1].proto.spec)["data"])


def pick(at: AppTest, run_id: str) -> None:
    at.selectbox(key="model").set_value(run_id).run()
    assert not at.exception, at.exception


def test_views_are_computed_only_when_picked(runs_dir: Path, seven: np.ndarray) -> None:
    at = drawn(seven)
    assert "Why this answer?" in [h.value for h in at.subheader]
    assert "Pick a view" in "\n".join(c.value for c in at.caption)
    assert "**Robustness**" not in texts(at) and "Grad-CAM" not in texts(at)


def test_robustness_view_says_what_the_sweep_measured(runs_dir: Path, seven: np.ndarray) -> None:
    at = drawn(seven, "robustness")
    page = texts(at)
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    model_input = preprocess(seven, model.normalization).model_input
    assert model_input is not None
    sweep = robustness_sweep(model.model, model_input, blank_value(model.normalization))
    assert f"{len(sweep.transforms)} versions in one batch" in page and "its answer *7*" in page
    for kind, title in [("shift_x", "Shift right (px)"), ("rotate", "Rotate clockwise (°)"),
                        ("stroke", "Stroke width (px, − thinner)")]:
        _, _, labels = sweep.curve(kind)
        whole = f"**{title}**: still *7* over the whole range"
        assert (whole in page) == all(label == 7 for label in labels), (kind, labels)
    titles = [note["text"] for note in json.loads(at.get("plotly_chart")[-1].proto.spec)["layout"]["annotations"]]
    assert traces(at, "heatmap") == sum(len(amounts) for amounts in SWEEP.values())
    assert sum(title.startswith("0 px: 7 ") for title in titles) == 3  # the identity of both shifts and stroke
    assert any(title.startswith("1.00×: 7 ") for title in titles) and "Rotate clockwise (°)" in titles


def test_attribution_view_for_a_cnn_and_for_an_mlp(runs_dir: Path, tmp_path: Path, seven: np.ndarray) -> None:
    run_id = checkpoint_run(runs_dir, tmp_path, "mlp")
    at = drawn(seven, "attribution")
    page = texts(at)
    assert "**Plain gradient**" in page and "**SmoothGrad**" in page and "32 noisy copies" in page
    assert "**Grad-CAM** on the last convolution block (*conv" in page
    assert traces(at, "heatmap") == 4
    pick(at, run_id)
    page = texts(at)
    assert "**Grad-CAM**" not in page and "has no convolutional layer, so Grad-CAM" in page
    assert traces(at, "heatmap") == 3


def test_an_uploaded_image_is_explained_too(runs_dir: Path, seven: np.ndarray) -> None:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT_S * 3)
    at.session_state["why_view"] = "robustness"
    at.run()
    at.segmented_control(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").set_value(("seven.png", png(255 - seven[..., :3]), "image/png")).run()
    assert not at.exception, at.exception
    assert "Predicted **7**" in texts(at) and "its answer *7*" in texts(at)


def test_neighbours_and_map_of_a_fashion_model(runs_dir: Path, tmp_path: Path, seven: np.ndarray) -> None:
    """A tiny untrained CNN on Fashion-MNIST: the training index and the test map use its dataset and classes."""
    run_id = checkpoint_run(runs_dir, tmp_path, "custom", "fashion-mnist", {"layers": TINY_CNN})
    at = drawn(seven)
    pick(at, run_id)
    at.session_state["why_view"] = "neighbours"
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "the 8 of the 60,000 training images" in page, page
    assert "the 196 values that enter the last Linear" in page
    mine = [m.value for m in at.markdown if m.value.startswith("**Nearest training images**")]
    assert len(mine) == 1 and "digit" not in mine[0]
    captions = [image.captions[0] for image in images_of(at)][-8:]
    fashion = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
    assert all(caption.split(" · ")[0] in fashion for caption in captions), captions
    similarities = [float(caption.split("similarity ")[1]) for caption in captions]
    assert similarities == sorted(similarities, reverse=True) and similarities[0] <= 1.0
    at.session_state["why_view"] = "embedding"
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "**PCA** of the penultimate-layer features of all 10,000 test images" in page
    spec = at.get("plotly_chart")[-1].proto.spec
    assert '"name":"Ankle boot"' in spec and '"symbol":"star"' in spec
    at.segmented_control(key="why_map").set_value("tsne").run()
    assert not at.exception, at.exception
    assert "**t-SNE** of 2,000 randomly chosen test images (of 10,000)" in texts(at)
    assert "mean position of its 10 nearest images" in texts(at)
    assert "The map was computed once for this model, in " in texts(at)


def test_views_speak_chinese(runs_dir: Path, seven: np.ndarray) -> None:
    for view in ("robustness", "attribution", "embedding"):
        at = drawn(seven, view, lang="zh-CN")
        english = [run for text in shown_texts(at.main) for run in english_runs(text)]
        assert not english, english


def test_neighbours_of_a_one_vs_rest_model_count_by_its_answer(runs_dir: Path, tmp_path: Path,
                                                              seven: np.ndarray) -> None:
    torch.manual_seed(0)
    options = {"layers": TINY_CNN}
    meta = {"arch_config": arch_config("custom", 1, options), "task": "binary", "target_digit": 7, "dataset": "mnist",
            "normalization": {"preset": "dataset", "mean": 0.1307, "std": 0.3081}}
    path = save_checkpoint(tmp_path / "binary.pt", build_model("custom", 1, options), meta)
    run_id = add_run(runs_dir, path, task="binary")
    at = drawn(seven)
    pick(at, run_id)
    at.session_state["why_view"] = "neighbours"
    at.run()
    assert not at.exception, at.exception
    (text,) = [m.value for m in at.markdown if m.value.startswith("**Nearest training images**")]
    answer = text.split("are labelled *")[1].split("*")[0]
    assert answer in ("7", "not 7")
    labels = [image.captions[0].split(" · ")[0] for image in images_of(at)][-8:]
    same = sum((label == "7") == (answer == "7") for label in labels)
    assert f"{same} of the 8 are labelled *{answer}*" in text


def test_a_clicked_map_point_is_read_from_streamlits_selection_event() -> None:
    """The selection's shape as Streamlit documents it (st.plotly_chart, on_select): customdata per point."""
    from pages.draw_why import picked_test_image

    point = {"curve_number": 3, "point_number": 9, "point_index": 9, "x": 1.5, "y": -2.0,
             "customdata": [4321, "3", "5"], "legendgroup": ""}
    assert picked_test_image({"selection": {"points": [point], "point_indices": [9], "box": [], "lasso": []}}) == 4321
    star = {"curve_number": 10, "point_number": 0, "point_index": 0, "x": 0.1, "y": 0.2}
    assert picked_test_image({"selection": {"points": [star], "point_indices": [0], "box": [], "lasso": []}}) is None
    assert picked_test_image({"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}) is None
    assert picked_test_image(None) is None


class _StubSweep:
    """Just what robustness_lines reads: each transform's predicted class per amount, and the answer."""

    def __init__(self, answer: int, labels: dict[str, list[int]]) -> None:
        self.answer, self.labels = answer, labels

    def curve(self, kind: str) -> tuple[list[float], list[float], list[int]]:
        amounts = [float(a) for a in SWEEP[kind]]
        return amounts, [0.5] * len(amounts), self.labels.get(kind, [self.answer] * len(amounts))


def test_the_robustness_sentences_group_the_steps_and_say_only_as_drawn() -> None:
    from pages.draw_why import robustness_lines

    names = tuple(f"c{i}" for i in range(10))
    lines = robustness_lines(_StubSweep(2, {"shift_x": [8, 8, 8, 2, 0, 0, 8], "rotate": [5, 5, 2, 2, 2, 2, 7]}), names)
    assert lines[0] == ("**Shift right (px)**: *c2* only as drawn (0 px); every other step reads otherwise: "
                        "*c8* (-6 px to -2 px), *c0* (+2 px to +4 px), *c8* (+6 px).")
    assert lines[1] == "**Shift down (px)**: still *c2* over the whole range, -6 px to +6 px."
    assert lines[2] == ("**Rotate clockwise (°)**: still *c2* from -20° to +40°; beyond: *c5* (-60° to -40°), "
                        "*c7* (+60°).")
