"""The class tally: students' answers to the dashboard's questions, in one SQLite file.

Every answer is one row: when, an anonymous id of the browser session, the question, the choice,
whether it was right (when a question has a right answer) and a free detail (the method shown,
say). No names are asked. Each call opens its own connection, so threads never share one; the
database runs in write-ahead-log mode and waits up to :data:`BUSY_SECONDS` for a lock, so a
class answering at once never loses an answer.

The file lives in the data folder: ``$GRADCAM_DATA_DIR``, by default ``~/.gradcam-dashboard``,
created on first use. A file that is not a database, or a folder that cannot be written, raises
:class:`TallyUnavailable` with a message a page can show; the rest of the app keeps working.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUSY_SECONDS", "Answer", "Tally", "TallyUnavailable", "data_dir"]

#: How long a write waits for another's lock before it gives up.
BUSY_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    session TEXT NOT NULL,
    question TEXT NOT NULL,
    choice TEXT NOT NULL,
    correct INTEGER,
    detail TEXT NOT NULL DEFAULT ''
)
"""


class TallyUnavailable(RuntimeError):
    """The tally's database cannot be opened or written; the message says why and where."""


@dataclass(frozen=True)
class Answer:
    question: str
    choice: str
    correct: bool | None
    detail: str
    session: str
    at: float


def data_dir() -> Path:
    """``$GRADCAM_DATA_DIR``, or ``~/.gradcam-dashboard``."""
    return Path(os.environ.get("GRADCAM_DATA_DIR") or Path.home() / ".gradcam-dashboard")


class Tally:
    """Answers in the SQLite file ``path`` (by default ``data_dir() / "tally.sqlite"``).

    Example:
        >>> tally = Tally(tmp_path / "tally.sqlite")
        >>> tally.record("weak_vs_strong", "stronger", session="a1", correct=True)
        >>> tally.counts("weak_vs_strong")
        Counter({'stronger': 1})
    """

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else data_dir() / "tally.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._connect()
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                with connection:
                    connection.execute(_SCHEMA)
            finally:
                connection.close()
        except (OSError, sqlite3.Error) as error:
            raise TallyUnavailable(self._explain(error)) from None

    def record(self, question: str, choice: str, session: str, correct: bool | None = None, detail: str = "") -> None:
        """Add one answer."""
        self._write(
            "INSERT INTO answers (at, session, question, choice, correct, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), session, question, choice, None if correct is None else int(correct), detail),
        )

    def answers(self, question: str | None = None) -> list[Answer]:
        """Every answer, oldest first; only ``question``'s when given."""
        query = "SELECT question, choice, correct, detail, session, at FROM answers"
        rows = self._read(f"{query} WHERE question = ? ORDER BY id" if question else f"{query} ORDER BY id",
                          (question,) if question else ())
        return [Answer(q, c, None if ok is None else bool(ok), d, s, at) for q, c, ok, d, s, at in rows]

    def counts(self, question: str) -> Counter:
        """How many times each choice was given to ``question``."""
        return Counter(answer.choice for answer in self.answers(question))

    def reset(self, question: str | None = None) -> int:
        """Delete every answer (only ``question``'s when given); returns how many went."""
        if question:
            return self._write("DELETE FROM answers WHERE question = ?", (question,))
        return self._write("DELETE FROM answers", ())

    def csv(self) -> str:
        """Every answer as CSV text, a header row first (for a spreadsheet)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["time", "session", "question", "choice", "correct", "detail"])
        for a in self.answers():
            writer.writerow([time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.at)), a.session, a.question,
                             a.choice, "" if a.correct is None else int(a.correct), a.detail])
        return out.getvalue()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=BUSY_SECONDS)

    def _write(self, sql: str, parameters: tuple) -> int:
        try:
            connection = self._connect()
            try:
                with connection:
                    return connection.execute(sql, parameters).rowcount
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise TallyUnavailable(self._explain(error)) from None

    def _read(self, sql: str, parameters: tuple) -> list[tuple]:
        try:
            connection = self._connect()
            try:
                return connection.execute(sql, parameters).fetchall()
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise TallyUnavailable(self._explain(error)) from None

    def _explain(self, error: Exception) -> str:
        return (
            f"The class tally cannot use {self.path} ({error}). Answers are not being recorded; "
            "everything else works. Set GRADCAM_DATA_DIR to a writable folder, or move the broken file away."
        )
