"""Helpers for streamlit.testing AppTests that several page tests share."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Image

ROOT = Path(__file__).resolve().parents[1]


def app_test(folder: Path, timeout: float = 90) -> AppTest:
    """An AppTest of app.py, the router, run from a copy in `folder` (a tmp_path) so it routes like a server.

    AppTest resets Streamlit's pages-folder flag before every run, so from beside pages/ every rerun
    would start in the legacy multipage mode and run the page alone, without the sidebar: a server
    leaves that mode for good on its first run. app.py's page list uses absolute paths, so the copy
    routes to the real pages.
    """
    entry = folder / "app.py"
    entry.write_text((ROOT / "app.py").read_text())
    return AppTest.from_file(str(entry), default_timeout=timeout)


def images_of(at: AppTest) -> list[Image]:
    """Every st.image element in the page's main area, in order (AppTest has no accessor for them)."""
    found: list[Image] = []

    def walk(node: object) -> None:
        for child in getattr(node, "children", {}).values():
            if isinstance(child, Image):
                found.append(child)
            walk(child)

    walk(at.main)
    return found


def page_sentences(at: AppTest) -> list[str]:
    """Every sentence the main area shows: titles, markdown, captions, notes, image captions, choices."""
    texts = [element.value for element in [*at.title, *at.markdown, *at.caption, *at.info, *at.warning]]
    texts += [caption for image in images_of(at) for caption in image.captions]
    texts += [str(option) for box in at.selectbox for option in box.options]
    return texts
