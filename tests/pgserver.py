"""A throwaway PostgreSQL server (Debian's postgresql package) in a temp dir on a free port: the tests' and
bench/bench_tune_shared.py's real database. PostgreSQL refuses to run as root, so as root the cluster runs as the
package's `postgres` user."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


class PG_MISSING(Exception):
    """Debian's postgresql package is not installed."""


@contextmanager
def postgres_server():
    """Yields the URL of a fresh database (user finpeft, trust auth, 127.0.0.1 only); stops and deletes it after."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise PG_MISSING
    pg = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="finpeft-pg-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def run(*cmd):
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)
    try:
        run(str(pg / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "finpeft", "--no-sync")
        run(str(pg / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "finpeft", "studies")
        yield f"postgresql://finpeft@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
