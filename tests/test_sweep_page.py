"""AppTest: the Sweep page creates a tiny sweep, follows it to its end, shows Optuna's figures, trains the best
configuration as a run, and stops a sweep it started.

Every wait reruns the page (as its refresh does) until a state shows, never a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import runs, sweep
from tests.test_sweep import stop_everything

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "sweep.py")


@pytest.fixture
def root(tmp_path, monkeypatch) -> Iterator[Path]:
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv(sweep.STORAGE_ENV, raising=False)
    yield tmp_path
    stop_everything(tmp_path)


def run_until(at: AppTest, check: Callable[[AppTest], bool], what: str, timeout: float = 240.0) -> AppTest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(at):
            return at
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
    raise AssertionError(f"the page never showed {what}")


def texts(at: AppTest) -> str:
    return " ".join(element.value for element in [*at.markdown, *at.caption, *at.info, *at.error, *at.success])


def plotly_count(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


@pytest.mark.slow
def test_a_tiny_sweep_from_the_page(root):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and "No studies yet" in texts(at)
    at.selectbox(key="sw_preset").set_value("seed003")
    at.text_input(key="sw_study").input("page")
    at.number_input(key="sw_trials").set_value(2)
    at.number_input(key="sw_train_subset").set_value(256)
    at.number_input(key="sw_test_subset").set_value(200)
    at.multiselect(key="sw_optimizer").set_value(["adam"])
    at.multiselect(key="sw_batch_size").set_value([64])
    at.multiselect(key="sw_augment").set_value([False])
    at.select_slider(key="sw_lr").set_value((0.001, 0.002))
    at.button(key="sw_start").click().run()
    assert not at.exception and not at.error, [error.value for error in at.error]
    assert at.query_params["study"] in ("page", ["page"])

    at = run_until(at, lambda at: "finished: ran all 2 trials" in texts(at), "the finished sweep")
    assert plotly_count(at) == 4  # history, parallel coordinate, importances, slice
    table = at.dataframe[0].value
    assert list(table["state"]) == ["complete", "complete"]
    assert list(table["optimizer"]) == ["adam", "adam"] and list(table["batch_size"]) == [64, 64]
    for run_link in table["run"]:
        record = runs.find_run(run_link.removeprefix("train?run="))
        assert record.study == "page" and record.trial_state == "complete" and record.status == "finished"
    assert "The best trial so far is trial" in texts(at)

    at.checkbox(key="sw_best_full").uncheck()
    at.button(key="sw_train_best").click().run()
    best = [record for record in runs.list_runs() if record.name == "page best"]
    assert len(best) == 1 and best[0].study == "" and "trains trial" in at.success[0].value

    at.number_input(key="sw_more").set_value(3)
    at.button(key="sw_resume").click().run()
    assert not at.exception and sweep.read_sweep("page").live
    at = run_until(at, lambda at: bool(at.button(key="sw_stop")), "the Stop button")
    at.button(key="sw_stop").click().run()
    at = run_until(at, lambda at: "was stopped" in texts(at), "the stopped sweep")
    assert sweep.read_sweep("page").state == "stopped"


def test_an_empty_choice_is_refused_before_anything_starts(root):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.multiselect(key="sw_optimizer").set_value([]).run()
    assert "Choose at least one value for optimizer." in [error.value for error in at.error]
    assert not [button for button in at.button if button.key == "sw_start"]
