"""The class tally: students' answers to the dashboard's questions, in SQLite or PostgreSQL.

Every answer is one row: when, an anonymous id of the browser session, the question, the choice,
whether it was right (when a question has a right answer) and a free detail (the method shown,
say). No names are asked.

``$GRADCAM_TALLY_URL`` names the database. By default it is one SQLite file in the data folder
(``$GRADCAM_DATA_DIR``, by default ``~/.gradcam-dashboard``, created on first use): enough for one
app server. Each call opens its own SQLite connection, so threads never share one; the database runs
in write-ahead-log mode and waits up to :data:`BUSY_SECONDS` for a lock, so a class answering at
once never loses an answer. Several app servers behind a load balancer need one database they all
reach: ``postgresql://user:password@host:port/database``. Their connections come from a small pool
that checks each one before use, so the tally recovers by itself when the server comes back after a
restart; opening a connection, or waiting for a free one, takes at most :data:`CONNECT_SECONDS`.

Whatever goes wrong (a file that is not a database, a folder that cannot be written, a server that
is down, a wrong password, a database that does not exist, a write that does not reach the database)
raises :class:`TallyUnavailable` with a message a page can show; the rest of the app keeps working.
The messages, the pool's log and ``repr`` describe the database (``PostgreSQL at host:port/database``,
or the file) and never show the URL: it holds the password, and the user name is not the class's
business. (psycopg's own DEBUG log of connection attempts, off unless asked for, quotes the server's
refusal, which names the user.)
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = ["BUSY_SECONDS", "CONNECT_SECONDS", "POOL_SIZE", "Answer", "Tally", "TallyUnavailable", "data_dir",
           "tally_url"]

#: How long a SQLite write waits for another's lock before it gives up.
BUSY_SECONDS = 30.0
#: How long a PostgreSQL connection may take to open, and a call may wait for a free one.
CONNECT_SECONDS = 3
#: PostgreSQL connections per app server: a classroom's answers are tiny, quick writes.
POOL_SIZE = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id {id_column},
    at {float_type} NOT NULL,
    session TEXT NOT NULL,
    question TEXT NOT NULL,
    choice TEXT NOT NULL,
    correct INTEGER,
    detail TEXT NOT NULL DEFAULT ''
)
"""
_UNAVAILABLE = "Answers are not being recorded; everything else works."
_SCHEMES = "sqlite:/// and an absolute path, or postgresql://user:password@host:port/database"


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


def tally_url() -> str:
    """``$GRADCAM_TALLY_URL``, or the SQLite file ``tally.sqlite`` in :func:`data_dir`.

    Raises :class:`TallyUnavailable` when the variable is set to something that is not a URL (it is
    not shown: it may hold a password).
    """
    url = os.environ.get("GRADCAM_TALLY_URL")
    if not url:
        return f"sqlite://{(data_dir() / 'tally.sqlite').absolute()}"
    if "://" not in url:
        raise TallyUnavailable(f"GRADCAM_TALLY_URL is not a URL. {_UNAVAILABLE} Give it as {_SCHEMES}.")
    return url


class Tally:
    """Answers in the database at ``location``: a SQLite file's path, or a URL (by default :func:`tally_url`).

    Example:
        >>> tally = Tally(tmp_path / "tally.sqlite")     # or Tally("postgresql://…")
        >>> tally.record("weak_vs_strong", "stronger", session="a1", correct=True)
        >>> tally.counts("weak_vs_strong")
        Counter({'stronger': 1})
    """

    def __init__(self, location: str | Path | None = None):
        self._database = _database(tally_url() if location is None else location)
        try:
            self._database.create(_SCHEMA.format(id_column=self._database.id_column,
                                                 float_type=self._database.float_type))
        except self._database.errors as error:
            raise TallyUnavailable(self._explain(error)) from None

    @property
    def where(self) -> str:
        """The database, for people: ``PostgreSQL at host:port/database`` or the SQLite file's path."""
        return self._database.where

    def __repr__(self) -> str:
        return f"Tally({self.where})"

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

    def close(self) -> None:
        """Close the PostgreSQL connections (SQLite keeps none open)."""
        self._database.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection | psycopg.Connection]:
        try:
            with self._database.connection() as connection:
                yield connection
        except self._database.errors as error:
            raise TallyUnavailable(self._explain(error)) from None

    def _write(self, sql: str, parameters: tuple) -> int:
        with self._connection() as connection:
            return connection.execute(self._database.sql(sql), parameters).rowcount

    def _read(self, sql: str, parameters: tuple) -> list[tuple]:
        with self._connection() as connection:
            return connection.execute(self._database.sql(sql), parameters).fetchall()

    def _explain(self, error: Exception) -> str:
        return (f"The class tally cannot use {self.where} ({self._database.reason(error)}). {_UNAVAILABLE} "
                f"{self._database.fix}")


def _database(location: str | Path) -> _SQLite | _PostgreSQL:
    """The backend for a path or a URL; a URL of another kind raises :class:`TallyUnavailable`."""
    scheme, separator, rest = str(location).partition("://")
    if isinstance(location, Path) or not separator:
        return _SQLite(Path(location))
    if scheme == "sqlite" and Path(rest).is_absolute():
        return _SQLite(Path(rest))
    if scheme in ("postgresql", "postgres"):
        return _PostgreSQL(str(location))
    problem = "a SQLite URL needs an absolute path" if scheme == "sqlite" else f"{scheme}:// is not a database it knows"
    raise TallyUnavailable(f"The class tally cannot use GRADCAM_TALLY_URL: {problem}. {_UNAVAILABLE} "
                           f"Give it as {_SCHEMES}.")


class _SQLite:
    """One SQLite file, a connection per call."""

    id_column, float_type = "INTEGER PRIMARY KEY", "REAL"
    errors = (OSError, sqlite3.Error)
    fix = ("Set GRADCAM_DATA_DIR to a writable folder (or GRADCAM_TALLY_URL to another database), "
           "or move the broken file away.")

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)

    def create(self, schema: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connection() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(schema)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction: committed when the block ends, rolled back if it raises."""
        connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS)
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    @staticmethod
    def sql(text: str) -> str:
        return text

    @staticmethod
    def reason(error: Exception) -> str:
        return str(error)

    def close(self) -> None:
        """Nothing to close: every call closes its own connection."""


class _PostgreSQL:
    """A PostgreSQL database, through a small pool of connections that are checked before each use."""

    id_column, float_type = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION"
    errors = (psycopg.Error,)
    fix = ("Check that the server runs and that GRADCAM_TALLY_URL names the right host, port, database, "
           "user and password; answers are kept again as soon as it can be reached.")
    # Two app servers starting together would both create the table; the second waits for this lock.
    _CREATION_LOCK = 7_212_461

    def __init__(self, url: str):
        try:
            settings = conninfo_to_dict(url)
        except psycopg.ProgrammingError:  # its message would quote the URL
            raise TallyUnavailable(f"The class tally cannot use GRADCAM_TALLY_URL: it is not a valid PostgreSQL "
                                   f"URL. {_UNAVAILABLE} Give it as {_SCHEMES}.") from None
        database = f"/{settings['dbname']}" if "dbname" in settings else ""  # else named after the user: not shown
        self.where = f"PostgreSQL at {settings.get('host', 'localhost')}:{settings.get('port', 5432)}{database}"
        self._url = url
        self._pool: ConnectionPool | None = None

    def create(self, schema: str) -> None:
        # A first connection of its own, so that a wrong password or a missing database is said as such
        # (the pool would only time out); then the pool, which reconnects by itself once the server is back.
        with _DiscreetConnection.connect(self._url, connect_timeout=CONNECT_SECONDS) as connection:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._CREATION_LOCK,))
            # A login that may write answers but not create tables works once the table exists.
            if connection.execute("SELECT to_regclass('answers')").fetchone() == (None,):
                connection.execute(schema)
        self._pool = ConnectionPool(
            self._url, min_size=0, max_size=POOL_SIZE, timeout=CONNECT_SECONDS, name="class tally",
            kwargs={"connect_timeout": CONNECT_SECONDS}, connection_class=_DiscreetConnection,
            check=ConnectionPool.check_connection,
            # A failed reconnection ends soon, so the next call tries afresh instead of waiting for a backoff.
            reconnect_timeout=CONNECT_SECONDS, open=True,
        )

    def connection(self):
        """A pooled connection in a transaction: committed when the block ends, rolled back if it raises."""
        return self._pool.connection()

    @staticmethod
    def sql(text: str) -> str:
        return text.replace("?", "%s")

    def reason(self, error: Exception) -> str:
        if isinstance(error, PoolTimeout):
            return f"no connection to the server within {CONNECT_SECONDS} s"
        return _redacted(str(error), self._url)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


class _DiscreetConnection(psycopg.Connection):
    """A psycopg connection that names no user: not in its ``repr``, not in the error when it cannot connect.

    The pool logs both; psycopg's own would show the user (``password authentication failed for user "…"``).
    """

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs) -> Self:
        try:
            return super().connect(conninfo, **kwargs)
        except psycopg.Error as error:
            raise psycopg.OperationalError(_redacted(str(error), conninfo)) from None

    def __repr__(self) -> str:
        return f"<class tally connection [{self.info.status.name}] at 0x{id(self):x}>"


def _redacted(text: str, url: str) -> str:
    """``text`` on one line, with the user name and the password of ``url`` replaced by ``***``."""
    settings = conninfo_to_dict(url)
    for secret in filter(None, (settings.get("password"), settings.get("user"))):
        text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)
    return " ".join(text.split())
