"""The Draw page's canvas: streamlit-drawable-canvas 0.13.0's frontend, vendored so that it sends at mouse-up.

The package waits a fixed 200 ms after every mouse-up before it sends the drawing (a debounce with no Python
option); here the wait is the `send_delay_ms` argument. Only the Python side the Draw page needs is written
here (free drawing, a flat background, the PNG back as an array); the JavaScript is the package's own build
with two small changes. README.md beside this file says what changed and why; LICENSE is the package's MIT
licence.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.components.v2.get_bidi_component_manager import get_bidi_component_manager
from streamlit.components.v2.manifest_scanner import ComponentConfig, ComponentManifest
from streamlit.components.v2.types import ComponentRenderer

PACKAGE = "mnist-lab-canvas"  # stands where an installed component's distribution name would
COMPONENT = "canvas"
NAME = f"{PACKAGE}.{COMPONENT}"  # Streamlit's name for it: "<package>.<component>"
VERSION = "0.13.0+send-delay"  # the upstream version it is built from, and what was changed
ASSET_DIR = "frontend/build"  # the built JavaScript and CSS, relative to this folder
SEND_DELAY_MS = 0  # mouse-up to sending the drawing; the package waits 200 (`Bc` in its build)


@dataclass(frozen=True)
class CanvasResult:
    """What the canvas sent last."""

    json_data: dict[str, Any] | None  # the Fabric.js objects; "objects" is empty on an untouched canvas
    image_data_url: str | None  # the canvas as a PNG data URL; None before the first send

    @property
    def image_data(self) -> np.ndarray | None:
        """The canvas as an (H, W, 4) uint8 RGBA array, or None before the first send."""
        if self.image_data_url is None:
            return None
        _header, encoded = self.image_data_url.split(";base64,", 1)
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def declare_assets() -> None:
    """Declare ASSET_DIR as this component's asset folder with the component manager of the running app.

    An installed component declares it in its package's pyproject.toml, which Streamlit scans once when its
    runtime starts; a folder inside the project is never scanned, so it is declared here, on the manager the
    running script uses (AppTest gives each test a new one). Idempotent and cheap.
    """
    manager = get_bidi_component_manager()
    if manager.get_component_asset_root(NAME) is None:
        config = ComponentConfig(name=COMPONENT, asset_dir=ASSET_DIR)
        manager.register_from_manifest(ComponentManifest(name=PACKAGE, version=VERSION, components=[config]),
                                       Path(__file__).resolve().parent)


@functools.cache
def mount_component() -> ComponentRenderer:
    """The component's mount function, created once per process (the files are globs inside ASSET_DIR)."""
    declare_assets()
    return st.components.v2.component(NAME, js="index-*.js", css="index-*.css",
                                      html='<div class="canvas-root"></div>', isolate_styles=True)


def st_canvas(*, stroke_width: int, stroke_color: str, background_color: str, height: int, width: int, key: str,
              send_delay_ms: int = SEND_DELAY_MS) -> CanvasResult:
    """A free-drawing canvas with its toolbar (undo, redo, reset) that sends the drawing as a PNG after each stroke.

    Same arguments, meaning and state as streamlit-drawable-canvas's `st_canvas` with drawing_mode="freedraw",
    update_streamlit=True and return_image_data=True; `send_delay_ms` is how long after a mouse-up it sends.
    """
    declare_assets()  # on this run's manager: a new AppTest, or a server started after the first import
    drawing: dict[str, Any] = {"objects": [], "background": background_color}
    data = {
        "fillColor": "#eee", "strokeWidth": stroke_width, "strokeColor": stroke_color,
        "backgroundColor": background_color, "backgroundImageURL": None, "realtimeUpdateStreamlit": True,
        "canvasWidth": width, "canvasHeight": height, "drawingMode": "freedraw", "initialDrawing": drawing,
        "displayRadius": 3, "returnImageData": True, "disabled": False, "backgroundImageFit": "stretch",
        "maxDisplayHeight": None, "fontSize": 20, "label": "", "sendDelayMs": send_delay_ms,
    }
    state = mount_component()(
        data=data, key=key, default={"drawing": {"raw": drawing, "data": None}, "backgroundFit": None},
        on_drawing_change=lambda: None, on_backgroundFit_change=lambda: None, width="content", height="content",
    )
    sent = state.get("drawing") or {"raw": drawing, "data": None}
    return CanvasResult(json_data=sent.get("raw"), image_data_url=sent.get("data"))
