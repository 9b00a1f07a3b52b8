"""Translations: gettext catalogs from locales/, locale negotiation and locale-aware numbers.

Pure Python (no streamlit). The catalogs are the `.po` files under locales/<locale>/LC_MESSAGES/,
read with Babel at first use and turned into gettext objects in memory, so a fresh clone needs no
compile step and no `.mo` file is committed. English is the source language: its messages are the
msgids themselves, and anything unknown (a locale, a message) falls back to English.

Core code stays language-neutral: messages that reach a page are written in English and marked
with `N_()` (a no-op that Babel's extractor finds); the page translates them with its `_()`. A message
with values in it is a `Message`: its marked template and named parameters travel together (into
status.json, a ConfigError), so a page can render it in its own language with `render()`.
"""

from __future__ import annotations

import gettext
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from babel import Locale, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "messages"
DEFAULT_LOCALE = "en"
# Every language the UI speaks, in switch order: locale id (Babel/gettext form) -> its own name.
LANGUAGES: dict[str, str] = {"en": "English", "zh_CN": "简体中文"}
URL_TAGS: dict[str, str] = {"en": "en", "zh_CN": "zh-CN"}  # the BCP 47 tag used in ?lang=


def N_(message: str) -> str:
    """Mark a message for extraction without translating it (core stays English; the page translates)."""
    return message


@dataclass(frozen=True)
class Message:
    """An English %-template marked with N_() and its named parameters, rendered late in any language.

    `Message(N_("epoch %(epoch)d of %(total)d done"), {"epoch": 2, "total": 5})`; `str()` gives the English.
    A message without parameters is used as is (a '%' in it needs no escaping). A parameter may itself be a
    Message (say, where in a network a problem is), rendered in the same language as the whole.
    """

    template: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)  # JSON-safe values: numbers and strings

    def english(self) -> str:
        return render(self)

    def __str__(self) -> str:
        return self.english()

    def to_fields(self) -> dict[str, Any]:
        """The status.json fields: the English `message`, its `message_template` and `message_params`."""
        return {"message": self.english(), "message_template": self.template, "message_params": _params_json(self)}


class MessageError(ValueError):
    """A problem the user can fix, told as a Message: `message` (and `messages`, the shape ConfigError has) for a
    page to render in its language; str(error) is the English, for logs and the CLI."""

    def __init__(self, message: str | Message) -> None:
        self.message = as_message(message)
        self.messages = (self.message,)
        super().__init__(self.message.english())


def _params_json(message: Message) -> dict[str, Any]:
    """The parameters, a nested Message as {"template": ..., "params": ...} (JSON-safe)."""
    return {name: {"template": value.template, "params": _params_json(value)} if isinstance(value, Message) else value
            for name, value in message.params.items()}


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    """The inverse of _params_json: nested {"template", "params"} objects become Messages again."""
    nested = {"template", "params"}
    return {name: Message(str(value["template"]), _params_from_json(value["params"]))
            if isinstance(value, dict) and set(value) == nested and isinstance(value["params"], dict) else value
            for name, value in params.items()}


def as_message(message: str | Message) -> Message:
    """A plain English string as a Message without parameters; a Message as it is."""
    return message if isinstance(message, Message) else Message(str(message))


def message_from_fields(record: Mapping[str, Any]) -> Message:
    """The Message stored by `to_fields` in a record (status.json); a plain one from `message` for older records."""
    english = str(record.get("message", ""))
    template, params = record.get("message_template"), record.get("message_params")
    if not isinstance(template, str) or not template or not isinstance(params, dict):
        return Message(english)
    return Message(template, _params_from_json(params))


class _Gettext(Protocol):
    def gettext(self, message: str) -> str: ...


def render(message: Message, translator: _Gettext | None = None, fallback: str | None = None) -> str:
    """The message in the translator's language (English without one).

    A template the catalog does not know stays English; a translation whose placeholders do not fit the
    parameters falls back to the English template, and one that still does not fit to `fallback`
    (the English text stored beside it) or the bare template.
    """
    candidates = [message.template]
    if translator is not None:
        candidates.insert(0, translator.gettext(message.template))
    if not message.params:
        return candidates[0]
    params = {name: render(value, translator) if isinstance(value, Message) else value
              for name, value in message.params.items()}
    for template in candidates:
        try:
            return template % params
        except (KeyError, TypeError, ValueError):
            continue
    return fallback if fallback is not None else message.template


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """The catalog for `locale` (cached), or English's identity catalog when it has none."""
    path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if locale == DEFAULT_LOCALE or not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out, as msgfmt does
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def negotiate(requested: str | None) -> str:
    """The supported locale that best fits an Accept-Language-like string ('zh-CN,zh;q=0.9', 'en-US', 'zh').

    The first tag (by q-weight) that names a supported locale or its language wins, so any Chinese
    request gets Simplified Chinese (the only Chinese we have); anything else, or nothing, gets English.
    """
    if not requested:
        return DEFAULT_LOCALE
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(requested.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                quality = 0.0
        weighted.append((-quality, position, tag.strip().replace("_", "-").lower()))
    for _quality, _position, tag in sorted(weighted):
        language = tag.split("-")[0]
        for locale in LANGUAGES:  # the exact locale, else the first of the same language
            if locale.lower().replace("_", "-") == tag:
                return locale
        for locale in LANGUAGES:
            if locale.split("_")[0].lower() == language:
                return locale
    return DEFAULT_LOCALE


@dataclass(frozen=True)
class Translator:
    """gettext, ngettext and number formatting for one locale."""

    locale: str = DEFAULT_LOCALE

    @property
    def _catalog(self) -> gettext.NullTranslations:
        return translations(self.locale)

    def gettext(self, message: str) -> str:
        return self._catalog.gettext(message)

    def pgettext(self, context: str, message: str) -> str:
        return self._catalog.pgettext(context, message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return self._catalog.ngettext(singular, plural, count)

    def number(self, value: float, digits: int | None = None) -> str:
        """A number with the locale's grouping and decimal signs; `digits` fixes the decimals."""
        pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
        return numbers.format_decimal(value, format=pattern, locale=_babel_locale(self.locale))

    def percent(self, fraction: float, digits: int = 1) -> str:
        """A fraction (0.9912) as a percentage ('99.1%') in the locale's style."""
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return numbers.format_percent(fraction, format=pattern, locale=_babel_locale(self.locale))


@cache
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)


ENGLISH = Translator()
