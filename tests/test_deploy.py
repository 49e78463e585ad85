"""deploy/nginx.conf in front of two app servers sharing one PostgreSQL tally: sticky sessions in a real browser.

Streamlit keeps each student's session in one server process, so the load balancer must send every
request of a browser (page, static files, the /_stcore/stream websocket, /media/ pictures) to the same
replica. This runs Debian's nginx with deploy/nginx.conf (its upstream, port and log path swapped for
local ones) in front of two ``streamlit run app.py`` (tests/test_replicas.py's ``app_servers``) and a
test PostgreSQL, then checks in headless Chromium, from nginx's access log (which names the upstream of
every request and the student's sticky key): the config passes ``nginx -t``; every browser gets the
``gradcam_replica`` cookie; twelve students land on both replicas; each student's requests all reach one
replica; a page with pictures draws them all through nginx; and each replica's Class results page shows
the answers in the shared PostgreSQL. The images and compose file themselves need a Docker engine and
are not built here. Skipped, with the reason, without nginx, Chromium, playwright or PostgreSQL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow

NGINX = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
if NGINX is None:
    pytest.skip("deploy test: no `nginx` executable (apt-get install nginx)", allow_module_level=True)

from postgres_server import HOST, free_port  # noqa: E402
from test_browser import BROWSER_ARGS, CHROMIUM, MAIN, PAGE_LOAD_S, VIEWPORT, stop, sync_api, wait_idle  # noqa: E402
from test_replicas import app_servers  # noqa: E402

from ui.tally import Tally  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
STUDENTS = 12  # both replicas get one: all twelve random keys on one replica has odds 2 ** -11
COOKIE = "gradcam_replica"
# One line of deploy/nginx.conf's `gradcam` log_format.
LOG_LINE = re.compile(r'"(?:\S+) (?P<path>\S+)[^"]*" (?P<status>\d{3}) \d+ upstream=(?P<upstream>\S+) '
                      r'replica=(?P<key>\S+)')
# Every picture in the main area has loaded and decoded (a broken /media/ link has naturalWidth 0).
PICTURES_LOADED_JS = """() => {
    const images = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')];
    return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
}"""


def nginx_config(folder: Path, port: int, upstreams: list[str]) -> Path:
    """deploy/nginx.conf for local servers, inside a main config whose files all stay in ``folder``."""
    text = (DEPLOY / "nginx.conf").read_text()
    servers = "".join(f"server {upstream};\n    " for upstream in upstreams)
    for pattern, new in ((r"server app1:8501;\s*server app2:8501;\s*", servers),
                         (r"listen 80;", f"listen {HOST}:{port};"),
                         (r"/var/log/nginx/access\.log", str(folder / "access.log"))):
        text, found = re.subn(pattern, new, text)
        assert found == 1, f"deploy/nginx.conf no longer has {pattern!r}: update this test with it"
    (folder / "app.conf").write_text(text)
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))
    # As root, nginx's workers would run as nobody, who cannot enter pytest's 0700 temp folder (where a
    # large proxied picture is buffered).
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = folder / "nginx.conf"
    main.write_text(f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\nevents {{ worker_connections 512; }}\n"
                    f"http {{\n{temp}\n    include {folder / 'app.conf'};\n}}\n")
    return main


@contextmanager
def nginx_in_front_of(upstreams: list[str], folder: Path) -> Iterator[str]:
    """nginx in the foreground with deploy/nginx.conf, proxying to ``upstreams``; yields its URL."""
    folder.mkdir()
    port = free_port()
    config = nginx_config(folder, port, upstreams)
    command = [NGINX, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(config)]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0 and "test is successful" in check.stderr, check.stderr
    url = f"http://{HOST}:{port}"
    with open(folder / "nginx.out", "wb") as out:
        process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{(folder / 'error.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        stop(process)  # SIGTERM: nginx's fast shutdown, workers included


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_pictures(page, media: list[tuple[str, int]]) -> None:
    """Until the main area's pictures have loaded; fails at once when a /media/ request did not succeed
    (the picture lives on another replica than the one that answered)."""
    deadline = time.monotonic() + PAGE_LOAD_S
    while not page.evaluate(PICTURES_LOADED_JS):
        assert all(status == 200 for _, status in media), f"pictures lost on the way: {media}"
        assert time.monotonic() < deadline, f"no pictures after {PAGE_LOAD_S} s"
        page.wait_for_timeout(250)


def requests_by_student(log: Path, keys: list[str], path: str) -> dict[str, list[tuple[str, str, str]]]:
    """The access log's (path, status, upstream) of every request, by sticky key (one per browser), once
    each of ``keys`` has a request for ``path`` there (nginx logs a request when it ends)."""
    deadline = time.monotonic() + 10
    while True:
        by_key = defaultdict(list)
        for line in log.read_text(errors="replace").splitlines():
            match = LOG_LINE.search(line)
            assert match, f"an access log line not in the gradcam format: {line}"
            assert "," not in match["upstream"], (f"nginx tried another replica: {line}\n"
                                                  f"{(log.parent / 'error.log').read_text(errors='replace')[-2000:]}")
            by_key[match["key"]].append((match["path"], match["status"], match["upstream"]))
        if all(any(p == path for p, _, _ in by_key[key]) for key in keys):
            return by_key
        assert time.monotonic() < deadline, f"nginx logged no {path} for some of {keys}: {dict(by_key)}"
        time.sleep(0.2)


def assert_one_replica(requests: list[tuple[str, str, str]], *paths: str) -> str:
    """Every request went to one upstream, and requests starting with each of ``paths`` were among them."""
    upstreams = {upstream for _, _, upstream in requests}
    assert len(upstreams) == 1, f"one browser's requests reached {upstreams}: {requests}"
    for path in paths:
        assert any(p.startswith(path) for p, _, _ in requests), f"no request for {path}* in {requests}"
    return upstreams.pop()


def test_nginx_keeps_each_student_on_one_replica(postgres, tmp_path):
    with closing(Tally(postgres.url)) as tally:
        tally.reset()
        for session, verdict in (("s1", "stronger"), ("s2", "stronger"), ("s3", "weaker")):
            tally.record("weak_vs_strong", verdict, session=session, correct=verdict == "stronger",
                         detail="shapes_gap vs shapes_fc|grad_cam|0")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADCAM_TALLY_URL": postgres.url, "GRADCAM_DATA_DIR": str(tmp_path)}
    nginx_folder = tmp_path / "nginx"
    with (app_servers(2, env, tmp_path) as urls,
          nginx_in_front_of([url.removeprefix("http://") for url in urls], nginx_folder) as proxy,
          sync_api.sync_playwright() as playwright):
        upstreams = {url.removeprefix("http://") for url in urls}
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BROWSER_ARGS, "--no-first-run"])
        try:
            # Twelve students open the app (its HTML only: cheap); nginx hands each a random key.
            contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(STUDENTS)]
            keys = []
            for context in contexts:
                assert context.request.get(f"{proxy}/").ok
                cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
                assert re.fullmatch("[0-9a-f]{32}", cookie["value"]) and cookie["httpOnly"], cookie
                assert cookie["sameSite"] == "Lax", cookie
                keys.append(cookie["value"])
            assert len(set(keys)) == STUDENTS
            by_key = requests_by_student(nginx_folder / "access.log", keys, "/")
            replica_of = {key: assert_one_replica(by_key[key]) for key in keys}
            assert set(replica_of.values()) == upstreams, f"one replica got every student: {replica_of}"

            # One student on each replica: a page with pictures, then the class results.
            first = {}
            for context, key in zip(contexts, keys):
                first.setdefault(replica_of[key], (context, key))
            media, texts = [], []

            def on_response(response) -> None:
                if urlsplit(response.url).path.startswith("/media/"):
                    media.append((response.url, response.status))

            for n, (context, key) in enumerate(first.values()):
                page = context.new_page()
                page.set_default_timeout(PAGE_LOAD_S * 1000)
                page.on("response", on_response)
                if n == 0:
                    page.goto(f"{proxy}/grad_cam?model=shapes_gap", wait_until="commit")
                    page.locator(f"{MAIN} h1").first.wait_for(state="visible")
                    wait_pictures(page, media)
                    wait_idle(page)
                    assert page.evaluate(PICTURES_LOADED_JS), "a picture did not load after the page settled"
                page.goto(f"{proxy}/class_results", wait_until="commit")
                page.locator(MAIN).get_by_text("answers from").wait_for(state="visible")
                texts.append(page.locator(MAIN).inner_text())
                page.close()  # ends its websocket, which nginx logs only then
        finally:
            browser.close()

        assert media and all(status == 200 for _, status in media), media
        for text in texts:
            assert "3 answers from 3 browser sessions" in text, text
            assert f"from the tally in {postgres.where}." in text, text
        # Each student's page loads, websocket and pictures included, stayed on the replica of their first request.
        by_key = requests_by_student(nginx_folder / "access.log", [k for _, k in first.values()], "/_stcore/stream")
        for n, (upstream, (_, key)) in enumerate(first.items()):
            paths = ["/_stcore/stream", "/static/", "/_stcore/host-config"] + (["/media/"] if n == 0 else [])
            assert assert_one_replica(by_key[key], *paths) == upstream
            assert ("/_stcore/stream", "101") in {(p, s) for p, s, _ in by_key[key]}, by_key[key]
