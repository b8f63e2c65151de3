"""The file driver under faults: killed writers, full disks, refused permissions, hostile names."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from satchel import LockTimeout, SessionBackendError
from satchel.drivers.file import FileSessionHandler
from satchel.testing import new_storage_id

KILLS = 200
PAYLOAD_SIZE = 300_000
OLD_PAYLOAD = "old:" + "o" * PAYLOAD_SIZE
NEW_PAYLOAD = "new:" + "n" * PAYLOAD_SIZE

# A "zygote" imports satchel once and forks one writer per request, so each of
# the hundreds of kills costs a fork rather than an interpreter start.
ZYGOTE = """
import os, signal, sys
from satchel.drivers.file import FileSessionHandler
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
handler = FileSessionHandler(sys.argv[1], 3600)
key, size = sys.argv[2], int(sys.argv[3])
payloads = ["old:" + "o" * size, "new:" + "n" * size]
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        index = 0
        while True:
            handler.write(key, payloads[index % 2])
            index += 1
    print(pid, flush=True)
"""


def temp_files(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.startswith(".tmp-")]


def test_killed_writers_never_leave_a_partial_payload(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    key = new_storage_id()
    handler.write(key, OLD_PAYLOAD)
    seen: dict[str, int] = {}
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            value = handler.read(key)
            label = value[:4]
            if value not in (OLD_PAYLOAD, NEW_PAYLOAD):
                bad.append(f"{label!r} of length {len(value)}")
            seen[label] = seen.get(label, 0) + 1

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    rng = random.Random(1234)
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(folder), key, str(PAYLOAD_SIZE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert zygote.stdin is not None
    assert zygote.stdout is not None
    try:
        for _ in range(KILLS):
            zygote.stdin.write("fork\n")
            zygote.stdin.flush()
            writer_pid = int(zygote.stdout.readline())
            time.sleep(rng.uniform(0.001, 0.01))
            os.kill(writer_pid, signal.SIGKILL)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
        zygote.stdin.close()
        zygote.wait(timeout=30)
    time.sleep(0.2)  # let the last killed writer be reaped before gc checks its pid
    assert bad == []
    assert seen.get("old:", 0) > 0
    assert seen.get("new:", 0) > 0
    # Killed writers may leave temporary files behind; gc clears those of dead writers.
    handler.gc(3600)
    assert temp_files(folder) == []
    assert handler.read(key) in (OLD_PAYLOAD, NEW_PAYLOAD)


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("os.replace", OSError(errno.ENOSPC, "No space left on device")),
        ("tempfile.mkstemp", PermissionError(errno.EACCES, "Permission denied")),
    ],
)
def test_a_failed_save_is_a_clear_error_and_keeps_the_earlier_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, error: OSError
) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    key = new_storage_id()
    handler.write(key, "earlier")

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    module, name = target.split(".")
    monkeypatch.setattr({"os": os, "tempfile": tempfile}[module], name, fail)
    with pytest.raises(SessionBackendError) as info:
        handler.write(key, "later")
    monkeypatch.undo()
    message = str(info.value)
    assert "'file'" in message
    assert str(folder) in message
    assert errno.errorcode[error.errno] in message
    assert handler.read(key) == "earlier"
    assert temp_files(folder) == []


def test_folder_and_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    key = new_storage_id()
    handler.write(key, "secret")
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / key).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "..",
        "../x",
        "..\\x",
        "%2e%2e%2f",
        "a\x00b",
        "a\r\nb",
        "a;b",
        "a b",
        "é" * 5,
        "x" * 10_000,
        "/etc/passwd",
    ],
)
def test_hostile_names_never_touch_a_path(tmp_path: Path, hostile: str) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    assert handler.read(hostile) == ""
    with pytest.raises(ValueError, match="safe file name"):
        handler.write(hostile, "x")
    assert handler.destroy(hostile) is True
    assert not folder.exists() or list(folder.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) in ([], ["sessions"])


def test_lock_of_a_killed_process_expires(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    key = new_storage_id()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from satchel.drivers.file import FileSessionHandler\n"
            "h = FileSessionHandler(sys.argv[1], 60)\n"
            "held = h.lock(sys.argv[2], lock_seconds=3, wait_seconds=1)\n"
            "held.__enter__()  # kept referenced: collecting it would release the lock\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(folder),
            key,
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"held\n"
    handler = FileSessionHandler(folder, 60)
    with pytest.raises(LockTimeout), handler.lock(key, lock_seconds=5, wait_seconds=0.2):
        pass
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with handler.lock(key, lock_seconds=5, wait_seconds=5):
        assert time.monotonic() - started < 4
