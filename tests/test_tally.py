"""ui.tally: answers kept in SQLite, safe under a class answering at once, and honest when it cannot work."""

import os
import sqlite3
import threading

import pytest

from ui.tally import Tally, TallyUnavailable, data_dir


def test_answers_are_recorded_and_counted(tmp_path):
    tally = Tally(tmp_path / "tally.sqlite")
    tally.record("weak_vs_strong", "stronger", session="a", correct=True, detail="shapes|grad_cam")
    tally.record("weak_vs_strong", "unsure", session="b")
    tally.record("quiz", "cat", session="a", correct=False)
    answers = tally.answers("weak_vs_strong")
    assert [(a.choice, a.correct, a.session, a.detail) for a in answers] == [
        ("stronger", True, "a", "shapes|grad_cam"), ("unsure", None, "b", "")]
    assert tally.counts("weak_vs_strong") == {"stronger": 1, "unsure": 1}
    assert len(tally.answers()) == 3


def test_a_second_opening_sees_the_same_answers(tmp_path):
    Tally(tmp_path / "t.sqlite").record("q", "x", session="s")
    assert Tally(tmp_path / "t.sqlite").counts("q") == {"x": 1}


def test_the_data_folder_comes_from_the_environment_and_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADCAM_DATA_DIR", str(tmp_path / "new" / "folder"))
    assert data_dir() == tmp_path / "new" / "folder"
    tally = Tally()
    assert tally.path == tmp_path / "new" / "folder" / "tally.sqlite" and tally.path.is_file()


def test_no_answer_is_lost_when_a_class_answers_at_once(tmp_path):
    tally = Tally(tmp_path / "tally.sqlite")
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
    assert sum(tally.counts("q").values()) == students * answers_each
    assert len({a.session for a in tally.answers("q")}) == students


def test_a_file_that_is_not_a_database_gives_a_message(tmp_path):
    broken = tmp_path / "tally.sqlite"
    broken.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(TallyUnavailable, match="cannot use .*tally.sqlite.*everything else works"):
        Tally(broken)
    assert broken.read_bytes().startswith(b"this is not a database")  # nothing overwritten


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


def test_a_read_only_database_gives_a_message_on_write(tmp_path):
    path = tmp_path / "tally.sqlite"
    Tally(path)
    readonly = Tally.__new__(Tally)
    readonly.path = path
    readonly._connect = lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(TallyUnavailable, match="not being recorded"):
        readonly.record("q", "x", session="s")


def test_reset_and_csv_export(tmp_path):
    tally = Tally(tmp_path / "t.sqlite")
    tally.record("quiz", "cat", session="a", correct=True, detail="grad_cam")
    tally.record("quiz", "dog, big", session="b", correct=False, detail="guided_backprop")
    tally.record("where", "hit", session="a")
    rows = list(__import__("csv").reader(tally.csv().splitlines()))
    assert rows[0] == ["time", "session", "question", "choice", "correct", "detail"]
    assert [r[2:] for r in rows[1:]] == [["quiz", "cat", "1", "grad_cam"], ["quiz", "dog, big", "0", "guided_backprop"],
                                         ["where", "hit", "", ""]]
    assert tally.reset("quiz") == 2 and len(tally.answers()) == 1
    assert tally.reset() == 1 and tally.answers() == []
