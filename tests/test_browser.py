"""The page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's Python API).

Picks two history items, types an intention, presses Recommend, and checks the result rows and
the plots; the screenshot goes to artifacts/app.png (and, with IDREAM_SCREENSHOT=docs/app.png and
IDREAM_TEST_CHECKPOINT=checkpoints/ml-100k, the README's picture of the real page).

Without Chromium or Playwright the test skips on a developer's machine, but fails under CI=true:
CI must not pass without having driven the page.
"""

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from demo.testing import serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PICKS = ["Toy Story (1995)", "GoldenEye (1995)"]
K = 10
STEPS = 10


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_browser():
    """Playwright's sync API, once Chromium and Playwright are both there. Missing either: a
    failure under CI=true (with what to install), a skip elsewhere."""
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        missing.append("the playwright package (pip install -r requirements-dev.txt)")
    if not shutil.which(CHROMIUM):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        msg = f"the browser test cannot run: missing {' and '.join(missing)}"
        if in_ci():
            pytest.fail(f"{msg}; CI=true, so this is a failure, not a skip", pytrace=False)
        pytest.skip(msg)
    return sync_api


@contextlib.contextmanager
def open_page(sync_api, url: str):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load", timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.mark.parametrize("ci", ["true", "", None])
@pytest.mark.parametrize("lacks", ["chromium", "playwright"])
def test_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, lacks):
    import builtins
    import sys

    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    if lacks == "chromium":
        monkeypatch.setattr(shutil, "which", lambda name, *a, **kw: None)
    else:
        real_import = builtins.__import__

        def no_playwright(name, *args, **kwargs):
            if name == "playwright" or name.startswith("playwright."):
                raise ImportError(f"No module named {name!r}")
            return real_import(name, *args, **kwargs)

        monkeypatch.delitem(sys.modules, "playwright", raising=False)
        monkeypatch.delitem(sys.modules, "playwright.sync_api", raising=False)
        monkeypatch.setattr(builtins, "__import__", no_playwright)
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(expected) as outcome:
        require_browser()
    assert "the browser test cannot run: missing" in str(outcome.value)
    assert (CHROMIUM if lacks == "chromium" else "playwright") in str(outcome.value)


def plot_traces(page, elem_id: str) -> list:
    return page.evaluate(
        f"""(() => {{ const d = document.querySelector('#{elem_id} .js-plotly-plot');
            return d && d.data ? d.data.map(t => [t.type || 'scatter', t.name || '']) : []; }})()""")


def test_recommend_from_the_page(request):
    sync_api = require_browser()  # before the app is built: a missing browser is told at once
    url = serve(request.getfixturevalue("checkpoint"))[1]
    with open_page(sync_api, url) as page:
        check_recommend_from_the_page(page)


def check_recommend_from_the_page(page):
    box = page.locator("#history input")
    box.wait_for(timeout=30_000)
    for title in PICKS:  # the order picked is the history order
        box.click()
        box.fill(title.split(" (")[0])
        page.get_by_role("option", name=title, exact=True).click()
    page.locator("#history-table [role=grid][aria-rowcount='3']").wait_for(timeout=15_000)
    page.locator("#intention textarea").fill("a dark, tense crime thriller")
    steps = page.locator("#steps input[type=number]")
    steps.fill(str(STEPS))
    steps.press("Tab")  # commit the number so the denoising path has several points
    page.locator("#recommend-btn").click()

    grid = page.locator("#results [role=grid]")
    page.wait_for_function(
        f"(() => {{ const g = document.querySelector('#results [role=grid]');"
        f" return g && Number(g.getAttribute('aria-rowcount')) - 1 >= {K}; }})()", timeout=60_000)
    assert int(grid.get_attribute("aria-rowcount")) - 1 >= K
    assert page.locator("#results [role=gridcell]").count() >= K * 6
    cells = page.locator("#results [role=gridcell]").all_inner_texts()
    assert not set(PICKS) & {f"{t.strip()} ({y.strip()})" for t, y in zip(cells[1::6], cells[2::6])}
    assert f"Top-{K}" in page.locator("#status").inner_text()

    page.wait_for_function("(() => { const d = document.querySelector('#sweep-plot .js-plotly-plot');"
                           " return d && d.data && d.data.some(t => t.type === 'heatmap'); })()",
                           timeout=60_000)
    names = {n for _, n in plot_traces(page, "space-plot")}
    assert {"history", "top-K", "intention", "oracle", "denoising path"} <= names
    path_points = page.evaluate("document.querySelector('#space-plot .js-plotly-plot')._fullData"
                                ".find(t => t.name === 'denoising path').x.length")
    assert path_points == STEPS
    assert f"{STEPS}-step DDIM" in page.locator("#status").inner_text()
    assert "Traceback" not in page.content()

    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)  # let plotly finish drawing before the picture
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
    if os.environ.get("IDREAM_SCREENSHOT"):  # the README's picture: IDREAM_TEST_CHECKPOINT=checkpoints/ml-100k
        page.set_viewport_size({"width": 1400, "height": 1250})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=os.environ["IDREAM_SCREENSHOT"], full_page=False)
