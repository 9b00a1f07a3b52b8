"""Browser: draw digits with the mouse on the Draw page's canvas; check and time each prediction.

The latency measured is from the mouse-up that ends a stroke to the predicted digit on screen:
the canvas encodes its PNG, Streamlit reruns the page (preprocess, predict, saliency, feature maps,
charts) and the browser renders it. Each digit is drawn on a cleared canvas, so the answer that
appears can only come from the stroke just finished.
"""

from __future__ import annotations

import io
import json
import math
import os
import statistics
import time

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from core.bench import TRAINING_BESIDE, training_beside
from tests.e2e.conftest import ARTIFACTS, screenshot, wait_for_app_idle

pytestmark = pytest.mark.e2e

CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
LATENCY_TARGET_S = 0.5
IDLE_P95_TARGET_S = 0.3  # the goal; 0.2 s of it is the canvas's own debounce
IDLE_P95_BOUND_S = 1.5  # asserted: p95 was 0.43-0.92 s at load average 10-14 on 2 cores; catches gross regressions

# Strokes in canvas pixels (the canvas is 280x280), each a list of points the mouse moves through.
DIGITS: dict[str, list[list[tuple[float, float]]]] = {
    "1": [[(150, 45), (146, 100), (142, 160), (138, 235)]],
    "0": [[(140 + 55 * math.sin(a / 24 * 2 * math.pi), 140 - 90 * math.cos(a / 24 * 2 * math.pi))
           for a in range(25)]],
    "7": [[(75, 55), (205, 55), (180, 110), (150, 170), (128, 235)]],
}


def wait_for_steady_canvas(page, frames: int = 5) -> None:
    """Wait until the canvas has kept its place for `frames` animation frames and nothing covers its middle.

    After a clear, the rest of the page can still be settling (stale elements leave, others move up);
    a stroke aimed at where the canvas was a moment ago lands on the page instead and selects text.
    """
    page.wait_for_function(
        """frames => {
            const host = document.querySelector('[data-testid=stBidiComponentIsolated]');
            const canvas = host && host.shadowRoot && host.shadowRoot.querySelector('canvas.upper-canvas');
            if (!canvas) return false;
            const r = canvas.getBoundingClientRect();
            const place = [r.x, r.y, r.width, r.height].join();
            const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            window.__canvasSteady = place === (window.__canvasPlace || '') && hit === host
                ? (window.__canvasSteady || 0) + 1 : 0;
            window.__canvasPlace = place;
            return window.__canvasSteady >= frames;
        }""",
        arg=frames, timeout=20_000, polling="raf",
    )


def draw(page, strokes: list[list[tuple[float, float]]]) -> float:
    """Draw the strokes on the canvas; return the perf_counter time of the last mouse-up."""
    wait_for_steady_canvas(page)
    box = page.locator(CANVAS).bounding_box()
    assert box is not None
    released = 0.0
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
        page.mouse.up()
        released = time.perf_counter()
    return released


def shown_answer(page) -> str | None:
    """The big predicted digit on the page, or None when there is none."""
    answer = page.locator(".big-answer")
    return answer.first.inner_text().strip() if answer.count() else None


def wait_for_answer(page, timeout_ms: int = 20_000) -> None:
    page.wait_for_function("document.querySelector('.big-answer') !== null", timeout=timeout_ms, polling="raf")


def wait_for_charts(page, count: int) -> None:
    """Wait until `count` Plotly figures have drawn (they render after the page's text)."""
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {count}", timeout=20_000
    )


def wait_for_strip(page) -> None:
    """Wait until the five preprocessing images have loaded."""
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=stImage] img')].filter(i => i.complete && i.naturalWidth)"
        ".length >= 5",
        timeout=20_000,
    )


def clear(page) -> None:
    """Press the page's Clear button and wait until the prediction is gone."""
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("document.querySelector('.big-answer') === null", timeout=20_000)
    page.get_by_text("an empty canvas gets no prediction").wait_for(timeout=20_000)
    wait_for_app_idle(page)
    expect(page.locator(CANVAS)).to_have_count(1, timeout=20_000)  # the old canvas may linger a moment


def open_draw_page(server: str, page) -> None:
    """Open the app at its root and click Draw in the navigation, as a person would."""
    page.set_viewport_size({"width": 1400, "height": 3400})  # Streamlit scrolls inside: tall, to see it all
    page.goto(server)
    page.get_by_role("heading", name="MNIST dataset").wait_for(timeout=90_000)  # app.py's first page is up
    page.locator("[data-testid=stSidebar] a", has_text="Draw").click()  # app.py's menu of page links
    page.get_by_role("heading", name="Draw a digit").wait_for(timeout=60_000)
    page.locator(CANVAS).wait_for(timeout=60_000)
    wait_for_app_idle(page)


def toolbar_and_slider(page) -> tuple[float, float]:
    """Hover the canvas until its toolbar has slid fully into view; (toolbar card's top, slider's bottom) in px."""
    page.locator(CANVAS).hover()
    toolbar = "document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot.querySelector('.dc-toolbar')"
    page.wait_for_function(  # shown and at its final place: 2.65rem above the canvas (a CSS transition)
        f"(() => {{ const style = getComputedStyle({toolbar}); "
        "return style.opacity === '1' && Math.abs(parseFloat(style.top) + 2.65 * 16) < 0.5; })()",
        timeout=20_000,
    )
    card_top, slider_bottom = page.evaluate(
        f"[{toolbar}.querySelector('.dc-toolbar-card').getBoundingClientRect().top, "
        "document.querySelector('.st-key-stroke').getBoundingClientRect().bottom]"
    )
    return float(card_top), float(slider_bottom)


def warm_up(page) -> None:
    """A first stroke warms the caches (model load, first plotly render); it is not timed."""
    draw(page, DIGITS["1"])
    wait_for_answer(page, timeout_ms=60_000)
    wait_for_app_idle(page)
    clear(page)


def stroke_latency(page, digit: str) -> float:
    """Draw `digit` on a cleared canvas; seconds from the last mouse-up to the answer on screen (checked)."""
    released = draw(page, DIGITS[digit])
    try:
        wait_for_answer(page)
    except Exception:
        screenshot(page, f"draw-no-answer-{digit}")  # what the page showed instead
        raise
    latency = time.perf_counter() - released
    wait_for_app_idle(page)
    assert shown_answer(page) == digit, f"drew a {digit}, the page says {shown_answer(page)}"
    assert page.get_by_text("Traceback").count() == 0
    return latency


def test_draw_digits_and_clear(server, page) -> None:
    open_draw_page(server, page)
    assert shown_answer(page) is None
    page.get_by_text("an empty canvas gets no prediction").wait_for()
    screenshot(page, "draw-empty")
    card_top, slider_bottom = toolbar_and_slider(page)
    screenshot(page, "draw-empty-toolbar")
    assert card_top >= slider_bottom, f"the canvas toolbar (top {card_top}) covers the slider (bottom {slider_bottom})"

    warm_up(page)
    latencies = {}
    for digit in DIGITS:
        latencies[digit] = stroke_latency(page, digit)
        wait_for_charts(page, 1)
        wait_for_strip(page)
        screenshot(page, f"draw-{digit}")
        clear(page)

    assert shown_answer(page) is None
    screenshot(page, "draw-cleared")
    draw(page, DIGITS["7"])
    wait_for_answer(page)
    for tab, charts, caption in (("Saliency", 2, "saliency"), ("Feature maps", 2, "feature-maps")):
        page.get_by_role("tab", name=tab).click()
        wait_for_charts(page, charts)  # the bars, then the tab's own figure
        wait_for_app_idle(page)
        assert page.get_by_text("Traceback").count() == 0
        screenshot(page, f"draw-7-{caption}")
    report = ", ".join(f"{digit}: {seconds * 1000:.0f} ms" for digit, seconds in latencies.items())
    # The canvas component itself waits 200 ms after mouse-up before sending (its debounce).
    print(f"\nDraw page, mouse-up to prediction on screen: {report} (target {LATENCY_TARGET_S * 1000:.0f} ms)")
    # The target holds on a machine that is not overloaded (median 338 ms, README); with more runnable processes
    # than cores, every process gets its share of them, so the bound grows by the load per core (measured: median
    # 813 ms at load 13 on 2 cores). It still fails a page that reruns twice or predicts slowly.
    bound = LATENCY_TARGET_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert statistics.median(latencies.values()) < bound, f"median over {bound * 1000:.0f} ms: {report}"
    assert max(latencies.values()) < 2 * bound, f"one stroke took over {2 * bound * 1000:.0f} ms: {report}"


def latencies_of_rounds(page, rounds: int) -> list[float]:
    """Stroke-to-answer seconds for every digit, `rounds` times over, each on a cleared canvas."""
    latencies = []
    for _ in range(rounds):
        for digit in DIGITS:
            latencies.append(stroke_latency(page, digit))
            clear(page)
    return latencies


def test_stroke_to_answer_idle(server, page) -> None:
    """21 strokes on an idle server: median and p95 from mouse-up to the answer on screen, saved and asserted.

    The canvas waits 200 ms after a mouse-up before it sends (a fixed debounce in streamlit-drawable-canvas
    0.13.0, not an option), so the page has about 100 ms for the target p95 of 300 ms. The assertion is a bound
    this shared 2-core machine holds; the figures are printed and saved in test-artifacts/.
    """
    open_draw_page(server, page)
    warm_up(page)
    latencies = latencies_of_rounds(page, rounds=7)
    ordered = sorted(latencies)
    median, p95 = statistics.median(ordered), ordered[math.ceil(0.95 * len(ordered)) - 1]
    record = {"strokes": len(latencies), "median_ms": round(median * 1000, 1), "p95_ms": round(p95 * 1000, 1),
              "target_p95_ms": IDLE_P95_TARGET_S * 1000, "load_average": os.getloadavg(),
              "ms": [round(s * 1000, 1) for s in latencies]}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "draw-latency-idle.json").write_text(json.dumps(record, indent=1))
    print(f"\nDraw page, mouse-up to answer over {len(latencies)} strokes: median {median * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms (target p95 {IDLE_P95_TARGET_S * 1000:.0f} ms), load {os.getloadavg()}")
    assert p95 < IDLE_P95_BOUND_S, f"p95 {p95 * 1000:.0f} ms: slower than even a loaded machine explains"


def test_stroke_to_answer_beside_a_training_process(server, page) -> None:
    """The same strokes, idle and then while `python -m core train` runs beside the server; both medians saved."""
    open_draw_page(server, page)
    warm_up(page)
    idle = latencies_of_rounds(page, rounds=2)
    with training_beside() as training:  # its own runs folder under the temp dir, ended afterwards
        busy = latencies_of_rounds(page, rounds=2)
        training_throughout = training.poll() is None
    record = {
        "training_command": " ".join(["python -m core train", *TRAINING_BESIDE]),
        "idle_median_ms": statistics.median(idle) * 1000, "busy_median_ms": statistics.median(busy) * 1000,
        "ratio": statistics.median(busy) / statistics.median(idle), "training_throughout": training_throughout,
        "idle_ms": [round(s * 1000, 1) for s in idle], "busy_ms": [round(s * 1000, 1) for s in busy],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "draw-latency-beside-training.json").write_text(json.dumps(record, indent=1))
    print(f"\nDraw page, mouse-up to answer, median of {len(idle)}: idle {record['idle_median_ms']:.0f} ms, "
          f"beside training {record['busy_median_ms']:.0f} ms ({record['ratio']:.2f}x)")
    assert training_throughout, "the training process ended before the strokes did: the busy figure is too kind"
    assert statistics.median(busy) < 10 * LATENCY_TARGET_S, "far too slow beside a training run, even here"


def png_of_a_one(dark_on_light: bool = True) -> bytes:
    """A hand-made '1' as a PNG: a slanted bar, dark ink on light paper like a scan."""
    image = Image.new("L", (120, 160), 255 if dark_on_light else 0)
    ImageDraw.Draw(image).line([(66, 20), (56, 140)], fill=0 if dark_on_light else 255, width=12)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_through_the_browser(server, page) -> None:
    open_draw_page(server, page)
    page.get_by_role("radio", name="Upload").click()
    page.get_by_text("Upload an image of a digit").wait_for(timeout=20_000)
    assert page.locator(CANVAS).count() == 0
    upload = page.locator("[data-testid=stFileUploaderDropzoneInput]")
    upload.set_input_files(files=[{"name": "one.png", "mimeType": "image/png", "buffer": png_of_a_one()}])
    wait_for_answer(page)
    wait_for_app_idle(page)
    assert shown_answer(page) == "1"
    screenshot(page, "draw-upload-one")
    upload.set_input_files(files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
    page.get_by_text("not a PNG or JPEG image").wait_for(timeout=20_000)
    page.wait_for_function("document.querySelector('.big-answer') === null", timeout=20_000)
    screenshot(page, "draw-upload-not-an-image")


def test_why_views_render_for_a_drawing(server, page) -> None:
    """Draw a 7, then open the "Why this answer?" views one by one: each draws its figures, no traceback."""
    open_draw_page(server, page)
    draw(page, DIGITS["7"])
    wait_for_answer(page, timeout_ms=60_000)
    wait_for_app_idle(page)
    page.get_by_text("Pick a view").wait_for(timeout=20_000)
    views = (("Robustness", 3, "versions in one batch"), ("Attribution", 2, "on the last convolution"),
             ("Embedding map", 2, "of the penultimate-layer features of all 10,000 test images"))
    for view, charts, text in views:
        page.get_by_role("radio", name=view).click()
        page.get_by_text(text).first.wait_for(timeout=120_000)  # the map embeds the test set the first time
        wait_for_charts(page, charts)  # the answer's bars, then the view's own figures
        wait_for_app_idle(page)
        if view == "Embedding map":
            page.get_by_text("No image picked yet.").wait_for(timeout=20_000)  # beside the drawn map
        assert page.get_by_text("Traceback").count() == 0
        assert shown_answer(page) == "7"
        screenshot(page, f"draw-7-why-{view.split()[0].lower()}")


def test_save_a_drawing_to_the_hard_set_and_see_the_score(server, runs_dir, page) -> None:
    """Draw a 7, save it from the My hard set tab with its label, and see the default model scored on it."""
    open_draw_page(server, page)
    draw(page, DIGITS["7"])
    wait_for_answer(page, timeout_ms=60_000)
    wait_for_app_idle(page)
    assert shown_answer(page) == "7"
    page.get_by_role("tab", name="My hard set").click()
    save = page.get_by_role("button", name="Save to my hard set")
    save.wait_for(timeout=20_000)
    wait_for_app_idle(page)
    save.click()
    page.get_by_text("Saved as 7.").wait_for(timeout=20_000)
    wait_for_app_idle(page)
    row = page.locator("[data-testid=stTable] tr", has_text="Default model (shipped)")
    expect(row).to_contain_text("100.0%", timeout=20_000)
    expect(page.locator("[data-testid=stTable]")).to_contain_text("MNIST")
    assert len(list((runs_dir / ".hardset").glob("*.npz"))) == 1  # on disk with the runs
    assert shown_answer(page) == "7" and page.get_by_text("Traceback").count() == 0
    screenshot(page, "draw-hard-set")
