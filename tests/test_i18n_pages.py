"""AppTest: every page in Chinese (via ?lang=zh-CN) renders without exceptions and shows no English prose;
the language switch and ?lang= change the language and keep the page's choices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest_helpers import ROOT, app_test

PAGES = ["dataset", "architecture", "tutorials", "train", "draw", "compare", "sweep", "speedrun"]
# Pages whose prose is still English (a known gap, listed in the README): expected to fail the check.
UNTRANSLATED: set[str] = set()

# Words that may stand in Chinese text: names, identifiers, units and the like (compared lower-case).
ALLOWED_WORDS = {
    "mnist", "fashion", "zalando", "pytorch", "torch", "plotly", "onnx", "torchscript", "cpu", "gpu", "cuda",
    "lenet", "demomodel", "digit", "fast", "best", "adam", "adamw", "sgd", "relu", "softmax", "dropout",
    "epoch", "epochs", "batch", "conv", "pool", "linear", "flatten", "batchnorm", "png", "jpeg", "csv", "f1",
    "roc", "auc", "macs", "mac", "onecycle", "cosine", "step", "none", "true", "false", "px", "ms", "s",
    "nesterov", "momentum", "lr", "ok", "max", "min", "std", "mean", "x", "y", "in", "out", "k", "p",
}
WORD = r"[A-Za-z][A-Za-z'’]*"
ENGLISH_RUN = re.compile(rf"{WORD}(?:[ \t,;:/-]+{WORD}){{2,}}")
CODE = re.compile(r"```.*?```|`[^`]*`|\$[^$]*\$|https?://\S+|<[^>]+>", re.S)


def english_runs(text: str) -> list[str]:
    """Runs of 3+ English words outside code spans, formulas and tags (allowed names and ALL-CAPS aside)."""
    found = []
    for run in ENGLISH_RUN.findall(CODE.sub(" ", text)):
        words = [w for w in re.findall(WORD, run) if w.lower() not in ALLOWED_WORDS and not w.isupper()]
        if len(words) >= 3:
            found.append(run)
    return found


def shown_texts(node: object) -> list[str]:
    """Every text the element tree shows: values of text elements, widget labels, help, options, tabs."""
    texts: list[str] = []
    kind = getattr(node, "type", "")
    if kind not in ("code", "json", "dataframe", "arrow_data_frame", "plotly_chart", "imgs", "image"):
        for attribute in ("value", "label", "body", "help", "placeholder"):
            try:
                value = getattr(node, attribute, None)
            except Exception:
                value = None
            if isinstance(value, str):
                texts.append(value)
        try:
            options = getattr(node, "options", None)
        except Exception:
            options = None
        if isinstance(options, list):
            texts += [str(option) for option in options]
    children = getattr(node, "children", {})
    for child in children.values() if isinstance(children, dict) else children:
        texts += shown_texts(child)
    return texts


def open_in(tmp_path: Path, lang: str | None, page: str = "dataset") -> AppTest:
    at = app_test(tmp_path, timeout=180)
    if lang is not None:
        at.query_params["lang"] = lang
    at.run()
    if page != "dataset":
        at.switch_page(str(ROOT / "pages" / f"{page}.py")).run()
    return at


@pytest.fixture
def private_runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.xfail(reason="prose not translated yet")) if p in UNTRANSLATED else p
     for p in PAGES],
)
def test_every_page_in_chinese_has_no_english_prose(private_runs, page):
    at = open_in(private_runs, "zh-CN", page)
    assert not at.exception, at.exception
    texts = shown_texts(at.main) + shown_texts(at.sidebar)
    assert any(re.search(r"[\u4e00-\u9fff]", text) for text in texts), "no Chinese on the page"
    english = sorted({run for text in texts for run in english_runs(text)})
    assert not english, f"English left on {page}: {english}"


def test_english_is_the_default_and_unknown_lang_falls_back_to_english(private_runs):
    at = open_in(private_runs, None)
    assert not at.exception
    assert at.sidebar.selectbox[0].label == "Dataset"
    at = open_in(private_runs, "xx")
    assert not at.exception and not at.error
    assert at.sidebar.selectbox[0].label == "Dataset"


def test_the_switch_changes_language_keeps_the_choices_and_writes_the_url(private_runs):
    at = open_in(private_runs, None)
    at.sidebar.selectbox(key="dataset").set_value("fashion-mnist").run()
    switch = at.sidebar.button_group[0]
    switch.set_value("zh_CN").run()
    assert not at.exception
    assert at.sidebar.selectbox[0].label == "数据集"
    assert at.sidebar.selectbox(key="dataset").value == "fashion-mnist"  # the dataset choice survived
    assert at.query_params["lang"] == "zh-CN"
    at.sidebar.button_group[0].set_value("en").run()
    assert at.sidebar.selectbox[0].label == "Dataset"
    assert at.query_params["lang"] == "en"


def test_the_english_prose_checker_flags_sentences_but_not_names_or_code():
    assert english_runs("这是 a sentence in English 吗") == ["a sentence in English"]
    assert not english_runs("用 `torch.nn.Conv2d(1, 32, 3)` 和 Fashion-MNIST 训练 LeNet")
    assert not english_runs("预设 fast、best 和 seed000")
