"""Browser: draw digits with the mouse on the Draw page's canvas; check and time each prediction.

The latency measured is from the mouse-up that ends a stroke to the predicted digit on screen:
the canvas encodes its PNG and sends it (pages/canvas: at once, not after the package's 200 ms),
Streamlit reruns the page's fragment (preprocess, predict, the open tab) and the browser renders it.
Each digit is drawn on a cleared canvas, so the answer that appears can only come from the stroke
just finished.
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
IDLE_P95_TARGET_S = 0.3  # the goal, in the browser; asserted while the load average is at most one per core
CANVAS_SEND_BOUND_MS = 100  # mouse-up to the drawing sent, every stroke: 8-23 ms measured, 204-208 with the 200 ms wait

# In the page from its first script on: browser-clock times of each mouse-up, of each message the page sends to
# the server and receives from it, and of the moment an answer enters the page after a mouse-up.
TIMELINE_SCRIPT = """
window.__timeline = {up: [], sent: [], received: [], answer: []};
addEventListener('mouseup', () => window.__timeline.up.push(performance.now()), true);
const NativeSocket = window.WebSocket;
const nativeSend = NativeSocket.prototype.send;
NativeSocket.prototype.send = function (data) {
    window.__timeline.sent.push(performance.now());
    return nativeSend.call(this, data);
};
window.WebSocket = function (...args) {
    const socket = new NativeSocket(...args);
    socket.addEventListener('message', () => window.__timeline.received.push(performance.now()));
    return socket;
};
Object.assign(window.WebSocket, NativeSocket);
window.WebSocket.prototype = NativeSocket.prototype;
let answered = false;
new MutationObserver(() => {
    const shown = document.querySelector('.big-answer') !== null;
    if (shown && !answered) window.__timeline.answer.push(performance.now());
    answered = shown;
}).observe(document, {childList: true, subtree: true});
"""

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
    print(f"\nDraw page, mouse-up to prediction on screen: {report} (target {LATENCY_TARGET_S * 1000:.0f} ms)")
    # The target holds on a machine that is not overloaded (README's measured table); with more runnable processes
    # than cores, every process gets its share of them, so the bound grows by the load per core (measured: median
    # 813 ms at load 13 on 2 cores). It still fails a page that reruns twice or predicts slowly.
    bound = LATENCY_TARGET_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert statistics.median(latencies.values()) < bound, f"median over {bound * 1000:.0f} ms: {report}"
    assert max(latencies.values()) < 2 * bound, f"one stroke took over {2 * bound * 1000:.0f} ms: {report}"


def latencies_of_rounds(page, rounds: int, phases: list[dict[str, float]] | None = None) -> list[float]:
    """Stroke-to-answer seconds for every digit, `rounds` times over, each on a cleared canvas.

    With `phases` (and TIMELINE_SCRIPT in the page), each stroke's phases are appended to it.
    """
    latencies = []
    for _ in range(rounds):
        for digit in DIGITS:
            latencies.append(stroke_latency(page, digit))
            if phases is not None:
                phases.append(stroke_phases(page))
            clear(page)
    return latencies


def stroke_phases(page) -> dict[str, float]:
    """Where the last stroke's time went, in ms of the browser's clock, from TIMELINE_SCRIPT's record.

    canvas: mouse-up to the drawing sent (the canvas's wait, then its PNG); server: sent to the first message
    back (the fragment's rerun starts); render: that message to the answer in the page (the rest of the
    script up to the answer, the messages, React).
    """
    timeline = page.evaluate("window.__timeline")
    up = timeline["up"][-1]
    sent = next(t for t in timeline["sent"] if t >= up)
    received = next(t for t in timeline["received"] if t >= sent)
    answer = next(t for t in timeline["answer"] if t >= up)
    return {"canvas": sent - up, "server": received - sent, "render": answer - received, "total": answer - up}


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `share` of them at or below it."""
    ordered = sorted(values)
    return ordered[math.ceil(share * len(ordered)) - 1]


def test_stroke_to_answer_idle(server, page) -> None:
    """21 strokes: median and p95 from mouse-up to the answer on screen, and where the time went; saved and asserted.

    The canvas sends at mouse-up (pages/canvas; streamlit-drawable-canvas itself waits 200 ms first): asserted on
    every stroke, in the browser's own clock, which load hardly moves. The target p95 is asserted as it is when
    the load average is at most one per core (this test's server and browser alone make about 1.5); above that,
    every process gets its share of the cores, so the bound grows by the load per core, as in
    test_draw_digits_and_clear. The figures, with the load average, are printed and saved in test-artifacts/.
    """
    page.add_init_script(TIMELINE_SCRIPT)
    open_draw_page(server, page)
    warm_up(page)
    phases: list[dict[str, float]] = []
    latencies = latencies_of_rounds(page, rounds=7, phases=phases)
    median, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    where = {name: {"median": round(statistics.median(p[name] for p in phases), 1),
                    "p95": round(percentile([p[name] for p in phases], 0.95), 1)} for name in phases[0]}
    record = {"strokes": len(latencies), "median_ms": round(median * 1000, 1), "p95_ms": round(p95 * 1000, 1),
              "target_p95_ms": IDLE_P95_TARGET_S * 1000, "load_average": os.getloadavg(),
              "ms": [round(s * 1000, 1) for s in latencies], "phases_ms": where,
              "phases_each_ms": [{name: round(value, 1) for name, value in p.items()} for p in phases]}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "draw-latency-idle.json").write_text(json.dumps(record, indent=1))
    print(f"\nDraw page, mouse-up to answer over {len(latencies)} strokes: median {median * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms (target p95 {IDLE_P95_TARGET_S * 1000:.0f} ms), load {os.getloadavg()}; "
          f"in the browser, median/p95 ms: {where}")
    assert max(p["canvas"] for p in phases) < CANVAS_SEND_BOUND_MS, f"the canvas waits to send: {where['canvas']}"
    bound = IDLE_P95_TARGET_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert p95 < bound, f"p95 {p95 * 1000:.0f} ms, over {bound * 1000:.0f} ms at load {os.getloadavg()[0]:.1f}"


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
    expect(page.locator(CANVAS)).to_have_count(0, timeout=20_000)  # the canvas may linger until the rerun ends
    # the image uploader, not the hard set's import (a .zip uploader in its expander below)
    upload = page.locator("[data-testid=stFileUploaderDropzoneInput][accept*='.png']")
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
