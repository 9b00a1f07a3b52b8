"""Browser: a fresh server whose first request is a deep link still runs app.py's router and sidebar."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import streamlit_server, wait_for_app_idle

pytestmark = pytest.mark.e2e


def test_deep_link_as_first_request_gets_the_router_and_sidebar(page, tmp_path):
    with streamlit_server(tmp_path, "streamlit-deep-link") as url:
        page.goto(f"{url}/architecture")
        page.get_by_role("heading", name="Architecture", exact=False).first.wait_for(timeout=90_000)
        wait_for_app_idle(page)
        sidebar = page.locator("[data-testid=stSidebar]")
        assert sidebar.get_by_text("Dataset", exact=True).count() >= 2  # the nav link and the picker's label
        links = sidebar.locator("[data-testid=stSidebarNavLink]").all_inner_texts()
        assert any("Train" in link for link in links) and any("Architecture" in link for link in links)
        assert not any(name in " ".join(links) for name in ("common", "charts"))  # helpers are not pages
