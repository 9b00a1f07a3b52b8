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


def errors_shown(at: AppTest) -> list[str]:
    return [element.value for element in at.error]


def test_architecture_errors_and_saving_in_chinese(private_runs):
    at = open_in(private_runs, "zh-CN", "architecture")
    at.radio(key="arch_mode@zh_CN").set_value("custom").run()
    at.selectbox(key="custom_add_type").set_value("Conv2d").run()
    at.button(key="custom_add").click().run()
    at.number_input(key="custom_8_kernel_size").set_value(40).run()  # on the 7×7 map
    [error] = errors_shown(at)
    assert "第 7 层 Conv2d(8, k=40, s=1, p=0)" in error and "输入 7×7" in error, error
    assert not english_runs(error), error
    at.text_input(key="custom_save_name").set_value("a b").run()
    at.button(key="custom_save").click().run()
    assert any("不能用作网络结构的名字" in text and not english_runs(text) for text in errors_shown(at))


def test_a_damaged_saved_network_is_explained_in_chinese_on_the_train_page(private_runs):
    from core.saved_archs import architectures_dir

    folder = architectures_dir(private_runs / "runs")
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{not json")
    at = open_in(private_runs, "zh-CN", "train")
    at.selectbox(key="tr_arch@zh_CN").set_value("saved:broken").run()
    assert not at.exception
    texts = [*errors_shown(at), *(caption.value for caption in at.caption)]
    assert any("已损坏" in text for text in texts)
    assert not [run for text in texts for run in english_runs(text.replace(str(folder), ""))]


def test_the_train_form_keeps_its_choices_across_a_language_switch(private_runs):
    at = open_in(private_runs, None, "train")
    at.radio(key="tr_task@en").set_value("binary").run()
    at.selectbox(key="tr_normalization@en").set_value("half").run()
    at.sidebar.button_group[0].set_value("zh_CN").run()
    assert not at.exception
    task = at.radio(key="tr_task@zh_CN")  # a widget per language: the browser never sends back an old label
    assert task.value == "binary" and task.options[task.index] == "是不是这一类？（一对其余）"
    assert at.selectbox(key="tr_normalization@zh_CN").value == "half"
    at.sidebar.button_group[0].set_value("en").run()
    assert at.radio(key="tr_task@en").value == "binary" and at.session_state["tr_task"] == "binary"


def chinese_only(texts: list[str], *allowed: str) -> list[str]:
    """The English runs left in `texts` once the `allowed` parts (paths, exception text) are cut out."""
    for part in allowed:
        texts = [text.replace(part, "") for text in texts]
    return [run for text in texts for run in english_runs(text)]


def test_a_failed_run_frames_its_exception_in_chinese(private_runs, mnist, monkeypatch):
    import core.training.engine as engine
    from core.training import Failed, preset_config, train

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine, "save_checkpoint", disk_full)
    config = preset_config("seed003", train_subset=256, test_subset=128, threads=1)
    [*_, failed] = train(config, runs_root=private_runs / "runs", dataset=mnist)
    assert isinstance(failed, Failed)
    at = app_test(private_runs, timeout=180)
    at.query_params["lang"] = "zh-CN"
    at.query_params["run"] = failed.run_id
    at.run()
    at.switch_page(str(ROOT / "pages" / "train.py")).run()
    [error] = [e.value for e in at.error]
    assert "训练因错误而中止" in error and "No space left on device" in error  # the framing translated, the text kept
    assert not chinese_only([error], "[Errno 28] No space left on device")


def test_damaged_folders_and_run_errors_in_chinese_on_compare(private_runs):
    from core import runs

    broken = private_runs / "runs" / "20990101-000000-broken"
    broken.mkdir(parents=True)
    (broken / runs.CONFIG_FILE).write_text("{not json")
    at = open_in(private_runs, "zh-CN", "compare")
    [warning] = [w.value for w in at.warning]
    assert "config.json 不是有效的 JSON" in warning, warning
    assert not chinese_only([warning], "Expecting property name enclosed in double quotes")
    for attempt in (lambda: runs.rename_run(broken.name, "x" * 61, private_runs / "runs"),
                    lambda: runs.stop_run(broken.name, private_runs / "runs"),
                    lambda: runs.find_run("../up", private_runs / "runs")):
        with pytest.raises(runs.RunError) as error:
            attempt()
        assert not chinese_only([say_in_chinese(error.value.message)], str(private_runs), "../up", broken.name)


def say_in_chinese(message) -> str:
    from core.i18n import Translator, render

    return render(message, Translator("zh_CN"))


def test_fashion_mnist_class_names_in_chinese(private_runs):
    at = app_test(private_runs, timeout=180)
    at.query_params["lang"] = "zh-CN"
    at.session_state["dataset"] = "fashion-mnist"
    at.run()
    assert not at.exception
    texts = shown_texts(at.main)
    assert any("短靴" in text for text in texts) and any("T恤/上衣" in text for text in texts)
    assert not [text for text in texts if "Ankle boot" in text or "Sneaker" in text]
