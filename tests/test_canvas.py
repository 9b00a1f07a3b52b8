"""The vendored canvas (pages/canvas): its build is the package's plus the two documented changes, and its result.

How fast it sends, and that it draws at all, is measured in a real browser: tests/e2e/test_draw_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from pages import canvas

BUILD = Path(canvas.__file__).parent / canvas.ASSET_DIR
UPSTREAM_JS = "index-ynYgWHmM.js"
# sha256 of streamlit_drawable_canvas/frontend/build/index-ynYgWHmM.js in the 0.13.0 wheel (its RECORD says so too).
UPSTREAM_SHA256 = "40c729b5694331c848834c38423b7fd2f5dcc5685d178c40e2b3ed6fe67a0a35"
PATCHES = [  # (upstream text, vendored text), as pages/canvas/README.md lists them
    ("    }, t);\n",
     '    }, typeof t == "function" ? t() : t); /* PATCHED: delay read at each send */\n'),
    ("h.sender = Nh((c) => Ic(h, c), Bc), ",
     "h.sender = Nh((c) => Ic(h, c), () => h.latest.data?.sendDelayMs ?? Bc)"
     " /* PATCHED: delay from data.sendDelayMs */, "),
]


def test_the_build_is_the_package_s_with_only_the_documented_changes() -> None:
    vendored = (BUILD / UPSTREAM_JS).read_text()
    assert [path.name for path in sorted(BUILD.glob("index-*.js"))] == [UPSTREAM_JS]  # the glob finds just it
    header, body = vendored.split("*/\n", 1)
    assert header.startswith("/* streamlit-drawable-canvas 0.13.0")
    assert body.count("PATCHED") == len(PATCHES)
    for upstream, patched in PATCHES:
        assert body.count(patched) == 1
        body = body.replace(patched, upstream)
    assert hashlib.sha256(body.encode()).hexdigest() == UPSTREAM_SHA256


def test_the_default_wait_is_still_the_package_s_and_the_page_sends_at_once() -> None:
    body = (BUILD / UPSTREAM_JS).read_text()
    assert re.search(r"\bBc = 200,", body)  # a canvas given no sendDelayMs behaves as the package does
    assert canvas.SEND_DELAY_MS == 0


def test_image_data_is_the_png_it_was_sent() -> None:
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[40:240, 130:150, :3] = 255  # a white bar: a 1 on black
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    result = canvas.CanvasResult(json_data={"objects": [{"type": "path"}]}, image_data_url=url)
    decoded = result.image_data
    assert decoded is not None and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, rgba)
    assert canvas.CanvasResult(json_data={"objects": []}, image_data_url=None).image_data is None
