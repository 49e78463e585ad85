"""ui.slow_work: one computation per distinct request, in arrival order on a fixed number of workers,
and a cancel that costs only the one who cancels.

Jobs here are gated by events, so every test decides when a job may go on and nothing depends on timing.
"""

from __future__ import annotations

import threading

import pytest

from ui.slow_work import Cancelled, SlowWork

WAIT = 10  # seconds: only a broken queue ever waits this long


class Gate:
    """A job that reports once, then waits until ``open()``; counts its runs; returns ``value``."""

    def __init__(self, value: object = "result", error: Exception | None = None):
        self.value, self.error = value, error
        self.started = threading.Event()
        self.opened = threading.Event()
        self.runs = 0

    def open(self) -> None:
        self.opened.set()

    def __call__(self, report) -> object:
        self.runs += 1
        report(0.5, "half way")
        self.started.set()
        assert self.opened.wait(WAIT)
        report(1.0, "done")
        if self.error is not None:
            raise self.error
        return self.value


def finished(queue: SlowWork, ticket) -> object:
    assert queue.wait(ticket, WAIT)
    return queue.result(ticket)


def test_a_class_asking_for_the_same_thing_at_once_gets_one_computation():
    queue, gate = SlowWork(workers=2), Gate()
    tickets = [queue.submit("score_cam|photo|243", gate, owner=f"student{i}") for i in range(30)]
    assert len({id(t.job) for t in tickets}) == 1
    gate.open()
    assert [finished(queue, t) for t in tickets] == ["result"] * 30
    assert gate.runs == 1


def test_a_finished_result_is_kept_for_the_next_student():
    queue, gate = SlowWork(), Gate("map")
    gate.open()
    assert finished(queue, queue.submit("k", gate, owner="a")) == "map"
    later = queue.submit("k", Gate("never"), owner="b")
    assert queue.wait(later, 0) and queue.result(later) == "map" and gate.runs == 1


def test_only_the_last_results_are_kept():
    queue = SlowWork(kept=2)
    for key in "abc":
        gate = Gate(key)
        gate.open()
        finished(queue, queue.submit(key, gate, owner="s"))
    again = Gate("a, computed again")
    again.open()
    assert finished(queue, queue.submit("a", again, owner="s")) == "a, computed again"
    assert queue.result(queue.submit("c", Gate(), owner="s")) == "c"


def test_jobs_run_in_arrival_order_and_each_knows_its_place():
    queue = SlowWork(workers=1)
    first, second, third = Gate(1), Gate(2), Gate(3)
    t1 = queue.submit("one", first, owner="a")
    assert first.started.wait(WAIT)
    t2, t3 = queue.submit("two", second, owner="b"), queue.submit("three", third, owner="c")
    assert [queue.place(t) for t in (t1, t2, t3)] == [0, 2, 3]
    assert (t1.job.fraction, t1.job.text) == (0.5, "half way")
    first.open()
    assert finished(queue, t1) == 1 and second.started.wait(WAIT)
    assert [queue.place(t) for t in (t2, t3)] == [0, 2]
    second.open()
    third.open()
    assert finished(queue, t2) == 2 and finished(queue, t3) == 3


def test_never_more_jobs_at_once_than_workers():
    queue, running, most = SlowWork(workers=2), [0], [0]
    lock, release = threading.Lock(), threading.Event()

    def work(report):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(0.05)
        with lock:
            running[0] -= 1
        return "ok"

    tickets = [queue.submit(f"job{i}", work, owner=f"s{i}") for i in range(8)]
    assert [finished(queue, t) for t in tickets] == ["ok"] * 8
    assert most[0] == 2


def test_leaving_a_waiting_job_takes_it_out_of_the_line():
    queue = SlowWork(workers=1)
    running, waiting, behind = Gate(), Gate(), Gate()
    t1 = queue.submit("running", running, owner="a")
    assert running.started.wait(WAIT)
    t2, t3 = queue.submit("waiting", waiting, owner="b"), queue.submit("behind", behind, owner="c")
    queue.leave(t2)
    assert queue.place(t3) == 2
    with pytest.raises(Cancelled):
        queue.result(t2)
    running.open()
    behind.open()
    assert finished(queue, t1) == "result" and finished(queue, t3) == "result"
    assert waiting.runs == 0


def test_a_running_job_nobody_waits_for_stops_at_its_next_step_and_is_not_kept():
    queue, gate = SlowWork(), Gate()
    ticket = queue.submit("k", gate, owner="a")
    assert gate.started.wait(WAIT)
    queue.leave(ticket)
    gate.open()
    assert queue.wait(ticket, WAIT)
    with pytest.raises(Cancelled):
        queue.result(ticket)
    again = Gate("fresh")
    again.open()
    assert finished(queue, queue.submit("k", again, owner="a")) == "fresh"


def test_one_student_leaving_does_not_cancel_the_others_wait():
    queue, gate = SlowWork(), Gate()
    mine, theirs = queue.submit("k", gate, owner="a"), queue.submit("k", gate, owner="b")
    assert gate.started.wait(WAIT)
    queue.leave(mine)
    gate.open()
    assert finished(queue, theirs) == "result" and gate.runs == 1


def test_a_student_waits_for_one_job_at_a_time():
    queue, first, second = SlowWork(workers=1), Gate(), Gate("second")
    t1 = queue.submit("first", first, owner="a")
    assert first.started.wait(WAIT)
    t2 = queue.submit("second", second, owner="a")  # moved a slider: the first request is given up
    first.open()
    second.open()
    assert queue.wait(t1, WAIT)
    with pytest.raises(Cancelled):
        queue.result(t1)
    assert finished(queue, t2) == "second"


def test_a_job_asked_for_again_while_it_stops_goes_on():
    queue, gate = SlowWork(), Gate()
    ticket = queue.submit("k", gate, owner="a")
    assert gate.started.wait(WAIT)
    queue.leave(ticket)
    back = queue.submit("k", gate, owner="a")  # the same request again before its next step
    gate.open()
    assert finished(queue, back) == "result" and gate.runs == 1


def test_an_error_reaches_every_waiter_and_is_not_kept():
    queue, gate = SlowWork(), Gate(error=ValueError("this layer has no gradient"))
    tickets = [queue.submit("k", gate, owner=o) for o in "ab"]
    gate.open()
    for ticket in tickets:
        assert queue.wait(ticket, WAIT)
        with pytest.raises(ValueError, match="no gradient"):
            queue.result(ticket)
    retry = Gate("ok")
    retry.open()
    assert finished(queue, queue.submit("k", retry, owner="a")) == "ok"


def test_at_least_one_worker():
    with pytest.raises(ValueError, match="at least one worker"):
        SlowWork(workers=0)
