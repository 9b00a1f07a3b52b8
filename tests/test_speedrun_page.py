"""AppTest: the Speedrun page renders a measured ladder as a table and a chart, and says what to do without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import speedrun
from tests.apptest_helpers import ROOT, app_test
from tests.test_i18n_pages import english_runs, shown_texts

PAGE = str(ROOT / "pages" / "speedrun.py")


@pytest.fixture(scope="module")
def measured() -> dict:
    """A real ladder on a small subset, to 80% (99% is out of reach there); the slow DataLoader rung left out."""
    return speedrun.run_ladder(train_subset=3200, test_subset=300, max_epochs=2, skip=("tutorial", "compile"),
                               target=0.8)


def open_page(tmp_path: Path, lang: str | None = None):
    at = app_test(tmp_path, timeout=120)
    if lang:
        at.query_params["lang"] = lang
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_the_page_renders_every_measured_rung(tmp_path, monkeypatch, measured):
    monkeypatch.setattr(speedrun, "DEFAULT_OUTPUT", speedrun.write_ladder(measured, tmp_path / "ladder.json"))
    at = open_page(tmp_path)
    table = at.table[0].value.reset_index()
    assert len(table) == len(measured["rungs"]) == 7  # every rung but the two left out
    assert list(table["rung"]) == [row["title"] for row in measured["rungs"]]
    times = table["time to 80% (s)"]
    for shown, row in zip(times, measured["rungs"], strict=True):
        assert shown == ("not reached" if row["seconds_to_99"] is None else f"{row['seconds_to_99']:.1f}")
    assert any("`fast` preset" in element.value for element in at.markdown)
    assert "3,200 training" in at.caption[0].value
    assert at.get("plotly_chart")


def test_without_a_ladder_the_page_gives_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(speedrun, "DEFAULT_OUTPUT", tmp_path / "none.json")
    at = open_page(tmp_path)
    assert "No ladder has been measured here yet" in at.info[0].value
    assert at.code[0].value == "python -m core bench ladder"


def test_a_broken_ladder_file_is_named(tmp_path, monkeypatch):
    broken = tmp_path / "ladder.json"
    broken.write_text("{not json")
    monkeypatch.setattr(speedrun, "DEFAULT_OUTPUT", broken)
    at = open_page(tmp_path)
    assert "is not a speedrun ladder result" in at.error[0].value


def test_in_chinese_the_rungs_and_headers_are_translated(tmp_path, monkeypatch, measured):
    monkeypatch.setattr(speedrun, "DEFAULT_OUTPUT", speedrun.write_ladder(measured, tmp_path / "ladder.json"))
    at = open_page(tmp_path, lang="zh-CN")
    table = at.table[0].value.reset_index()
    assert "阶梯" in table.columns
    assert table["阶梯"].iloc[0] == "内存中的张量：批次直接从 uint8 图像张量中切出，测试时每批 1,000 张"
    texts = shown_texts(at.main) + [str(title) for title in table["阶梯"]] + [str(column) for column in table.columns]
    assert not [run for text in texts for run in english_runs(text)]
