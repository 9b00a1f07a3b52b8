"""Helpers for streamlit.testing AppTests that several page tests share."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Image


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
