"""Ray, for the commands that go past one machine (`predict --engine ray`, `bench --engine ray`).

Ray is the `scale` extra (`pip install 'finpeft[scale]'`): nothing on the default path imports it. Without an
address a local Ray starts in this process and stops with it; with one (`HOST:PORT` of `ray start --head`, or
`auto` for the cluster this machine belongs to) the job joins that cluster, whose nodes must have finpeft
installed and see the run dir, the inputs and the output dir at the same paths (a shared filesystem).
"""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager

from finpeft.errors import FinpeftError


def import_ray():
    try:
        import ray
    except ModuleNotFoundError:
        raise FinpeftError("--engine ray needs Ray: pip install 'finpeft[scale]'") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds with one line where Ray itself would retry for a minute: HOST:PORT must answer TCP."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FinpeftError(f"--address {address!r}: expected HOST:PORT of a Ray head (e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise FinpeftError(f"--address {address}: no Ray head answers there ({e.strerror or e}); start one with "
                           "`ray start --head` or leave --address out for a local Ray") from None


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """ray.init for one job (joined or local, quiet logs, no dashboard), shut down after it unless this process
    was already connected (a notebook's or a test's own cluster)."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        check_address(address)
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ notices on stderr; errors still raise
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                  configure_logging=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1,
                     object_store_memory=256 * 1024 * 1024, **kwargs)  # shards travel as paths, not data
    except ConnectionError as e:
        raise FinpeftError(f"--address {address}: cannot join the Ray cluster: {str(e).splitlines()[0][:200]}") from None
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
