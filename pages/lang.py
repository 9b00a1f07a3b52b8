"""The session's language for the pages: `_`, `ngettext`, locale-aware numbers, and the sidebar's switch.

The language comes, in this order, from `?lang=` in the URL (so a shared link opens in the same
language), from the switch in the sidebar (kept in session state and written back to the URL), or
from the browser (`st.context.locale`); an unknown value means English. Light on purpose (no torch):
app.py calls it before the slow imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from core.i18n import DEFAULT_LOCALE, LANGUAGES, URL_TAGS, Message, Translator, negotiate, render

LANG_PARAM = "lang"  # the URL's query parameter
LANG_STATE = "ui_language"  # session state: the language chosen this session (by URL or switch)
SWITCH_KEY = "ui_language_switch"  # the sidebar switch's widget key


def current_locale() -> str:
    """The locale this run speaks ('en' or 'zh_CN')."""
    requested = st.query_params.get(LANG_PARAM)
    if requested:
        return negotiate(requested) if requested.strip() else DEFAULT_LOCALE
    chosen = st.session_state.get(LANG_STATE)
    if chosen in LANGUAGES:
        return str(chosen)
    try:
        return negotiate(st.context.locale)
    except Exception:  # no browser context (bare script runs): English
        return DEFAULT_LOCALE


def translator() -> Translator:
    return Translator(current_locale())


def _(message: str) -> str:
    """The message in the session's language."""
    return translator().gettext(message)


def say(message: Message) -> str:
    """A core Message (template and parameters, from status.json or an error) in the session's language."""
    return render(message, translator(), fallback=message.english())


def sentences(*texts: str) -> str:
    """Translated sentences (or a bracketed aside) one after the other: spaced in English, unspaced in Chinese,
    whose full stops and full-width brackets carry their own room. Empty ones are left out."""
    return sentence_gap().join(text for text in texts if text)


def sentence_gap() -> str:
    """What goes between two sentences in the session's language: a space, or nothing in Chinese."""
    return "" if current_locale().startswith("zh") else " "


def say_all(messages: Sequence[Message]) -> str:
    """Several core Messages (sentences) in the session's language, one after the other."""
    return sentences(*(say(message) for message in messages))


def pgettext(context: str, message: str) -> str:
    """The message in the session's language, where the same English word means different things."""
    return translator().pgettext(context, message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural message for `count`, in the session's language (use `%(count)s` / `{count}`)."""
    return translator().ngettext(singular, plural, count)


def num(value: float, digits: int | None = None) -> str:
    """A number in the session's locale ('60,000', '0.25')."""
    return translator().number(value, digits)


def pct(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage in the session's locale ('99.1%')."""
    return translator().percent(fraction, digits)


def widget_key(key: str) -> str:
    """The widget key of a `choice` stored under `key`: the same key, per language ('tr_task@zh_CN')."""
    return f"{key}@{current_locale()}"


def choice(widget: Callable[..., Any], label: str, options: Sequence[Any], key: str,
           format_func: Callable[[Any], str], on_change: Callable[[], None] | None = None, **kwargs: Any) -> Any:
    """`st.radio` or `st.selectbox` over stable option keys with labels in the session's language.

    The browser sends a radio's or selectbox's choice back as its shown label, so after a language switch
    the old label matches no option and the widget falls back to its default or shows nothing chosen.
    Here the widget's key carries the language (a new widget per language), and the choice itself lives
    under `key` in session state, copied into the widget on every run and back on every change. The labels
    are formatted once per run, in the run's language.
    """
    labels = {option: format_func(option) for option in options}
    shown = widget_key(key)
    if st.session_state.get(key) in labels:
        st.session_state[shown] = st.session_state[key]

    def keep() -> None:
        st.session_state[key] = st.session_state[shown]
        if on_change is not None:
            on_change()

    value = widget(label, list(options), format_func=labels.__getitem__, key=shown, on_change=keep, **kwargs)
    st.session_state[key] = value
    return value


def lang_query() -> dict[str, str]:
    """`{'lang': 'zh-CN'}` when the session chose a language explicitly, for links that keep it."""
    chosen = st.session_state.get(LANG_STATE)
    return {LANG_PARAM: URL_TAGS[chosen]} if chosen in LANGUAGES else {}


def _on_switch() -> None:
    chosen = st.session_state.get(SWITCH_KEY)
    if chosen not in LANGUAGES:  # a click on the selected option clears it: keep the language
        return
    st.session_state[LANG_STATE] = chosen
    st.query_params[LANG_PARAM] = URL_TAGS[chosen]


def language_switch() -> None:
    """The sidebar's English / 简体中文 switch; remembers a `?lang=` choice and keeps it in the URL."""
    locale = current_locale()
    if st.query_params.get(LANG_PARAM):
        st.session_state[LANG_STATE] = locale  # an explicit URL choice outlives page changes
    elif st.session_state.get(LANG_STATE) in LANGUAGES:
        st.query_params[LANG_PARAM] = URL_TAGS[locale]  # links lose the query: put it back
    st.session_state[SWITCH_KEY] = locale
    st.sidebar.segmented_control(
        "Language / 语言",
        list(LANGUAGES),
        format_func=LANGUAGES.__getitem__,
        key=SWITCH_KEY,
        on_change=_on_switch,
        required=True,
        label_visibility="collapsed",
        width="stretch",
    )
