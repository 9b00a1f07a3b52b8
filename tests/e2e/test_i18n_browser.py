"""Browser: a zh-CN browser gets every page in Chinese, en-US gets English, ?lang= overrides and switches."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import screenshot, wait_for_app_idle

pytestmark = pytest.mark.e2e

# path -> the page's Chinese heading (its st.title), and the menu in Chinese.
CHINESE_HEADINGS = {
    "": "MNIST 数据集",
    "architecture": "网络结构",
    "tutorials": "教程",
    "train": "训练网络",
    "draw": "画一个数字",
    "compare": "对比训练记录",
    "sweep": "超参数搜索",
    "speedrun": "速通",
}
CHINESE_MENU = ["数据集", "网络结构", "教程", "训练", "手写识别", "对比", "超参数搜索", "速通"]
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def zh_page(browser):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1800})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def en_page(browser):
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1800})
    opened = context.new_page()
    yield opened
    context.close()


def heading(page, text: str):
    return page.get_by_role("heading", name=text).first


def test_a_chinese_browser_gets_every_page_in_chinese(server, zh_page):
    for path, title in CHINESE_HEADINGS.items():
        zh_page.goto(f"{server}/{path}")
        heading(zh_page, title).wait_for(timeout=90_000)
        zh_page.get_by_role("combobox", name="数据集").wait_for(timeout=90_000)  # the sidebar: app.py ran
        wait_for_app_idle(zh_page)
        # Wait for the menu itself (a rerun may be redrawing the sidebar), then check it.
        menu = zh_page.wait_for_function(
            r"""expected => {
                const texts = [...document.querySelectorAll('[data-testid=stSidebar] a')]
                    .map(a => a.innerText.trim().split(/\s+/).pop());
                return JSON.stringify(texts) === JSON.stringify(expected) && texts;
            }""", arg=CHINESE_MENU, timeout=60_000).json_value()
        assert menu == CHINESE_MENU
        assert zh_page.get_by_text("Traceback").count() == 0
        assert zh_page.locator("[data-testid=stException]").count() == 0
        zh_page.wait_for_function(  # the page's prose, not just its title, is Chinese
            "(document.querySelector('[data-testid=stMain]').innerText.match(/[\\u4e00-\\u9fff]/g) || []).length > 40",
            timeout=60_000)
        wait_for_app_idle(zh_page)
        if path in ("", "train", "draw"):
            screenshot(zh_page, f"zh-{path or 'dataset'}")


def test_an_english_browser_gets_english(server, en_page):
    en_page.goto(server)
    heading(en_page, "MNIST dataset").wait_for(timeout=90_000)
    en_page.get_by_role("combobox", name="Dataset").wait_for(timeout=90_000)
    wait_for_app_idle(en_page)
    assert en_page.get_by_role("link", name="Architecture").count() == 1
    assert not HAN.search(en_page.locator("[data-testid=stMain]").inner_text())


def test_lang_in_the_url_overrides_the_browser_and_the_switch_changes_it(server, en_page):
    en_page.goto(f"{server}/train?lang=zh-CN")
    heading(en_page, "训练网络").wait_for(timeout=90_000)
    wait_for_app_idle(en_page)
    en_page.locator("[data-testid=stSidebar] button", has_text="English").click()
    heading(en_page, "Train a network").wait_for(timeout=60_000)
    en_page.wait_for_url("**lang=en*", timeout=60_000)  # the address follows the rerun's query parameters
    en_page.locator("[data-testid=stSidebar] button", has_text="简体中文").click()
    heading(en_page, "训练网络").wait_for(timeout=60_000)
    en_page.wait_for_url("**lang=zh-CN*", timeout=60_000)
    en_page.get_by_role("link", name="数据集").first.click()  # the choice follows the menu's links
    heading(en_page, "MNIST 数据集").wait_for(timeout=60_000)


def test_an_unknown_lang_shows_english_without_an_error(server, zh_page):
    zh_page.goto(f"{server}/?lang=xx")
    heading(zh_page, "MNIST dataset").wait_for(timeout=90_000)
    wait_for_app_idle(zh_page)
    assert zh_page.locator("[data-testid=stException]").count() == 0
    assert zh_page.get_by_text("Traceback").count() == 0


def test_the_train_forms_choices_survive_a_language_switch(server, en_page):
    """The browser sends a radio's choice back as its label: after a switch the old label must not unselect it."""
    en_page.goto(f"{server}/train?lang=en")
    heading(en_page, "Train a network").wait_for(timeout=90_000)
    wait_for_app_idle(en_page)
    en_page.locator("label", has_text="is it this class? (one vs rest)").click()
    en_page.get_by_role("combobox", name="Target class").wait_for(timeout=60_000)
    wait_for_app_idle(en_page)
    en_page.locator("[data-testid=stSidebar] button", has_text="简体中文").click()
    heading(en_page, "训练网络").wait_for(timeout=60_000)
    wait_for_app_idle(en_page)
    assert en_page.get_by_role("radio", name="是不是这一类？（一对其余）").is_checked()
    assert not en_page.get_by_role("radio", name="是哪一类（全部 10 类）").is_checked()
    en_page.get_by_role("combobox", name="目标类别").wait_for(timeout=60_000)  # the binary form stayed
    en_page.locator("[data-testid=stSidebar] button", has_text="English").click()
    heading(en_page, "Train a network").wait_for(timeout=60_000)
    wait_for_app_idle(en_page)
    assert en_page.get_by_role("radio", name="is it this class? (one vs rest)").is_checked()
