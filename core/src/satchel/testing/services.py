"""Finding or starting the real servers that driver tests talk to.

Each fixture looks for its server in this order: a URL in an environment
variable, else a server binary on PATH started on a free loopback port, else
a skip that says what is missing. ``SATCHEL_REQUIRE_SERVICES`` (e.g.
``redis,memcached,postgres,mysql``) names the servers whose absence fails the
run instead of skipping. A binary that is on PATH but does not start is a
failure wherever it runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

REQUIRE_ENV = "SATCHEL_REQUIRE_SERVICES"
OUTPUT_TAIL_LINES = 20

# Ports free_port() has handed out in this process: a test that asks for several
# (a cluster, a pool) before starting any server must never get one twice.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def required_services() -> set[str]:
    """The service names listed in ``SATCHEL_REQUIRE_SERVICES``."""
    raw = os.environ.get(REQUIRE_ENV, "")
    return {name.strip().lower() for name in raw.split(",") if name.strip()}


def service_missing(name: str, reason: str) -> NoReturn:
    """Skip the test, or fail it when ``SATCHEL_REQUIRE_SERVICES`` names ``name``."""
    message = f"{name} is not available: {reason}"
    if name.lower() in required_services():
        pytest.fail(f"{message} (required by {REQUIRE_ENV})", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never the same
    one twice in a process (the port is not held, so a later call could otherwise
    get it again before a server binds it).

    Under pytest-xdist each worker takes only its own share of the ports, so a
    client one worker's test left pointing at a server it stopped (a retry, a
    probe of a port that was free) never reaches a server another worker started
    since.
    """
    index, workers = _worker_share()
    with _handed_out_lock:
        for _ in range(_TRIES_PER_WORKER * workers):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            # Halved first: Linux hands out odd ports to bind() while it can.
            if (port >> 1) % workers == index and port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free loopback port for pytest-xdist worker {index} of {workers}")


_TRIES_PER_WORKER = 1000


def _worker_share() -> tuple[int, int]:
    """This process's pytest-xdist worker number and the number of workers ((0, 1) outside
    pytest-xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker[:2] == "gw" and worker[2:].isdigit() and workers.isdigit():
        index, count = int(worker[2:]), int(workers)
        if index < count:
            return index, count
    return 0, 1


def output_tail(path: Path, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server's output or log file, for a failure message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no output: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    *,
    timeout: float = 15.0,
    host: str = "127.0.0.1",
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until ``host:port`` accepts connections, or raise ``TimeoutError``
    (at once when ``process``, the server meant to listen there, has exited)."""
    deadline = time.monotonic() + timeout
    while not port_open(port, host):
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"the server exited before it listened on {host}:{port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:g} seconds")
        time.sleep(0.05)


@contextmanager
def start_server_process(
    argv: Sequence[str], *, port: int, name: str, timeout: float = 15.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server binary, wait for its port, and stop it afterwards.

    When the binary is not on PATH the test is skipped, or failed when
    ``SATCHEL_REQUIRE_SERVICES`` names ``name``. A binary that is there but does
    not come up fails the test, with the end of its output: that is a broken
    setup, not a missing service.
    """
    if shutil.which(argv[0]) is None:
        service_missing(name, f"{argv[0]!r} is not on PATH")
    with tempfile.TemporaryDirectory(prefix="satchel-server-") as folder:
        output = Path(folder) / "output.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(  # noqa: S603 - argv comes from the test suite itself
                list(argv), stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            try:
                wait_for_port(port, timeout=timeout, process=process)
            except TimeoutError as exc:
                status = process.poll()
                pytest.fail(
                    f"{name}: {' '.join(argv)} did not start ({exc}; "
                    f"{'still running' if status is None else f'exit code {status}'}); "
                    f"its output ends:\n{output_tail(output)}",
                    pytrace=False,
                )
            yield process
        finally:
            stop_process(process)


@contextmanager
def frozen_process(process: subprocess.Popen[Any], *, wait_seconds: float = 5) -> Iterator[None]:
    """Hold ``process`` stopped (SIGSTOP) for the block: alive, connected and silent.

    The signal is delivered asynchronously, so the block starts only once the
    kernel reports the process stopped; otherwise a server thread could still
    answer the first request sent. SIGCONT lets it go again.
    """
    process.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + wait_seconds
        while _process_state(process.pid) != "T":
            if time.monotonic() > deadline:
                pytest.fail(f"process {process.pid} did not stop within {wait_seconds} s")
            time.sleep(0.005)
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def _process_state(pid: int) -> str:
    """The one-letter state of ``pid`` from ``/proc/<pid>/stat`` (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def stop_process(process: subprocess.Popen[Any], *, grace_seconds: float = 10) -> None:
    """Terminate ``process``, and kill it when it has not exited within ``grace_seconds``."""
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
