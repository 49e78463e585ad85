"""One queue for the slow work of every student on a server: a fixed number of workers, one job per
distinct request, a place in the line, and cancelling that costs nobody else their result.

A class that opens the same link asks for the same Score-CAM thirty times in one second; a class that
explores asks for thirty different ones. Run as they come, thirty computations would share two cores
and every student would wait for all of them. Here a request is a *job* keyed by what it computes:
a second student asking for a job already waiting or running joins it (one computation, two waiters);
jobs run in arrival order on :attr:`SlowWork.workers` threads; a finished result is kept (the last
:data:`KEPT_RESULTS`), so the next student gets it at once. A waiter that leaves (cancels, moves a
slider, closes the tab) gives up its place; a job nobody waits for any more is cancelled: its progress
callback raises :class:`Cancelled` at the next step, and the package's explainers clean up after that
as after any error. A student (an ``owner``) waits for one job at a time: asking for another leaves the
first.

No Streamlit here: ``ui.resources.queued`` draws the place, the progress and the Cancel button.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KEPT_RESULTS", "Cancelled", "Job", "Report", "SlowWork", "Ticket"]

#: Finished results kept for the next student who asks (the slow results of a class's few views).
KEPT_RESULTS = 64

#: ``report(fraction, text)``: a job's progress; raises :class:`Cancelled` once nobody waits for it.
Report = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside a job whose every waiter has left."""


@dataclass(eq=False)
class Job:
    key: str
    work: Callable[[Report], Any]
    owners: set[str] = field(default_factory=set)
    state: str = "waiting"  # waiting, running, cancelling, done, failed, cancelled
    fraction: float = 0.0
    text: str = ""
    result: Any = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Ticket:
    """One owner's wait for one job."""

    job: Job
    owner: str


class SlowWork:
    """The server's queue of slow jobs, run by ``workers`` threads (started on first use)."""

    def __init__(self, workers: int = 1, kept: int = KEPT_RESULTS):
        if workers < 1:
            raise ValueError(f"at least one worker is needed, not {workers}")
        self.workers = workers
        self._kept = kept
        self._lock = threading.Condition()
        self._line: deque[Job] = deque()
        self._live: dict[str, Job] = {}  # key -> the job waiting or running for it
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._tickets: dict[str, Ticket] = {}  # owner -> the job it waits for
        self._threads: list[threading.Thread] = []

    def submit(self, key: str, work: Callable[[Report], Any], owner: str) -> Ticket:
        """Wait for ``key``: a kept result, the job already waiting or running for it, or a new job at the
        end of the line. The owner leaves whatever else it waited for."""
        with self._lock:
            previous = self._tickets.get(owner)
            if previous is not None and previous.job.key != key:
                self._leave(previous)
            if key in self._results:
                self._results.move_to_end(key)
                job = Job(key, work, state="done", result=self._results[key])
                job.finished.set()
                return Ticket(job, owner)
            job = self._live.get(key)
            if job is not None and job.state == "cancelling":
                job.state = "running"  # wanted again before its next step: it goes on
            if job is None:
                job = Job(key, work)
                self._live[key] = job
                self._line.append(job)
                self._start_workers()
                self._lock.notify()
            job.owners.add(owner)
            ticket = Ticket(job, owner)
            self._tickets[owner] = ticket
            return ticket

    def place(self, ticket: Ticket) -> int:
        """0 while the job runs or is finished, else how many jobs run or wait before it, plus one."""
        with self._lock:
            if ticket.job.state != "waiting":
                return 0
            running = sum(job.state in ("running", "cancelling") for job in self._live.values())
            return running + list(self._line).index(ticket.job) + 1

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Whether the job finished within ``timeout`` seconds."""
        return ticket.job.finished.wait(timeout)

    def result(self, ticket: Ticket) -> Any:
        """The finished job's result; its error raised again; :class:`Cancelled` if it was cancelled."""
        job = ticket.job
        if not job.finished.is_set():
            raise RuntimeError(f"the job {job.key!r} has not finished")
        if job.state == "failed":
            raise job.error
        if job.state == "cancelled":
            raise Cancelled(job.key)
        return job.result

    def leave(self, ticket: Ticket) -> None:
        """The owner stops waiting; a job left without waiters is cancelled."""
        with self._lock:
            self._leave(ticket)

    def _leave(self, ticket: Ticket) -> None:
        job = ticket.job
        job.owners.discard(ticket.owner)
        if self._tickets.get(ticket.owner) is ticket:
            del self._tickets[ticket.owner]
        if job.owners or job.finished.is_set():
            return
        if job.state == "waiting":
            self._line.remove(job)
            self._finish(job, "cancelled")
        else:
            job.state = "cancelling"  # the worker's next report raises Cancelled

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._serve, name=f"slow-work-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._line:
                    self._lock.wait()
                job = self._line.popleft()
                job.state = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        def report(fraction: float, text: str) -> None:
            with self._lock:
                if job.state == "cancelling":
                    raise Cancelled(job.key)
                job.fraction, job.text = fraction, text

        try:
            result = job.work(report)
        except Cancelled:
            with self._lock:
                if job.owners:  # someone asked for it again as it stopped: it starts again, first in line
                    job.state = "waiting"
                    self._line.appendleft(job)
                    self._lock.notify()
                else:
                    self._finish(job, "cancelled")
        except Exception as error:  # noqa: BLE001 - handed to every waiter by result()
            with self._lock:
                job.error = error
                self._finish(job, "failed")
        else:
            with self._lock:
                job.result = result
                self._results[job.key] = result
                while len(self._results) > self._kept:
                    self._results.popitem(last=False)
                self._finish(job, "done")

    def _finish(self, job: Job, state: str) -> None:
        job.state = state
        if self._live.get(job.key) is job:
            del self._live[job.key]
        job.finished.set()
