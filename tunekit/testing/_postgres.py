"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary directory.

Uses the Debian ``postgresql`` package's binaries (``/usr/lib/postgresql/*/bin``).
The server listens on 127.0.0.1 at a free port, with its unix socket inside
the directory, and is stopped and removed on exit. PostgreSQL refuses to run
as root, so as root the server runs as ``nobody`` (via ``runuser``).

Example:
    >>> with PostgresServer() as pg:  # doctest: +SKIP
    ...     optuna.create_study(storage=pg.url)
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """Starts a private PostgreSQL cluster; ``url`` is a SQLAlchemy URL for its database."""

    def __init__(self, bin_dir: Path | None = None, database: str = "tunekit") -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = found
        self.database = database
        self.port = 0
        self.dir: Path | None = None
        self.user = "tunekit"

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full = list(cmd)
        if os.geteuid() == 0:
            full = ["runuser", "-u", "nobody", "--", *full]
        return subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, check=True, cwd="/"
        )

    def start(self) -> PostgresServer:
        self.dir = Path(tempfile.mkdtemp(prefix="tunekit-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, user="nobody")
        data, sock = self.dir / "data", self.dir / "sock"
        self._run("mkdir", "-p", str(sock))
        self._run(
            str(self.bin / "initdb"), "-D", str(data), "-U", self.user,
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self.port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {sock} -c fsync=off -c max_connections=100"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-o", options,
            "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            self.database,
        )
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        if self.dir is None:
            return
        # Already down is fine: the directory goes either way.
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            stop = [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.dir / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ]
            self._run(*stop)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
