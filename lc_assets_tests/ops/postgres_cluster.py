"""A throwaway PostgreSQL cluster from the Debian packages (initdb + pg_ctl), for storage tests.

PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` system user (runuser).
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PostgresCluster:
    """Connection facts of a running throwaway cluster (TCP on 127.0.0.1, password auth)."""

    host: str
    port: int
    user: str
    password: str
    db_name: str
    data_dir: Path

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables that docker/dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db_name,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }


def postgres_bin_dir() -> Path | None:
    """The server binaries: Debian keeps them under /usr/lib/postgresql/<version>/bin, off PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def why_unavailable() -> str | None:
    """None when a cluster can be started here, else the reason (a skip message)."""
    if postgres_bin_dir() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql; scripts/install_system_deps.sh)"
    if getpass.getuser() == "root":
        if shutil.which("runuser") is None:
            return "running as root without runuser: PostgreSQL cannot run as root"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no `postgres` system user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """initdb into a temp dir, start on a free port, create the database; stop() removes everything."""

    def __init__(self, user: str = "dagster", password: str = "lc-assets-test", db_name: str = "dagster") -> None:
        self.user, self.password, self.db_name = user, password, db_name
        self.bin = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="lc_assets_pg_"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_root = getpass.getuser() == "root"
        self._started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresCluster:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        os.chmod(self.root, 0o700)
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")
        self._started = True
        self._run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", self.user, self.db_name)
        return PostgresCluster("127.0.0.1", self.port, self.user, self.password, self.db_name, self.data)

    def stop(self) -> None:
        try:
            if self._started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
