"""Browser: the Compare page with three real runs; two are chosen and the overlaid chart draws both."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import screenshot, wait_for_app_idle

pytestmark = pytest.mark.e2e

THREE_RUNS = [
    ("tiny fastcnn", dict(arch="fastcnn", epochs=2, seed=1)),
    ("tiny lenet", dict(arch="seed003", epochs=1, seed=2)),
    ("tiny fastcnn 3 epochs", dict(arch="fastcnn", epochs=3, seed=3)),
]


@pytest.fixture(scope="session")
def three_runs(runs_dir, mnist) -> list[str]:
    """Three tiny real runs in the server's runs folder (request it before `server`)."""
    # Imported here, not at the top: test_compare.py loads that module as a plugin, and a plugin
    # imported earlier by another module loses pytest's assertion rewriting (and warns).
    from tests.compare_fixtures import make_tiny_runs

    return make_tiny_runs(runs_dir, mnist, THREE_RUNS)


def choose_runs(page, names: list[str]) -> None:
    """Empty the 'Runs to compare' box, then pick `names` from its list."""
    box = page.locator("[data-testid=stMultiSelect]").filter(has_text="Runs to compare")
    box.get_by_role("button", name="Clear all").click()
    wait_for_app_idle(page)
    for name in names:
        box.locator("input").click()
        page.get_by_role("option", name=name, exact=True).click()
        wait_for_app_idle(page)
    page.keyboard.press("Escape")


def test_two_chosen_runs_are_overlaid(three_runs, server, page):
    page.goto(f"{server}/compare")
    page.get_by_role("heading", name="Compare runs").wait_for(timeout=90_000)
    wait_for_app_idle(page)
    assert page.get_by_text("Traceback").count() == 0

    choose_runs(page, ["tiny fastcnn", "tiny fastcnn 3 epochs"])
    # The overlay chart's traces, once it has redrawn with both runs (its title tells it from the others).
    # Wait for the chart of exactly these runs: a chart still drawn for the default choice must not count.
    traces = page.wait_for_function(
        """names => {
            const charts = [...document.querySelectorAll('.js-plotly-plot')]
                .filter(el => el.layout && String(el.layout.title.text).includes('Test accuracy'));
            const last = charts[charts.length - 1];
            const shown = last ? last.data.map(t => t.name).sort() : [];
            return JSON.stringify(shown) === JSON.stringify(names) && last.data.map(t => [t.name, t.line.color]);
        }""",
        arg=sorted(["tiny fastcnn", "tiny fastcnn 3 epochs"]),
        timeout=30_000,
    ).json_value()
    assert sorted(name for name, _ in traces) == ["tiny fastcnn", "tiny fastcnn 3 epochs"]
    assert len({color for _, color in traces}) == 2  # one color per run
    assert page.locator(".legendtext").filter(has_text="tiny fastcnn 3 epochs").count() >= 1
    page.get_by_text("Each cell of the matrix").wait_for(timeout=30_000)  # exactly two: the digit-by-digit part
    assert page.get_by_text("Traceback").count() == 0
    assert page.get_by_role("combobox", name="Dataset").count() == 1  # the shared sidebar drew: app.py ran
    screenshot(page, "compare-page")
    page.get_by_text("Each cell of the matrix").scroll_into_view_if_needed()
    screenshot(page, "compare-two-runs")
