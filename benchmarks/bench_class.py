"""A class at once: N simulated students follow the Home page's 45-minute plan on one fresh app server.

    python benchmarks/bench_class.py --students 1 10 30 [--client browser|protocol] [--think 0] [--arrival 5]
                                     [--browsers 3] [--server-cpus 0,1]

For each N, a fresh ``streamlit run app.py`` (the default models, an empty data folder) is started and
timed to its first page. Then N students arrive within ``--arrival`` seconds (a teacher pasted a link in
the class chat) and each one, looking at each page ``--think`` seconds on average (0: as fast as the app
lets them, a stress test):

1. opens the teacher's shared link (the Grad-CAM page of the bulldog-and-cat photo, 'bull mastiff');
2. changes the class to 'tiger cat';
3. opens the next pages of the plan: activations, CAM;
4. answers a quiz question;
5. clicks on the picture of "where would you look?";
6. votes on "weak or strong model?";
7. opens the class results.

Each page is opened by its address, so each of those steps is a new Streamlit session, which costs the
server a little more than a click on a link would. A student is one of two clients:

* ``browser`` (the default): a real browser session, a Playwright context in Debian's Chromium, many
  contexts in a few browser processes. It fetches the pictures, draws the charts and runs the click
  component: what is timed is what a student waits for. But a browser page costs its machine far more
  than the server's share, so on one small machine 30 of them measure the browsers, not the server.
* ``protocol``: a client of Streamlit's own websocket protocol (``streamlit_client.py``). It sends what a
  browser sends (a page's address, the widget states after a click) and downloads every picture the page
  shows, and nothing else: what is timed is the server's part of a student's wait, from the action to the
  script's end and the last picture received. The protocol is internal to Streamlit (widget ids are
  hashes of the page's code), so widgets are found as a browser finds them, by label or key.

Per step: the time from the action (an address opened, a click) to a settled page (the step's result is
on the page, nothing shows "running", a spinner or a stale element, every picture and chart is drawn),
and errors (an exception box, the app's "Something went wrong", a time-out). For the server: CPU
seconds (user + system, from /proc) per interaction, and peak memory (VmHWM). The students' clients run
on the same machine as the server unless ``--server-cpus`` pins the server apart, so the times are
pessimistic for a server of its own; the CPU seconds per interaction are the server's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import async_playwright
from streamlit_client import StreamlitSession

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
STEP_TIMEOUT_S = 180
QUIET_S = 0.5  # a page must stay settled this long; the step's time ends where the quiet began
#: A student who follows the plan acts about once every this many seconds in the busy parts of a class
#: (read the page, look at the maps, click): the pace behind the capacity estimate.
SECONDS_PER_INTERACTION = 15

SETTLED_JS = """() => {
    if (document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-stale="true"]'))
        return false;
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main || !main.querySelector('h1')) return false;
    return [...main.querySelectorAll('[data-testid="stImage"] img')].every(i => i.complete && i.naturalWidth > 0)
        && [...main.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('svg.main-svg'));
}"""
FAILED_JS = """() => document.querySelector('[data-testid="stException"]') !== null
    || (document.body !== null && document.body.innerText.includes('Something went wrong while drawing this page'))"""

TEACHER_LINK = "/grad_cam?class=243"


@dataclass
class Step:
    page: str
    seconds: float | None  # None: it failed
    error: str = ""


@dataclass
class Student:
    number: int
    think: float = 0.0  # seconds spent on a page before the next action, on average
    steps: list[Step] = field(default_factory=list)

    async def reads(self) -> None:
        """Look at the page before acting: ``think`` seconds, half to one and a half of it, drawn per step."""
        if self.think:
            await asyncio.sleep(self.think * random.Random(self.number * 1000 + len(self.steps)).uniform(0.5, 1.5))


async def settled(page, done_text: str | None, started: float) -> float:
    """Seconds from ``started`` until the page shows ``done_text`` (if any) and has stayed settled QUIET_S."""
    deadline = started + STEP_TIMEOUT_S
    quiet_since = None
    while time.monotonic() < deadline:
        if await page.evaluate(FAILED_JS):
            raise RuntimeError("an error box on the page")
        ready = await page.evaluate(SETTLED_JS)
        if ready and done_text is not None:
            ready = done_text in await page.locator('[data-testid="stMain"]').inner_text()
        if ready:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= QUIET_S:
                return quiet_since - started
        else:
            quiet_since = None
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not settled after {STEP_TIMEOUT_S} s")


async def timed(student: Student, name: str, page, action, done_text: str | None) -> bool:
    """Run one step and keep its time, or its error; returns whether it worked."""
    started = time.monotonic()
    try:
        await action()
        student.steps.append(Step(name, await settled(page, done_text, started)))
        return True
    except Exception as error:  # noqa: BLE001 - every failure is a finding of the benchmark
        student.steps.append(Step(name, None, f"{type(error).__name__}: {str(error)[:160]}"))
        return False


async def follow_the_plan(student: Student, page, url: str) -> None:
    main = page.locator('[data-testid="stMain"]')
    sidebar = page.locator('[data-testid="stSidebar"]')

    def goto(path: str):
        return lambda: page.goto(url + path, wait_until="commit")

    async def change_class():
        box = sidebar.get_by_role("combobox", name="Class to explain")
        await box.click()
        await page.keyboard.press("ControlOrMeta+A")
        await page.keyboard.type("tiger cat")
        await page.get_by_role("option").filter(has_text="tiger cat").first.click()

    async def answer_quiz():
        await main.locator('[data-testid="stRadio"] [role="radiogroup"] label').first.click()
        await main.get_by_role("button", name="Answer", exact=True).click()

    async def click_picture():
        frame = page.frame_locator('iframe[title*="streamlit_image_coordinates"]').first
        await frame.locator("img").click(position={"x": 60 + student.number % 100, "y": 90})

    async def vote():
        question = main.locator('[data-testid="stRadio"]').filter(has_text="Which model would you trust more?")
        await question.get_by_text(random.Random(student.number).choice(["Model A", "Model B"]), exact=True).click()
        await main.get_by_role("button", name="Answer", exact=True).click()

    plan = [
        ("open the shared link (3 · Grad-CAM)", goto(TEACHER_LINK), "bull mastiff"),
        ("change the class", change_class, "tiger cat"),
        ("open 1 · Activations", goto("/activations"), None),
        ("open 2 · CAM", goto("/cam"), None),
        ("open 15 · Quiz", goto("/quiz"), "Which class does it explain?"),
        ("answer the quiz", answer_quiz, "drawn by"),
        ("open 16 · Where would you look?", goto("/where?model=shapes_gap&seed=3"), None),
        ("click where you would look", click_picture, "You, on the shape?"),
        ("open 12 · Weak or strong?", goto("/weak_strong"), "Which model would you trust more?"),
        ("vote", vote, "The class so far"),
        ("open 17 · Class results", goto("/class_results"), "answers from"),
    ]
    for name, action, done_text in plan:
        if student.steps:
            await student.reads()
        if not await timed(student, name, page, action, done_text):
            return  # the next steps need this one's page


async def follow_the_plan_without_a_browser(student: Student, url: str) -> None:
    """The same plan through Streamlit's protocol (``--client protocol``); each page opened by its address is a
    new session, as in the browser."""
    session: StreamlitSession | None = None

    def goto(page: str, query: str = ""):
        async def action():
            nonlocal session
            if session is not None:
                await session.close()
            session = await StreamlitSession(url, STEP_TIMEOUT_S).connect()
            return await session.open(page, query)
        return action

    async def change_class():
        return await session.choose(session.last.widget("selectbox", label="Class to explain"), "tiger cat")

    async def answer(question: str, choice: str | None = None):
        radio = session.last.widget("radio", label=question)
        await session.choose(radio, choice or radio.options[0])
        return await session.click(session.last.widget("button", label="Answer"))

    async def click_picture():
        picture = session.last.widget("component_instance", key="")
        return await session.component(picture, {"x": 60 + student.number % 100, "y": 90, "width": 448, "height": 448,
                                                 "unix_time": int(time.time() * 1000)})

    plan = [
        ("open the shared link (3 · Grad-CAM)", goto("grad_cam", TEACHER_LINK.split("?")[1]), "bull mastiff"),
        ("change the class", change_class, "tiger cat"),
        ("open 1 · Activations", goto("activations"), None),
        ("open 2 · CAM", goto("cam"), None),
        ("open 15 · Quiz", goto("quiz"), "Which class does it explain?"),
        ("answer the quiz", lambda: answer("Which class does it explain?"), "drawn by"),
        ("open 16 · Where would you look?", goto("where", "model=shapes_gap&seed=3"), None),
        ("click where you would look", click_picture, "You, on the shape?"),
        ("open 12 · Weak or strong?", goto("weak_strong"), "Which model would you trust more?"),
        ("vote", lambda: answer("Which model would you trust more?",
                                random.Random(student.number).choice(["Model A", "Model B"])), "The class so far"),
        ("open 17 · Class results", goto("class_results"), "answers from"),
    ]
    try:
        for name, action, done_text in plan:
            if student.steps:
                await student.reads()
            started = time.monotonic()
            try:
                run = await action()
                if run.failed:
                    raise RuntimeError("an error box on the page")
                if done_text is not None and done_text not in run.text:
                    raise RuntimeError(f"{done_text!r} is not on the page")
                student.steps.append(Step(name, time.monotonic() - started))
            except Exception as error:  # noqa: BLE001 - every failure is a finding of the benchmark
                student.steps.append(Step(name, None, f"{type(error).__name__}: {str(error)[:160]}"))
                return
    finally:
        if session is not None:
            await session.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(data_dir: str, server_cpus: str | None) -> tuple[subprocess.Popen, str, float]:
    """A fresh app server; returns it, its URL and the seconds it took to answer its health check."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}", f"--server.address={HOST}",
               "--server.headless=true", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    if server_cpus:
        command = ["taskset", "-c", server_cpus, *command]
    env = {**os.environ, "GRADCAM_DATA_DIR": data_dir, "PYTHONUNBUFFERED": "1"}
    env.pop("GRADCAM_TALLY_URL", None)  # the default SQLite tally in the scratch folder
    log = open(Path(data_dir) / "server.log", "wb")  # noqa: SIM115 - closed with the process
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    while not healthy(url):
        if process.poll() is not None:
            raise RuntimeError((Path(data_dir) / "server.log").read_text()[-2000:])
        time.sleep(0.1)
    return process, url, time.monotonic() - started


async def first_page_seconds(browser, url: str) -> tuple[float, float]:
    """From the first visitor's request, on a server just started, to the Home page's title on their screen,
    and to the whole page settled (the sidebar's prediction and the models panel drawn)."""
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    requested = time.monotonic()
    await page.goto(url + "/", wait_until="commit")
    await page.locator('[data-testid="stMain"] h1').first.wait_for(state="visible", timeout=STEP_TIMEOUT_S * 1000)
    title = time.monotonic() - requested
    whole = await settled(page, "Now explaining with", requested)
    await context.close()
    return title, whole


async def computed_view_cost(browser, url: str, pid: int, views: int = 5) -> tuple[float, float]:
    """Server CPU seconds and the median seconds to a settled page for one more student opening the teacher's
    link once the class has computed it, one student at a time."""
    cpu, seconds = [], []
    for _ in range(views):
        context = await browser.new_context(viewport={"width": 1366, "height": 768})
        page = await context.new_page()
        before, started = cpu_seconds(pid), time.monotonic()
        await page.goto(url + TEACHER_LINK, wait_until="commit")
        seconds.append(await settled(page, "bull mastiff", started))
        await asyncio.sleep(1.0)  # the session's last messages and images, still on the server's account
        cpu.append(cpu_seconds(pid) - before)
        await context.close()
    return statistics.median(cpu), statistics.median(seconds)


async def run_class(n: int, browsers: int, arrival: float, server_cpus: str | None, client: str,
                    think: float) -> dict:
    data_dir = tempfile.mkdtemp(prefix="gradcam-bench-class-")
    process, url, healthy = start_server(data_dir, server_cpus)
    try:
        if client == "protocol":
            run = await _class_without_a_browser(n, arrival, think, url, process.pid)
        else:
            run = await _class_in_browsers(n, browsers, arrival, think, url, process.pid)
        return {"n": n, "healthy": healthy, "peak_mb": peak_memory_mb(process.pid), **run}
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _class_in_browsers(n: int, browsers: int, arrival: float, think: float, url: str, pid: int) -> dict:
    async with async_playwright() as playwright:
        pool = [await playwright.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS)
                for _ in range(max(1, min(browsers, n)))]
        first_page = await first_page_seconds(pool[0], url)
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        students = [Student(i, think) for i in range(n)]

        async def attend(student: Student) -> None:
            await asyncio.sleep(random.Random(student.number).uniform(0, arrival))
            context = await pool[student.number % len(pool)].new_context(viewport={"width": 1366, "height": 768})
            context.set_default_timeout(STEP_TIMEOUT_S * 1000)  # a starved browser is slow to click, not broken
            page = await context.new_page()
            try:
                await follow_the_plan(student, page, url)
            finally:
                await context.close()

        await asyncio.gather(*(attend(s) for s in students))
        cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
        view_cpu, view_seconds = await computed_view_cost(pool[0], url, pid)
        for browser in pool:
            await browser.close()
    return {"students": students, "first_page": first_page, "cpu": cpu, "wall": wall, "view_cpu": view_cpu,
            "view_seconds": view_seconds}


async def _class_without_a_browser(n: int, arrival: float, think: float, url: str, pid: int) -> dict:
    started = time.monotonic()
    async with StreamlitSession(url, STEP_TIMEOUT_S) as session:
        home = await session.open("")
    if "Now explaining with" not in home.text:
        raise RuntimeError("the Home page did not settle")
    first_page = (None, time.monotonic() - started)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    students = [Student(i, think) for i in range(n)]

    async def attend(student: Student) -> None:
        await asyncio.sleep(random.Random(student.number).uniform(0, arrival))
        await follow_the_plan_without_a_browser(student, url)

    await asyncio.gather(*(attend(s) for s in students))
    cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
    costs, seconds = [], []
    for _ in range(5):  # one more student opening the teacher's link, already computed, one at a time
        before, started = cpu_seconds(pid), time.monotonic()
        async with StreamlitSession(url, STEP_TIMEOUT_S) as session:
            await session.open("grad_cam", TEACHER_LINK.split("?")[1])
            seconds.append(time.monotonic() - started)
            await asyncio.sleep(1.0)  # the session's last messages, still on the server's account
        costs.append(cpu_seconds(pid) - before)
    return {"students": students, "first_page": first_page, "cpu": cpu, "wall": wall,
            "view_cpu": statistics.median(costs), "view_seconds": statistics.median(seconds)}


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(run: dict) -> None:
    steps = [step for student in run["students"] for step in student.steps]
    names = list(dict.fromkeys(step.page for step in steps))
    title, whole = run["first_page"]
    print(f"\n### {run['n']} student(s): the server healthy {run['healthy']:.1f} s after its start; its first page"
          + (f"'s title {title:.1f} s after the first request, the whole page settled at {whole:.1f} s"
             if title is not None else f" whole {whole:.1f} s after the first request")
          + f"; the plan took {run['wall']:.0f} s\n")
    print("| step | interactions | p50 s | p95 s | max s | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in [*names, "all"]:
        mine = [s for s in steps if name in ("all", s.page)]
        times = [s.seconds for s in mine if s.seconds is not None]
        cells = (f"{percentile(times, 50):.2f} | {percentile(times, 95):.2f} | {max(times):.2f}" if times
                 else "- | - | -")
        print(f"| {'**all**' if name == 'all' else name} | {len(mine)} | {cells} | {len(mine) - len(times)} |")
    per_interaction = run["cpu"] / max(1, len(steps))
    print(f"\nServer CPU: {run['cpu']:.1f} s for {len(steps)} interactions = {per_interaction:.2f} s each; "
          f"busy {run['cpu'] / run['wall'] / (os.cpu_count() or 1):.0%} of the machine's cores during the plan; "
          f"peak server memory {run['peak_mb']:.0f} MB.")
    print(f"One more student opening the teacher's link, already computed: {run['view_seconds']:.2f} s to a "
          f"settled page, {run['view_cpu']:.2f} s of server CPU (median of 5, one at a time).")
    print(f"At one interaction per student every {SECONDS_PER_INTERACTION} s, a two-core server holds about "
          f"{2 * SECONDS_PER_INTERACTION / per_interaction:.0f} students (CPU alone).")
    for student in run["students"]:
        for step in student.steps:
            if step.error:
                print(f"- student {student.number}, {step.page}: {step.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--browsers", type=int, default=3, help="Chromium processes the students share")
    parser.add_argument("--arrival", type=float, default=5.0, help="seconds over which the students arrive")
    parser.add_argument("--server-cpus", help="pin the server to these CPUs (taskset -c), e.g. 0")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds a student looks at a page before the next action, on average (default 0: as fast "
                             "as the app lets them, a stress test; a class in the plan's pace is nearer 10-20)")
    parser.add_argument("--client", choices=["browser", "protocol"], default="browser",
                        help="a student is a Chromium page (what a student waits for, the browsers' work included) or "
                             "a client of Streamlit's websocket protocol (the server's part of the wait alone)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; client: {args.client}"
          + (f"; browsers: {args.browsers}" if args.client == "browser" else "")
          + f"; arrival within {args.arrival:.0f} s; {args.think:.0f} s on each page; server CPUs: "
          f"{args.server_cpus or 'shared with the clients'}")
    for n in args.students:
        report(asyncio.run(run_class(n, args.browsers, args.arrival, args.server_cpus, args.client, args.think)))


if __name__ == "__main__":
    main()
