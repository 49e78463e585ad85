"""A real PostgreSQL server for the tests: a new cluster in a temporary folder, on a free loopback port.

The login is a user with a password (``USER``, ``PASSWORD``), so that the tests can check that neither
ever shows; the password has characters a URL must escape. ``initdb`` refuses to run as root, so when
the tests run as root every server command runs as the ``postgres`` user. The server is stopped and
its folder removed however the tests end. Without PostgreSQL's programs the tests that need a server
are skipped, with the reason.

    with postgres_server() as server:      # or the session-scoped fixture `postgres`
        Tally(server.url)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

HOST = "127.0.0.1"
USER = "frizzle"
PASSWORD = "s3cret/P@ss word"
DATABASE = "tally"
SERVER_USER = "postgres"  # who runs the server when the tests run as root


def bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, else Debian's newest version."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates.insert(0, found)
    return next((Path(c) for c in candidates if c and (Path(c) / "initdb").is_file()), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def assert_discreet(*texts: str) -> None:
    """Neither the test login's user name nor its password (or a part of it) is in any of ``texts``."""
    for text in texts:
        for secret in (USER, PASSWORD, "s3cret"):
            assert secret not in text, f"{secret!r} shown in: {text}"


@dataclass(frozen=True)
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int
    as_root: bool

    @property
    def url(self) -> str:
        return self.url_with()

    def url_with(self, user: str = USER, password: str = PASSWORD, database: str = DATABASE,
                 port: int | None = None) -> str:
        """The server's URL, with another login, database or port where given."""
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{HOST}:{port or self.port}/{database}"

    @property
    def where(self) -> str:
        """How ``ui.tally`` describes the test database."""
        return f"PostgreSQL at {HOST}:{self.port}/{DATABASE}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={HOST} -c fsync=off"
        self.run("pg_ctl", "-D", self.folder / "data", "-l", self.folder / "server.log", "-o", options, "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", self.folder / "data", "-m", "fast", "-w", "stop")

    def log(self) -> str:
        try:
            return (self.folder / "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return "(no server log)"

    def run(self, program: str, *arguments: str | Path) -> None:
        command = [str(self.bin_dir / program), *map(str, arguments)]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.log()}")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running server with the database ``DATABASE`` owned by ``USER``; stopped and removed afterwards."""
    found = bin_dir()
    if found is None:
        pytest.skip("PostgreSQL is not installed: no initdb in `pg_config --bindir` nor in /usr/lib/postgresql/*/bin")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            server_user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip(f"running as root, and initdb refuses root: no `{SERVER_USER}` user to run the server")
    folder = Path(tempfile.mkdtemp(prefix="gradcam-postgres-"))
    server = PostgresServer(found, folder, free_port(), as_root)
    started = False
    try:
        if as_root:
            os.chown(folder, server_user.pw_uid, server_user.pw_gid)
        password_file = folder / "password"
        password_file.write_text(PASSWORD)
        server.run("initdb", "-D", folder / "data", "-U", USER, f"--pwfile={password_file}", "--auth=scram-sha-256",
                   "-E", "UTF8", "--no-sync")
        server.start()
        started = True
        _create_database(server)
        yield server
    finally:
        if started:
            try:
                server.stop()
            except RuntimeError:  # already stopped by a test that failed half-way
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _create_database(server: PostgresServer) -> None:
    with psycopg.connect(server.url_with(database="postgres"), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {DATABASE}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One test server for the whole session (conftest.py makes it every module's fixture)."""
    with postgres_server() as server:
        yield server
