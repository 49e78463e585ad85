"""Two app servers, one class tally: what a student answers on either shows on both servers' class results.

Two ``streamlit run app.py`` processes (as behind a load balancer) share one test PostgreSQL server
through ``GRADCAM_TALLY_URL``. In headless Chromium a student votes on page 12 (Weak or strong model?)
of each server, one for Model A and one for Model B (so one vote goes to the stronger model and one to
the weaker, whichever order the page hides), and the class results page of each server must show both
votes, and name the database without its login. Needs PostgreSQL, Chromium and playwright (skipped,
with the reason, without them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from postgres_server import HOST, assert_discreet, free_port
from test_browser import (BROWSER_ARGS, CHROMIUM, MAIN, PAGE_LOAD_S, ROOT, SERVER_START_S, VIEWPORT, _healthy, stop,
                          sync_api, wait_idle)
from ui.tally import Tally

QUESTION = "Which model would you trust more?"


@contextmanager
def app_servers(count: int, env: dict[str, str], logs: Path) -> Iterator[list[str]]:
    """``count`` app servers started together, each on its own port; yields their URLs once all are healthy."""
    ports = [free_port() for _ in range(count)]
    processes = []
    try:
        for port in ports:
            command = [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}",
                       f"--server.address={HOST}", "--server.headless=true", "--browser.gatherUsageStats=false",
                       "--server.fileWatcherType=none"]
            with open(logs / f"app-{port}.log", "wb") as log:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        urls = [f"http://{HOST}:{port}" for port in ports]
        deadline = time.monotonic() + SERVER_START_S
        for url, process in zip(urls, processes):
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the app server at {url} did not start:\n{_log_tail(logs)}")
                time.sleep(0.3)
        yield urls
    finally:
        for process in processes:
            stop(process)



def _log_tail(logs: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in sorted(logs.glob("*.log")))


def answer_when_ready(page, choice: str) -> str:
    """Once page 12 has drawn its two maps, vote ``choice``; returns the class's count the page then shows."""
    main = page.locator(MAIN)
    question = main.locator('[data-testid="stRadio"]').filter(has_text=QUESTION)
    question.wait_for(state="visible")
    wait_idle(page)
    question.get_by_text(choice, exact=True).click()
    main.get_by_role("button", name="Answer", exact=True).click()
    return main.locator("p").filter(has_text="The class so far").inner_text()


def results_when_ready(page) -> str:
    """The text of the class results page, as a projector shows it, once it has read the tally."""
    page.locator(MAIN).get_by_text("answers from").wait_for(state="visible")
    return page.locator(MAIN).inner_text()


@pytest.mark.slow
def test_two_app_servers_share_one_class_tally(postgres, tmp_path):
    with closing(Tally(postgres.url)) as tally:
        tally.reset()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADCAM_TALLY_URL": postgres.url, "GRADCAM_DATA_DIR": str(tmp_path)}
    with app_servers(2, env, tmp_path) as urls, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BROWSER_ARGS, "--no-first-run"])
        try:
            # One student per server; both servers draw page 12 at once, then the votes come one after the other.
            students = [browser.new_context(viewport=VIEWPORT).new_page() for _ in urls]
            for page, url in zip(students, urls):
                page.set_default_timeout(PAGE_LOAD_S * 1000)
                page.goto(f"{url}/weak_strong", wait_until="commit")
            assert answer_when_ready(students[0], "Model A") == "The class so far (1 answers):"
            assert answer_when_ready(students[1], "Model B") == "The class so far (2 answers):"
            for page, url in zip(students, urls):
                page.goto(f"{url}/class_results", wait_until="commit")
            pages = [results_when_ready(page) for page in students]
        finally:
            browser.close()
    for text in pages:
        assert "2 answers from 2 browser sessions; refreshed every 5 s." in text
        assert f"from the tally in {postgres.where}." in text
        assert_discreet(text)
    with closing(Tally(postgres.url)) as tally:
        assert tally.counts("weak_vs_strong") == {"stronger": 1, "weaker": 1}
        assert len({answer.session for answer in tally.answers()}) == 2
    assert_discreet(_log_tail(tmp_path))
