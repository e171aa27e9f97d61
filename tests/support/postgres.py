"""A throwaway PostgreSQL cluster for the live tests: the database production Airflow runs on.

Debian's server binaries (`/usr/lib/postgresql/<version>/bin`) create a cluster in a temporary folder that
listens on 127.0.0.1 only, on a free port, with its socket in that folder too, so it meets no other cluster.
initdb and postgres refuse to run as root: under root (CI, containers) the cluster runs as the `postgres`
user that Debian's package creates, else as a dedicated system user created here. Durability is switched
off (fsync, synchronous_commit): the cluster lives for one test session, and the tests wait on its commits.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devtools import standalone

SERVICE_USERS = ("postgres", "mt-postgres")  # Debian's, else one this module creates
DATABASE = "airflow"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # scheduler, DAG processor, triggerer, API server workers, task runners
    "shared_buffers": "64MB",
}


def server_binaries() -> Path:
    """The newest installed server's bin folder (initdb, pg_ctl)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise FileNotFoundError("no PostgreSQL server: apt-get install postgresql (initdb and pg_ctl)")


def _service_user() -> pwd.struct_passwd | None:
    """Who runs the cluster: None for the current user, unless that is root."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USERS[-1]],
                   check=True)
    return pwd.getpwnam(SERVICE_USERS[-1])


@dataclass
class Postgres:
    folder: Path
    port: int
    bin: Path
    owner: pwd.struct_passwd | None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `airflow` database (trust authentication on 127.0.0.1)."""
        return f"postgresql+psycopg2://{DATABASE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        """A server binary, as the cluster's owner."""
        as_owner = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []} if self.owner else {}
        return subprocess.run([str(self.bin / command[0]), *command[1:]], cwd=self.folder, check=True,
                              capture_output=True, text=True, **as_owner, **kwargs)

    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended) and delete the cluster."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start() -> Postgres:
    """Create, configure and start a cluster with an `airflow` database; `stop()` removes it again."""
    owner = _service_user()
    # Not under pytest's own temp folder: that one is private to the current user (mode 0700).
    folder = Path(tempfile.mkdtemp(prefix="mt-postgres-"))
    if owner:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    cluster = Postgres(folder=folder, port=standalone.free_port(), bin=server_binaries(), owner=owner)
    try:
        cluster.run("initdb", "-D", str(cluster.data), "--username", DATABASE, "--auth", "trust",
                    "--encoding", "UTF8", "--locale", "C.UTF-8")
        settings = {**SETTINGS, "port": str(cluster.port), "unix_socket_directories": f"'{folder}'"}
        with (cluster.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        cluster.run("pg_ctl", "start", "-D", str(cluster.data), "-l", str(folder / "postgres.log"), "-w", "-t", "60")
        cluster.run("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", DATABASE, DATABASE)
    except BaseException as err:
        log = cluster.log()
        cluster.stop()
        if isinstance(err, subprocess.CalledProcessError):
            raise RuntimeError(f"PostgreSQL did not start: {err.stderr}\n{log[-2000:]}") from err
        raise
    return cluster
