"""The page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's Python API).

Picks two history items, types an intention, presses Recommend, and checks the result rows and
the plots, and that the click was drawn within twice the page's goal (scripts/bench_page.py
measures it properly: results/page-speed.md); the screenshot goes to artifacts/app.png (and,
with IDREAM_SCREENSHOT=docs/app.png and IDREAM_TEST_CHECKPOINT=checkpoints/ml-100k, the README's
picture of the real page).

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
CLICK_GOAL_S = 1.5  # issue #25: click to last figure drawn on ml-100k; the test fails beyond twice it


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


# Record when Plotly has drawn into the map and the sweep after the click (the next animation frame
# after Plotly.react, which the page uses for both), as scripts/bench_page.py does.
WATCH_DRAWS = """() => {
  if (!window.Plotly) return false;
  window.__drawn = {};
  const react = window.Plotly.react;
  window.Plotly.react = function (gd, ...rest) {
    const done = Promise.resolve(react.call(this, gd, ...rest));
    done.then(() => requestAnimationFrame(() => {
      const box = gd.closest('[id$="-plot"]');
      if (box) window.__drawn[box.id] = performance.now();
    }));
    return done;
  };
  document.querySelector('#recommend-btn').addEventListener(
    'click', () => { window.__clicked = performance.now(); }, true);
  return true;
}"""


def drawn(page) -> float:
    """Milliseconds from the last click on Recommend until both the map and the sweep were drawn."""
    page.wait_for_function("(() => { const d = window.__drawn, c = window.__clicked;"
                           " return d['space-plot'] > c && d['sweep-plot'] > c; })()", timeout=60_000)
    return page.evaluate("Math.max(window.__drawn['space-plot'], window.__drawn['sweep-plot']) - window.__clicked")


def plot_traces(page, elem_id: str) -> list:
    return page.evaluate(
        f"""(() => {{ const d = document.querySelector('#{elem_id} .js-plotly-plot');
            return d && d.data ? d.data.map(t => [t.type || 'scatter', t.name || '']) : []; }})()""")


def test_recommend_from_the_page(request):
    sync_api = require_browser()  # before the app is built: a missing browser is told at once
    from demo.service import get_service

    checkpoint = request.getfixturevalue("checkpoint")
    url = serve(checkpoint)[1]
    with open_page(sync_api, url) as page:
        check_recommend_from_the_page(page, get_service(checkpoint).search_titles)


# the titles the search offers, in order
OFFERED = """(want) => JSON.stringify(Array.from(document.querySelectorAll('#title-matches input[type=radio]'))
  .map(o => o.value)) === JSON.stringify(want)"""


def check_recommend_from_the_page(page, search_titles):
    box = page.locator("#title-search input")
    box.wait_for(timeout=30_000)
    page.wait_for_function("(() => { const d = document.querySelector('#space-plot .js-plotly-plot');"
                           " return d && d.data && d.data.length; })()", timeout=30_000)
    catalog_traces = page.evaluate("document.querySelector('#space-plot .js-plotly-plot').data"
                                   ".filter(t => (t.meta || {}).role === 'catalog').length")
    assert catalog_traces > 0
    for n, title in enumerate(PICKS, 1):  # typed as a person types; the order picked is the history order
        typed = title.split(" (")[0].lower()
        box.click()
        box.fill("")
        box.press_sequentially(typed, delay=20)
        # the titles found for the whole text are offered (the server answered as keys came)
        page.wait_for_function(OFFERED, arg=search_titles(typed), timeout=30_000)
        offered = page.locator("#title-matches input[type=radio]").evaluate_all("rs => rs.map(r => r.value)")
        assert title in offered[:3], offered
        page.get_by_role("radio", name=title, exact=True).click()
        page.wait_for_function(f"document.querySelectorAll('#history .token').length === {n}", timeout=15_000)
    page.locator("#history-table [role=grid][aria-rowcount='3']").wait_for(timeout=15_000)
    assert page.locator("#history .token").all_inner_texts() == PICKS
    assert page.locator("#history-table [role=gridcell]").all_inner_texts()[1::4] == [p.split(" (")[0] for p in PICKS]
    page.locator("#intention textarea").fill("a dark, tense crime thriller")
    steps = page.locator("#steps input[type=number]")
    steps.fill(str(STEPS))
    steps.press("Tab")  # commit the number so the denoising path has several points
    page.wait_for_function(WATCH_DRAWS, timeout=30_000)
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
    drawn(page)
    # the click drew its marks over the catalog layer the page loaded, which stays as it was
    roles = page.evaluate("document.querySelector('#space-plot .js-plotly-plot').data.map(t => (t.meta || {}).role)")
    assert roles.count("catalog") == catalog_traces and roles.count("oracle") == 2
    names = {n for _, n in plot_traces(page, "space-plot")}
    assert {"history", "top-K", "intention", "oracle", "denoising path"} <= names
    path_points = page.evaluate("document.querySelector('#space-plot .js-plotly-plot')._fullData"
                                ".find(t => t.name === 'denoising path').x.length")
    assert path_points == STEPS
    assert f"{STEPS}-step DDIM" in page.locator("#status").inner_text()
    assert "Traceback" not in page.content()
    # a click as a person makes it after the first (which pays for first-time work): timed
    seed = page.locator("#seed input")
    seed.fill("1")
    seed.press("Tab")
    page.wait_for_timeout(300)
    page.locator("#recommend-btn").click()
    click_s = drawn(page) / 1000
    assert click_s <= 2 * CLICK_GOAL_S, f"the click took {click_s:.2f} s to its last figure"
    assert "seed 1" in page.locator("#status").inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)  # let plotly finish drawing before the picture
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
    if os.environ.get("IDREAM_SCREENSHOT"):  # the README's picture: IDREAM_TEST_CHECKPOINT=checkpoints/ml-100k
        page.set_viewport_size({"width": 1400, "height": 1250})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=os.environ["IDREAM_SCREENSHOT"], full_page=False)
