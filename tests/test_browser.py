"""Browser test: every page of the dashboard loads in a real Chromium, draws its figures, and fails nowhere.

A module-scoped fixture starts ``streamlit run app.py`` on a free loopback port; each page is opened
in a fresh browser context, waited on until the app is idle, checked for exceptions, error boxes and
tracebacks, and saved as a full-page screenshot under ``artifacts/screenshots/`` (git-ignored).
One more test changes the class on the Grad-CAM page and checks that the figures are redrawn; another
starts Score-CAM in the method gallery, cancels it mid-way, and runs it again on one stage.
Two screen sizes get tests of their own: on a 1366x768 laptop the sidebar's controls sit above the fold
under the top navigation; on a 390x844 phone with a touch screen every page fits the width, the
navigation opens and leads to a page, and a tap answers "Where would you look?". Their screenshots
(the viewport only: what the person sees) are ``laptop_*.png`` and ``phone_*.png``.

Needs Debian's ``chromium`` and the ``playwright`` package (``playwright install`` is not needed: the
system browser is launched). Skipped when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("browser test: no `chromium` executable on PATH", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser test: the `playwright` Python package is not installed"
)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
SERVER_LOG = ROOT / "artifacts" / "streamlit_browser_test.log"
HOST = "127.0.0.1"

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
LAPTOP = {"width": 1366, "height": 768}  # a common laptop, and a projector's 1366x768
PHONE = {"width": 390, "height": 844}
# Streamlit tells a phone by its user agent (it then folds the sidebar away after a page link is tapped).
PHONE_USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/126.0.0.0 Mobile Safari/537.36")
OVERFLOW_PX = 4  # sub-pixel rounding, not a sideways scroll anyone could use

SERVER_START_S = 120  # until /_stcore/health answers "ok"
PAGE_LOAD_S = 120  # the first page also loads the model, on a slow CPU
IDLE_QUIET_S = 1.5  # how long the app must stay idle before we call it idle

#: page name (screenshot file) -> (URL path, whether its main area must show a figure).
#: The URL paths are the ones st.navigation derives from the file names in app.py.
#: Home shows no figure; the shapes lab shows its figures only after the "Train" button is pressed.
PAGES = {
    "home": ("/", False),
    "activations": ("/activations", True),
    "cam": ("/cam", True),
    "grad_cam": ("/grad_cam", True),
    "guided": ("/guided", True),
    "compare": ("/compare", True),
    "shapes_lab": ("/shapes_lab", False),
    "gallery": ("/gallery", True),
    "trust": ("/trust", True),
    "bias": ("/bias", True),
    "adversarial": ("/adversarial", True),
    "failures": ("/failures", True),
    "weak_strong": ("/weak_strong", True),
    "units": ("/units", True),
    "depth": ("/depth", True),
    "quiz": ("/quiz", True),
    "where": ("/where", False),
    "class_results": ("/class_results", False),
    "spot_difference": ("/spot_difference", False),
    "cnn_vs_vit": ("/cnn_vs_vit", True),
}

#: The top navigation's sections and, in their drop-downs, its page titles, as ui/layout.py's
#: SECTIONS lists them.
NAV_SECTIONS = [
    "Start",
    "Looking inside",
    "CAM and Grad-CAM",
    "Compare methods",
    "Which map to trust?",
    "Diagnose",
    "Inside the network",
    "Classroom",
    "Beyond CNNs",
]
NAV_TITLES = [
    "Home",
    "1 · Activations",
    "2 · CAM on a GAP network",
    "3 · Grad-CAM, layer by layer",
    "4 · Pixel-space methods",
    "5 · CAM vs Grad-CAM",
    "6 · Shapes lab: train it yourself",
    "7 · Method gallery",
    "8 · Which map to trust?",
    "9 · Bias detective",
    "10 · Adversarial examples",
    "11 · Failure modes",
    "12 · Weak or strong model?",
    "13 · What a unit wants to see",
    "14 · Grad-CAM at every depth",
    "15 · Which class is it? (quiz)",
    "16 · Where would you look?",
    "17 · Class results",
    "18 · Spot the difference",
    "19 · CNN or transformer?",
]

MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'
TOP_NAV = '[data-testid="stTopNav"]'
FIGURES = ", ".join(
    f"{MAIN} {selector}"
    for selector in (
        '[data-testid="stImage"] img',
        ".js-plotly-plot",
        '[data-testid="stGraphVizChart"]',
        '[data-testid="stVegaLiteChart"]',
        '[data-testid="stPyplot"] img',
    )
)
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
#: Anything that says "still working": the status widget ("Running..."), a spinner, stale elements.
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-stale="true"]'

# Every image has decoded, every Plotly chart has drawn its SVG, every Graphviz chart its SVG.
FIGURES_DRAWN_JS = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main) return false;
    const images = [...main.querySelectorAll('[data-testid="stImage"] img')];
    const plots = [...main.querySelectorAll('.js-plotly-plot')];
    const graphs = [...main.querySelectorAll('[data-testid="stGraphVizChart"]')];
    return images.every(img => img.complete && img.naturalWidth > 0)
        && plots.every(p => p.querySelector('svg.main-svg') !== null)
        && graphs.every(g => g.querySelector('svg') !== null);
}"""

# The main area and the sidebar scroll inside their own containers, so a "full page" screenshot of the
# document would only show the viewport: this returns the height that shows both whole.
CONTENT_HEIGHT_JS = """() => {
    const heights = [document.documentElement.scrollHeight];
    for (const id of ['stMain', 'stSidebarContent']) {
        const el = document.querySelector(`[data-testid="${id}"]`);
        if (el) heights.push(el.scrollHeight);
    }
    return Math.max(...heights);
}"""

# How far the page, and the main area (which scrolls inside itself), are wider than the screen.
OVERFLOW_JS = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    return {page: document.documentElement.scrollWidth - window.innerWidth,
            main: main ? main.scrollWidth - main.clientWidth : 0};
}"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200 and response.read().decode().strip() == "ok"
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(chars: int = 3000) -> str:
    try:
        return SERVER_LOG.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


@pytest.fixture(scope="module")
def server():
    """``streamlit run app.py`` on a free loopback port; yields the base URL; always stopped."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://{HOST}:{port}"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        f"--server.port={port}",
        f"--server.address={HOST}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(SERVER_LOG, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while not _healthy(url):
                if process.poll() is not None:
                    pytest.fail(f"streamlit exited with {process.returncode}:\n{_log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"streamlit not healthy after {SERVER_START_S} s:\n{_log_tail()}")
                time.sleep(0.5)
            yield url
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """Ask ``process`` to end (SIGTERM), and kill it if it has not within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


_SESSIONS = {"opened": 0}  # browser sessions opened on this module's server


def _browser_page(browser, viewport: dict, **phone):
    """A fresh context (a new Streamlit session) and its page; ``phone``: a phone's context settings."""
    _SESSIONS["opened"] += 1
    context = browser.new_context(viewport=viewport, **phone)
    context.set_default_timeout(PAGE_LOAD_S * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser):
    yield from _browser_page(browser, VIEWPORT)


@pytest.fixture
def laptop(browser):
    yield from _browser_page(browser, LAPTOP)


@pytest.fixture
def phone(browser):
    yield from _browser_page(browser, PHONE, has_touch=True, is_mobile=True, user_agent=PHONE_USER_AGENT)


def wait_idle(page, timeout_s: float = PAGE_LOAD_S) -> None:
    """Until nothing has looked busy (status widget, spinner, stale element) for IDLE_QUIET_S."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while True:
        now = time.monotonic()
        if page.locator(BUSY).count() == 0:
            quiet_since = quiet_since or now
            if now - quiet_since >= IDLE_QUIET_S:
                return
        else:
            quiet_since = None
        if now > deadline:
            raise AssertionError(f"the app was still busy after {timeout_s} s ({page.url})")
        page.wait_for_timeout(250)


def wait_figures(page, deadline: float) -> None:
    """Until the main area shows at least one figure and every figure there has drawn."""
    page.locator(FIGURES).first.wait_for(state="visible", timeout=max(1.0, deadline - time.monotonic()) * 1000)
    page.wait_for_function(FIGURES_DRAWN_JS, timeout=max(1.0, deadline - time.monotonic()) * 1000)


def open_page(page, url: str, needs_figure: bool) -> None:
    deadline = time.monotonic() + PAGE_LOAD_S
    page.goto(url, wait_until="domcontentloaded")
    # The page's own title (or the error that replaced the page), then the sidebar's class box (in the
    # document: on a phone the sidebar starts folded away).
    page.locator(f"{MAIN} h1, {ERRORS}").first.wait_for(state="visible")
    page.locator(f'{SIDEBAR} [data-testid="stSelectbox"]').first.wait_for(state="attached")
    wait_idle(page, timeout_s=max(1.0, deadline - time.monotonic()))
    if needs_figure:
        wait_figures(page, deadline)
        wait_idle(page, timeout_s=max(1.0, deadline - time.monotonic()))


def assert_no_errors(page) -> None:
    """No exception box, no error box (app.py turns page failures into one), no traceback anywhere."""
    problems = []
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        problems.append(f"stException: {exceptions.first.inner_text()[:1500]}")
    errors = page.locator('[data-testid="stAlertContentError"]')
    for i in range(errors.count()):
        problems.append(f"error box: {errors.nth(i).inner_text()[:500]}")
    if "Traceback" in page.locator("body").inner_text():
        problems.append("the text 'Traceback' is on the page")
    assert not problems, f"{page.url}:\n" + "\n".join(problems) + f"\n--- server log tail ---\n{_log_tail()}"


def screenshot(page, name: str) -> Path:
    """The whole main area and sidebar: grow the viewport to the content, then shoot the full page."""
    viewport = page.viewport_size
    height = min(int(page.evaluate(CONTENT_HEIGHT_JS)), 16000)
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.wait_for_timeout(700)  # let charts settle after the resize
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)
    return path


def nav_sections(page) -> list[str]:
    """The top navigation's sections."""
    return [text.strip() for text in page.locator(f'{TOP_NAV} [data-testid="stTopNavSection"]').all_inner_texts()]


def nav_titles(page) -> list[str]:
    """The page titles in the top navigation's drop-downs, opened one after the other."""
    titles = []
    for section in page.locator(f'{TOP_NAV} [data-testid="stTopNavSection"]').all():
        section.click()
        links = page.locator('[data-testid="stTopNavPopover"] [data-testid="stTopNavDropdownLink"]')
        links.first.wait_for(state="visible", timeout=10_000)
        titles += [link_title(text) for text in links.all_inner_texts()]
        page.keyboard.press("Escape")
        links.first.wait_for(state="hidden", timeout=10_000)
    return titles


def link_title(text: str) -> str:
    """A navigation link's text without its icon's name."""
    return text.strip().splitlines()[-1].strip()


def first_image_src(page) -> str | None:
    image = page.locator(f'{MAIN} [data-testid="stImage"] img').first
    return image.get_attribute("src") if image.count() else None


def test_first_visit_by_deep_link(server, page):
    """The first visitor after a server start who opens a page's own URL sees the same app.

    Streamlit treats an app with a ``pages/`` folder as an old-style (v1) multipage app until a run of
    the main script has called ``st.navigation``, and then runs the page alone; the page's sidebar
    must set up the navigation itself. This test must be the first session on the server.
    """
    if _SESSIONS["opened"] != 1:
        pytest.skip("needs to be the first browser session on a fresh server: run the whole module")
    open_page(page, server + PAGES["grad_cam"][0] + "?cmap=viridis", needs_figure=True)
    try:
        assert page.locator(f"{MAIN} h1").first.inner_text().startswith("Grad-CAM")
        assert nav_sections(page) == NAV_SECTIONS, "no top navigation on a first visit by deep link"
        assert nav_titles(page) == NAV_TITLES
        # the link's own setting came through the rerun that sets up the navigation
        assert "/grad_cam?" in page.url and "cmap=viridis" in page.url, page.url
        assert page.locator(SIDEBAR).get_by_role("combobox", name="Colormap").input_value() == "viridis"
        assert_no_errors(page)
    finally:
        screenshot(page, "first_visit_grad_cam")


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders(server, page, name):
    path, needs_figure = PAGES[name]
    open_page(page, server + path, needs_figure)
    try:
        assert_no_errors(page)
        assert nav_sections(page) == NAV_SECTIONS
        if needs_figure:
            assert page.locator(FIGURES).count() >= 1, f"{name}: no figure in the main area"
    finally:
        screenshot(page, name)


def test_grad_cam_follows_the_class(server, page):
    """Picking another class in the sidebar redraws the Grad-CAM maps, without an error."""
    open_page(page, server + PAGES["grad_cam"][0], needs_figure=True)
    before = first_image_src(page)
    assert before, "the Grad-CAM page shows no image"
    assert "tiger cat" not in page.locator(f"{MAIN} h3").first.inner_text()

    # A Streamlit selectbox is a combobox: click it, type to filter, Enter picks the first match.
    class_box = page.locator(SIDEBAR).get_by_role("combobox", name="Class to explain")
    assert "tiger cat" not in class_box.input_value()
    class_box.click()
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.type("tiger cat")
    page.get_by_role("option").filter(has_text="tiger cat").first.wait_for(state="visible", timeout=10_000)
    page.keyboard.press("Enter")

    deadline = time.monotonic() + PAGE_LOAD_S
    page.wait_for_function(
        """before => {
            const img = document.querySelector('[data-testid="stMain"] [data-testid="stImage"] img');
            return img !== null && img.getAttribute('src') !== before;
        }""",
        arg=before,
        timeout=PAGE_LOAD_S * 1000,
    )
    wait_idle(page, timeout_s=max(1.0, deadline - time.monotonic()))
    wait_figures(page, deadline)
    try:
        assert "tiger cat" in class_box.input_value(), "the selectbox does not show the new class"
        assert "tiger cat" in page.locator(f"{MAIN} h3").first.inner_text(), "the heading does not name the new class"
        assert first_image_src(page) != before
        assert_no_errors(page)
    finally:
        screenshot(page, "grad_cam_tiger_cat")


def test_gallery_runs_a_slow_method_with_progress_and_cancel(server, page):
    """Score-CAM shows a progress bar; Cancel stops it and says so; on one stage it runs to the end."""
    open_page(page, server + PAGES["gallery"][0], needs_figure=True)
    main = page.locator(MAIN)
    main.get_by_role("button", name="Score-CAM", exact=True).click()
    main.locator('[data-testid="stProgress"]').first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)
    screenshot(page, "gallery_score_cam_progress")
    main.get_by_role("button", name="Cancel", exact=True).click()
    main.get_by_text("Score-CAM: cancelled.").wait_for(state="visible", timeout=60_000)
    wait_idle(page)
    try:
        assert main.locator('[data-testid="stProgress"]').count() == 0
        assert_no_errors(page)
    finally:
        screenshot(page, "gallery_cancelled")

    for stage in ("layer1", "layer2", "layer4"):  # layer3 alone: 112 channels, 112 forward passes
        main.get_by_role("button", name=stage, exact=True).first.click()
        wait_idle(page)
    deadline = time.monotonic() + PAGE_LOAD_S
    main.get_by_text("Score-CAM", exact=True).first.wait_for(state="visible")
    wait_idle(page, timeout_s=PAGE_LOAD_S)
    wait_figures(page, deadline)
    try:
        assert "(Wang et al., CVPR workshops 2020)" in main.inner_text()
        assert "cancelled" not in main.inner_text()
        assert_no_errors(page)
    finally:
        screenshot(page, "gallery_score_cam_layer3")


def test_a_shared_link_opens_the_same_view(server, page):
    """A teacher's copied address: model, picture, class, colormap and a page control all come back."""
    link = "/adversarial?model=shapes_gap&seed=3&class=4&cmap=viridis&alpha=0.35&attack_epsilon=9&attack_steps=4"
    open_page(page, server + link, needs_figure=True)
    try:
        assert_no_errors(page)
        sidebar = page.locator(SIDEBAR).inner_text()
        assert "Shapes image #3: a cross." in sidebar and "0.35" in sidebar  # the shapes model, its picture
        main = page.locator(MAIN).inner_text()
        assert "9" in page.locator(f'{MAIN} [data-testid="stSlider"]').first.inner_text()
        assert "at most 9/255" in main
        # the address bar keeps the view, so the link can be passed on again
        assert "seed=3" in page.url and "attack_epsilon=9" in page.url and "class=4" in page.url
    finally:
        screenshot(page, "shared_link_adversarial")


def test_a_link_with_values_that_no_longer_exist_opens_the_defaults_with_one_notice(server, page):
    open_page(page, server + "/grad_cam?model=vgg99&class=5000&sample=Nope", needs_figure=True)
    try:
        assert_no_errors(page)
        main = page.locator(MAIN).inner_text()
        assert "which this version of the app does not have" in main
        assert "Look for 'bull mastiff'" in page.locator(SIDEBAR).inner_text()  # the default model and sample
    finally:
        screenshot(page, "bad_link_grad_cam")


def _click_picture(page, x: int, y: int) -> None:
    """Click the streamlit-image-coordinates component's picture at (x, y) of its displayed pixels."""
    frame = page.frame_locator('iframe[title*="streamlit_image_coordinates"]').first
    frame.locator("img").click(position={"x": x, "y": y})
    wait_idle(page)


def test_where_would_you_look_scores_a_click(server, page):
    open_page(page, server + "/where?model=shapes_gap&seed=0", needs_figure=False)
    try:
        _click_picture(page, 120, 120)
        assert_no_errors(page)
        main = page.locator(MAIN).inner_text()
        assert "The model's map at your point" in main and "You, on the shape?" in main
        assert "The model, on the shape?" in main
    finally:
        screenshot(page, "where_clicked")


def test_clicking_a_cell_shows_its_receptive_field(server, page):
    open_page(page, server + "/depth?model=shapes_gap&depth=layer2", needs_figure=True)
    try:
        assert "(the centre; click to choose)" in page.locator(MAIN).inner_text()
        _click_picture(page, 20, 20)
        assert_no_errors(page)
        main = page.locator(MAIN).inner_text()
        assert "(the centre; click to choose)" not in main and "Cell (0, 0)" in main
    finally:
        screenshot(page, "depth_clicked")


def test_presenter_mode_from_a_link(server, page):
    open_page(page, server + "/grad_cam?present=1", needs_figure=True)
    try:
        assert_no_errors(page)
        main = page.locator(MAIN).inner_text()
        assert "The lesson, in words" in main and "Show the code" not in main
        sizes = page.locator(f'{MAIN} .stMarkdown p').evaluate_all(
            "elements => elements.map(e => parseFloat(getComputedStyle(e).fontSize))")
        assert sizes and max(sizes) >= 19  # the lesson text at 1.25rem, above Streamlit's 16px
    finally:
        screenshot(page, "presenter_grad_cam")


def test_three_views_of_a_unit_from_a_link(server, page):
    link = "/units?excite=a+channel+of+a+layer&unit_layer=layer4&unit_channel=652"
    open_page(page, server + link, needs_figure=True)
    try:
        assert_no_errors(page)
        main = page.locator(MAIN).inner_text()
        assert "channel 652 of layer4" in main and "on your picture" in main
        assert page.locator(f'{MAIN} [data-testid="stImage"]').count() >= 5  # synthesized, yours, three strongest
    finally:
        screenshot(page, "units_channel_652")


#: Pages whose sidebar must fit a laptop screen: the first one, and the ones a class spends most time on.
LAPTOP_PAGES = ["home", "grad_cam", "gallery", "quiz", "class_results"]


def test_sidebar_controls_fit_a_laptop_screen(server, laptop):
    """At 1366x768 the top navigation is in view, and so are the sidebar's model and class boxes."""
    problems = []
    for name in LAPTOP_PAGES:
        open_page(laptop, server + PAGES[name][0], needs_figure=False)
        laptop.screenshot(path=str(SCREENSHOTS / f"laptop_{name}.png"))
        assert_no_errors(laptop)
        if not laptop.locator(TOP_NAV).is_visible():
            problems.append(f"{name}: the top navigation is not visible")
        sidebar = laptop.locator(SIDEBAR)
        for label in ("Model", "Class to explain"):
            box = sidebar.get_by_role("combobox", name=label).bounding_box()
            if box is None or box["y"] + box["height"] > LAPTOP["height"]:
                problems.append(f"{name}: the sidebar's {label!r} box is below the fold ({box})")
    assert not problems, "\n".join(problems)


def test_every_page_fits_a_phone(server, phone):
    """At 390x844 on a touch screen every page of the app loads and nothing scrolls sideways."""
    from ui.layout import PAGES as APP_PAGES

    problems = []
    for path, title, _ in APP_PAGES:
        name = Path(path).stem
        url_path, needs_figure = PAGES[name]
        open_page(phone, server + url_path, needs_figure)
        phone.screenshot(path=str(SCREENSHOTS / f"phone_{name}.png"))
        assert_no_errors(phone)
        overflow = phone.evaluate(OVERFLOW_JS)
        if max(overflow.values()) > OVERFLOW_PX:
            problems.append(f"{title}: wider than the phone by {overflow} px")
    assert not problems, "\n".join(problems)


def test_a_phone_navigates_and_answers_with_a_tap(server, phone):
    """On a phone the top navigation folds into the sidebar: open it, go to page 16, tap the picture."""
    open_page(phone, server + "/?model=shapes_gap&seed=0", needs_figure=False)
    assert not phone.locator(TOP_NAV).is_visible()
    phone.locator('[data-testid="stExpandSidebarButton"]').tap()
    link = phone.locator('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]').filter(
        has_text="16 · Where would you look?")
    # Scrolled to and waited on first: a tap while the sidebar still slides in lands on its other items.
    link.scroll_into_view_if_needed()
    sync_api.expect(link).to_be_in_viewport(ratio=1)
    link.tap()
    phone.locator(f"{MAIN} h1").filter(has_text="Where would you look?").wait_for(state="visible")
    wait_idle(phone)
    assert phone.url.split("?")[0].endswith("/where"), phone.url
    phone.locator(f'{SIDEBAR}[data-collapsed="true"]').wait_for(state="attached", timeout=10_000)
    picture = phone.frame_locator('iframe[title*="streamlit_image_coordinates"]').first.locator("img")
    picture.wait_for(state="visible")
    box = picture.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"the picture is not on the screen: {box}"
    try:
        picture.tap(position={"x": box["width"] / 2, "y": box["height"] / 2})
        wait_idle(phone)
        assert_no_errors(phone)
        main = phone.locator(MAIN).inner_text()
        assert "The model's map at your point" in main and "You, on the shape?" in main
    finally:
        screenshot(phone, "phone_where_tapped")


def test_the_class_benchmarks_protocol_client_follows_the_whole_plan(server):
    """benchmarks/bench_class.py --client protocol: one student through the plan on this server, no error."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_class
    finally:
        sys.path.pop(0)
    student = bench_class.Student(7)
    # in a thread of its own: this module's Playwright keeps an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, bench_class.follow_the_plan_without_a_browser(student, server)).result()
    assert [step.error for step in student.steps if step.error] == []
    assert len(student.steps) == 11 and all(step.seconds >= 0 for step in student.steps)


def test_your_network_takes_a_state_dict_and_class_names_by_upload(server, page, tmp_path):
    """The sidebar's "Your network": torchvision's ResNet18 with a 3-class state dict and its names."""
    import torch
    import torchvision

    torch.manual_seed(0)
    weights, names = tmp_path / "my_resnet18.pth", tmp_path / "names.txt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    names.write_text("apple\nbanana\ncherry\n")
    open_page(page, server + PAGES["grad_cam"][0], needs_figure=True)
    sidebar = page.locator(SIDEBAR)
    sidebar.get_by_text("Your network", exact=True).click()
    sidebar.get_by_label("Filter").fill("resnet18")
    sidebar.get_by_label("Filter").press("Enter")
    wait_idle(page)
    uploaders = sidebar.locator('[data-testid="stFileUploader"]')
    for index, path in enumerate((weights, names)):
        uploaders.nth(index).locator('input[type="file"]').set_input_files(str(path))
        uploaders.nth(index).get_by_text(path.name).wait_for(state="visible")  # sent before the next action
        wait_idle(page)
        assert "error" not in uploaders.nth(index).inner_text().lower(), uploaders.nth(index).inner_text()
    sidebar.get_by_role("button", name="Load", exact=True).click()
    wait_idle(page)
    wait_figures(page, time.monotonic() + PAGE_LOAD_S)
    assert_no_errors(page)
    text = sidebar.inner_text()
    assert "weights from the uploaded checkpoint" in text and "3 classes" in text  # not random weights
    assert any(name in text for name in ("apple", "banana", "cherry"))  # the class box speaks its names
    screenshot(page, "your_network_resnet18_upload")
