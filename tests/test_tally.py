"""ui.tally: answers kept in SQLite or PostgreSQL, safe under a class answering at once, and honest when it cannot work.

The behaviour tests run on both databases (the ``database`` fixture): a new SQLite file, and a real
PostgreSQL server started for the session by tests/postgres_server.py (those are marked slow). The
server's login has a password, and no message, ``repr`` or log line may show it, nor the user name.
"""

import csv
import sqlite3
import logging
import os
import threading
import time
from contextlib import closing

import psycopg
import pytest

from postgres_server import PASSWORD, USER, assert_discreet, free_port
from ui.tally import Tally, TallyUnavailable, data_dir, tally_url

UNAVAILABLE = "Answers are not being recorded; everything else works."
SCHEMES = "Give it as sqlite:/// and an absolute path, or postgresql://user:password@host:port/database."


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database(request, tmp_path) -> str:
    """Where a test's tally lives: a new SQLite file, or the test PostgreSQL server's table, emptied."""
    if request.param == "sqlite":
        return str(tmp_path / "tally.sqlite")
    url = request.getfixturevalue("postgres").url
    with closing(Tally(url)) as tally:
        tally.reset()
    return url


@pytest.fixture
def tally(database):
    with closing(Tally(database)) as opened:
        yield opened


# --- the same behaviour on both databases ------------------------------------------------------


def test_answers_are_recorded_and_counted(tally):
    tally.record("weak_vs_strong", "stronger", session="a", correct=True, detail="shapes|grad_cam")
    tally.record("weak_vs_strong", "unsure", session="b")
    tally.record("quiz", "cat", session="a", correct=False)
    answers = tally.answers("weak_vs_strong")
    assert [(a.choice, a.correct, a.session, a.detail) for a in answers] == [
        ("stronger", True, "a", "shapes|grad_cam"), ("unsure", None, "b", "")]
    assert tally.counts("weak_vs_strong") == {"stronger": 1, "unsure": 1}
    assert len(tally.answers()) == 3


def test_the_time_of_an_answer_keeps_its_precision(tally):
    before = time.time()
    tally.record("q", "x", session="s")
    after = time.time()
    assert before <= tally.answers()[0].at <= after  # a 4-byte float would be off by minutes


def test_a_second_opening_sees_the_same_answers(tally, database):
    tally.record("q", "x", session="s")
    with closing(Tally(database)) as again:
        assert again.counts("q") == {"x": 1}


def test_no_answer_is_lost_when_a_class_answers_at_once(tally):
    students, answers_each = 50, 8
    errors = []

    def student(number: int) -> None:
        try:
            for answer in range(answers_each):
                tally.record("q", f"choice{answer % 3}", session=f"s{number}")
        except Exception as error:  # noqa: BLE001 - any failure is the test's finding
            errors.append(error)

    threads = [threading.Thread(target=student, args=(n,)) for n in range(students)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert tally.counts("q") == {"choice0": 150, "choice1": 150, "choice2": 100}
    assert len({a.session for a in tally.answers("q")}) == students


def test_reset_and_csv_export(tally):
    tally.record("quiz", "cat", session="a", correct=True, detail="grad_cam")
    tally.record("quiz", "dog, big", session="b", correct=False, detail="guided_backprop")
    tally.record("where", "hit", session="a")
    rows = list(csv.reader(tally.csv().splitlines()))
    assert rows[0] == ["time", "session", "question", "choice", "correct", "detail"]
    assert [r[1:] for r in rows[1:]] == [["a", "quiz", "cat", "1", "grad_cam"],
                                         ["b", "quiz", "dog, big", "0", "guided_backprop"],
                                         ["a", "where", "hit", "", ""]]
    assert tally.reset("quiz") == 2 and len(tally.answers()) == 1
    assert tally.reset() == 1 and tally.answers() == []


# --- SQLite ------------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_gives_a_message(tmp_path):
    broken = tmp_path / "tally.sqlite"
    broken.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(TallyUnavailable) as raised:
        Tally(broken)
    assert str(raised.value) == (f"The class tally cannot use {broken} (file is not a database). {UNAVAILABLE} "
                                 "Set GRADCAM_DATA_DIR to a writable folder (or GRADCAM_TALLY_URL to another "
                                 "database), or move the broken file away.")
    assert broken.read_bytes().startswith(b"this is not a database")  # nothing overwritten


def test_every_method_says_so_when_the_file_stops_being_a_database(tmp_path):
    path = tmp_path / "tally.sqlite"
    tally = Tally(path)
    for leftover in tmp_path.glob("tally.sqlite*"):
        leftover.unlink()
    path.write_bytes(b"overwritten by something else " * 100)
    for method, arguments in [("record", ("q", "x", "s")), ("answers", ()), ("counts", ("q",)), ("reset", ()),
                              ("csv", ())]:
        with pytest.raises(TallyUnavailable, match=r"\(file is not a database\)\. Answers are not being recorded"):
            getattr(tally, method)(*arguments)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_folder_gives_a_message(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(TallyUnavailable, match="GRADCAM_DATA_DIR"):
            Tally(folder / "tally.sqlite")
    finally:
        folder.chmod(0o700)


def test_a_write_the_database_refuses_raises_and_is_not_counted(tmp_path):
    tally = Tally(tmp_path / "tally.sqlite")
    with closing(sqlite3.connect(tmp_path / "tally.sqlite")) as connection, connection:
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON answers BEGIN SELECT RAISE(ABORT, 'read-only'); END")
    with pytest.raises(TallyUnavailable, match=r"cannot use .*tally.sqlite \(read-only\)\. Answers are not being"):
        tally.record("q", "x", session="s")
    assert tally.answers() == []


# --- where the tally lives ---------------------------------------------------------------------


def test_a_path_a_path_string_and_a_sqlite_url_name_the_same_file(tmp_path):
    path = tmp_path / "class" / "tally.sqlite"
    for location in (path, str(path), f"sqlite://{path}"):
        tally = Tally(location)
        assert tally.where == str(path) and repr(tally) == f"Tally({path})"
        tally.record("q", "x", session="s")
    assert Tally(path).counts("q") == {"x": 3}


def test_the_default_is_tally_sqlite_in_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADCAM_TALLY_URL", raising=False)
    monkeypatch.setenv("GRADCAM_DATA_DIR", str(tmp_path / "new" / "folder"))
    assert data_dir() == tmp_path / "new" / "folder"
    assert tally_url() == f"sqlite://{tmp_path}/new/folder/tally.sqlite"
    assert Tally().where == f"{tmp_path}/new/folder/tally.sqlite"
    assert (tmp_path / "new" / "folder" / "tally.sqlite").is_file()


def test_gradcam_tally_url_names_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADCAM_TALLY_URL", f"sqlite://{tmp_path}/elsewhere.sqlite")
    monkeypatch.setenv("GRADCAM_DATA_DIR", str(tmp_path / "unused"))
    assert tally_url() == f"sqlite://{tmp_path}/elsewhere.sqlite"
    assert Tally().where == f"{tmp_path}/elsewhere.sqlite"
    assert not (tmp_path / "unused").exists()


def test_a_gradcam_tally_url_that_is_not_a_url_is_refused_without_being_shown(monkeypatch):
    monkeypatch.setenv("GRADCAM_TALLY_URL", f"{USER}:{PASSWORD}@db.example/tally")
    with pytest.raises(TallyUnavailable) as raised:
        Tally()
    assert str(raised.value) == f"GRADCAM_TALLY_URL is not a URL. {UNAVAILABLE} {SCHEMES}"


@pytest.mark.parametrize(("url", "problem"), [
    (f"mysql://{USER}:s3cret@db.example/tally", "mysql:// is not a database it knows"),
    ("sqlite://tally.sqlite", "a SQLite URL needs an absolute path"),
    (f"postgresql://{USER}:s3cret@db.example/tally?no_such_option=1", "it is not a valid PostgreSQL URL"),
])
def test_a_url_it_cannot_use_is_refused_clearly(url, problem):
    with pytest.raises(TallyUnavailable) as raised:
        Tally(url)
    assert str(raised.value) == f"The class tally cannot use GRADCAM_TALLY_URL: {problem}. {UNAVAILABLE} {SCHEMES}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_server_nobody_runs_is_named_without_the_login(scheme):
    port = free_port()
    with pytest.raises(TallyUnavailable) as raised:
        Tally(f"{scheme}://{USER}:s3cret@127.0.0.1:{port}/tally")
    message = str(raised.value)
    assert message.startswith(f"The class tally cannot use PostgreSQL at 127.0.0.1:{port}/tally (connection failed: ")
    assert "Connection refused" in message
    assert message.endswith(f"{UNAVAILABLE} Check that the server runs and that GRADCAM_TALLY_URL names the right "
                            "host, port, database, user and password; answers are kept again as soon as it can be "
                            "reached.")
    assert_discreet(message, repr(raised.value))


# --- PostgreSQL: a login it refuses, a server that goes away --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("login", "reason"), [
    ({"password": "wrong"}, 'password authentication failed for user "***"'),
    ({"user": "nobody_here"}, 'password authentication failed for user "***"'),
    ({"database": "no_such_database"}, 'database "no_such_database" does not exist'),
])
def test_a_login_the_server_refuses_is_said_without_the_login(postgres, caplog, login, reason):
    caplog.set_level(logging.INFO, logger="psycopg")
    with pytest.raises(TallyUnavailable) as raised:
        Tally(postgres.url_with(**login))
    message = str(raised.value)
    assert message.startswith(f"The class tally cannot use PostgreSQL at 127.0.0.1:{postgres.port}/")
    assert reason in message and UNAVAILABLE in message
    assert_discreet(message, repr(raised.value), caplog.text)
    assert "nobody_here" not in message


@pytest.mark.slow
def test_the_tally_fails_loudly_while_the_server_is_down_and_recovers_when_it_is_back(postgres, caplog):
    caplog.set_level(logging.INFO, logger="psycopg")
    with closing(Tally(postgres.url)) as tally:
        tally.reset()
        assert repr(tally) == f"Tally({postgres.where})"
        tally.record("q", "before", session="s")
        postgres.stop()
        try:
            with pytest.raises(TallyUnavailable) as raised:
                tally.record("q", "while down", session="s")
            with pytest.raises(TallyUnavailable, match=UNAVAILABLE):
                tally.answers()
            with pytest.raises(TallyUnavailable, match="Connection refused"):
                Tally(postgres.url)
        finally:
            postgres.start()
        tally.record("q", "after", session="s")
        assert [a.choice for a in tally.answers("q")] == ["before", "after"]
    assert str(raised.value).startswith(f"The class tally cannot use {postgres.where} (")
    assert_discreet(str(raised.value), caplog.text)


@pytest.mark.slow
def test_a_login_refused_after_the_start_is_logged_without_the_user(postgres, caplog):
    """The pool logs its failed connections: they must not name the user either."""
    pupil, first, second = "pupil_fourteen", "first password", "second password"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {pupil} LOGIN PASSWORD '{first}'")
        try:
            admin.execute(f"GRANT SELECT, INSERT, DELETE ON answers TO {pupil}")
            with closing(Tally(postgres.url_with(user=pupil, password=first))) as tally:
                tally.record("q", "x", session="s")
                caplog.set_level(logging.INFO, logger="psycopg")
                admin.execute(f"ALTER ROLE {pupil} PASSWORD '{second}'")
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (pupil,))
                with pytest.raises(TallyUnavailable) as raised:
                    tally.record("q", "y", session="s")
        finally:
            admin.execute(f"REVOKE ALL ON answers FROM {pupil}")
            admin.execute(f"DROP ROLE {pupil}")
    assert 'password authentication failed for user "***"' in caplog.text
    for text in (str(raised.value), caplog.text):
        assert pupil not in text and first not in text and second not in text
