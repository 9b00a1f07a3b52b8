"""Translations: the catalogs cover every message in the code, placeholders match, negotiation and numbers."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from core.i18n import LANGUAGES, LOCALES_DIR, Message, Translator, message_from_fields, negotiate, render, translations
from core.training import ConfigError, preset_config
from tests.apptest_helpers import ROOT

TRANSLATED = [locale for locale in LANGUAGES if locale != "en"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdfrgie]|\{(\w+)(?:[:!][^}]*)?\}")


def extracted_messages() -> dict[tuple[str, str | None], tuple[str, ...]]:
    """Every message the code marks ((msgid, context) -> where), extracted now with Babel's API and babel.cfg."""
    with open(ROOT / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2), "N_": None}
    found: dict[str, list[str]] = {}
    for filename, line, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault((msgid, context), []).append(f"{filename}:{line}")
    return {key: tuple(where) for key, where in found.items()}


def placeholders(text: str) -> set[str]:
    return {a or b for a, b in PLACEHOLDER.findall(text)}


@pytest.fixture(scope="module")
def code_messages() -> dict[tuple[str, str | None], tuple[str, ...]]:
    return extracted_messages()


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_message_in_the_code_has_a_translation_with_the_same_placeholders(locale, code_messages):
    with open(LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po", "rb") as po_file:
        catalog = read_po(po_file, locale=locale)
    problems = []
    for (msgid, context), where in sorted(code_messages.items(), key=lambda item: item[1]):
        entry = catalog.get(msgid, context=context)
        strings = [] if entry is None else [entry.string] if isinstance(entry.string, str) else list(entry.string)
        if entry is None or not all(strings):
            problems.append(f"{where[0]}: no {locale} translation for {msgid!r} (run scripts/i18n.sh, translate)")
        elif entry.fuzzy:
            problems.append(f"{where[0]}: fuzzy {locale} translation for {msgid!r}")
        else:
            ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
            expected = set().union(*(placeholders(text) for text in ids))
            for text in strings:
                if placeholders(text) != expected:
                    problems.append(f"{where[0]}: placeholders {sorted(placeholders(text))} in {text!r}, "
                                    f"expected {sorted(expected)}")
    assert not problems, "\n".join(problems)


def test_negotiation_prefers_the_best_supported_language_and_falls_back_to_english():
    assert negotiate("zh-CN") == "zh_CN"
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh_CN"
    assert negotiate("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert negotiate("fr-FR,zh;q=0.5") == "zh_CN"
    assert negotiate("zh_Hans_CN") == "zh_CN"
    assert negotiate("xx") == "en"
    assert negotiate("") == "en"
    assert negotiate(None) == "en"


def test_chinese_catalog_translates_and_english_is_the_source():
    assert translations("zh_CN").gettext("Dataset") == "数据集"
    assert Translator("en").gettext("Dataset") == "Dataset"
    assert Translator("xx").gettext("Dataset") == "Dataset"  # unknown locale: English, no error


def test_numbers_and_percentages_follow_the_locale():
    assert Translator("en").number(60000) == "60,000"
    assert Translator("zh_CN").number(60000) == "60,000"
    assert Translator("en").number(0.25, 2) == "0.25"
    assert Translator("en").percent(0.9912) == "99.1%"
    assert Translator("zh_CN").percent(0.5, 0) == "50%"


def test_a_message_renders_in_chinese_from_its_template_and_parameters():
    message = Message("stopped during epoch %(epoch)d; saved up to epoch %(saved)d", {"epoch": 3, "saved": 2})
    assert message.english() == str(message) == "stopped during epoch 3; saved up to epoch 2"
    assert render(message, Translator("zh_CN")) == "在第 3 轮中停止；已保存到第 2 轮"
    assert render(message, Translator("en")) == message.english()
    assert message_from_fields(message.to_fields()) == message


def test_a_message_falls_back_to_english_when_the_template_is_unknown_or_the_parameters_do_not_fit():
    zh = Translator("zh_CN")
    unknown = Message("a sentence no catalog knows: %(count)d", {"count": 4})
    assert render(unknown, zh) == "a sentence no catalog knows: 4"
    missing = Message("stopped during epoch %(epoch)d; saved up to epoch %(saved)d", {"epoch": 3})
    assert render(missing, zh, fallback="stopped during epoch 3") == "stopped during epoch 3"
    assert render(Message("100% plain, no parameters"), zh) == "100% plain, no parameters"
    old = {"status": "running", "message": "epoch 1 of 2 done"}  # a status.json from before templates
    assert message_from_fields(old) == Message("epoch 1 of 2 done")


def test_config_errors_carry_each_problem_as_a_message_and_stay_english_as_text():
    try:
        preset_config("fast", lr=-1.0, epochs=0)
    except ConfigError as error:
        assert str(error) == "lr must be a positive number, got -1.0; epochs must be at least 1, got 0"
        assert [render(m, Translator("zh_CN")) for m in error.messages] == [
            "学习率（lr）必须是正数，实际为 -1.0", "轮数（epochs）至少为 1，实际为 0"]
    else:
        raise AssertionError("a negative learning rate must not validate")


def test_a_nested_message_renders_in_the_same_language_and_survives_status_json():
    import json

    from core.layers import layer_where
    from core.runs import joined

    where = layer_where(3, {"type": "Conv2d", "out_channels": 8, "kernel_size": 3})
    message = Message("%(where)s: padding %(padding)d is more than half the kernel %(kernel)d",
                      {"where": where, "padding": 2, "kernel": 2})
    assert str(message) == "layer 3 Conv2d(8, k=3, s=1, p=0): padding 2 is more than half the kernel 2"
    zh = Translator("zh_CN")
    assert render(message, zh) == "第 3 层 Conv2d(8, k=3, s=1, p=0)：填充 2 超过了窗口 2 的一半"
    stored = json.loads(json.dumps(message.to_fields()))  # what status.json keeps
    assert message_from_fields(stored) == message and render(message_from_fields(stored), zh) == render(message, zh)
    both = joined([Message("a run name cannot hold control characters"), message])
    assert str(both) == "a run name cannot hold control characters; " + str(message)
    assert render(both, zh) == "训练名称不能包含控制字符；" + render(message, zh)
