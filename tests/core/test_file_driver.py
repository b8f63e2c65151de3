"""The file driver under faults: killed writers, full disks, refused permissions, hostile names."""

from __future__ import annotations

import errno
import gc
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from satchel import LockTimeout, SessionBackendError, SessionConfig, SessionManager
from satchel.drivers import file as file_driver
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
from satchel.drivers import file as file_driver
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
    # Kills that landed mid-write left their temporary files; gc clears those of dead writers.
    assert len(temp_files(folder)) > 0  # some kills really landed mid-write (about 1 in 4)
    handler.gc(3600)
    assert temp_files(folder) == []
    assert handler.read(key) in (OLD_PAYLOAD, NEW_PAYLOAD)


def fail_with(error: OSError) -> Callable[..., NoReturn]:
    def fail(*args: object, **kwargs: object) -> NoReturn:
        raise error

    return fail


def onto_a_full_disk(folder: Path) -> tuple[int, str]:
    """A temporary file that takes no data: the write itself meets the kernel's ENOSPC."""
    fd, name = REAL_CREATE_TEMP_FILE(folder)
    os.close(fd)
    return os.open("/dev/full", os.O_WRONLY), name


REAL_CREATE_TEMP_FILE = file_driver.create_temp_file
FAULTS = {
    "ENOSPC on the write": ("file_driver.create_temp_file", onto_a_full_disk, errno.ENOSPC),
    "ENOSPC on the replace": (
        "os.replace",
        fail_with(OSError(errno.ENOSPC, "No space left on device")),
        errno.ENOSPC,
    ),
    "EACCES on the replace": (
        "os.replace",
        fail_with(PermissionError(errno.EACCES, "Permission denied")),
        errno.EACCES,
    ),
    "EACCES on the temporary file": (
        "file_driver.create_temp_file",
        fail_with(PermissionError(errno.EACCES, "Permission denied")),
        errno.EACCES,
    ),
}


@pytest.mark.parametrize("first_save", [False, True], ids=["a later save", "the first save"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_save_is_a_clear_error_and_keeps_the_earlier_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, first_save: bool
) -> None:
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(driver="file", files=str(folder), lottery=(0, 1)))
    session = manager.start(None)
    if not first_save:
        session.put("note", "earlier")
        session.save()
    session.put("note", "later")
    target, replacement, expected_errno = FAULTS[fault]
    module, name = target.split(".")
    monkeypatch.setattr({"os": os, "file_driver": file_driver}[module], name, replacement)
    with pytest.raises(SessionBackendError) as info:
        session.save()
    monkeypatch.undo()
    message = str(info.value)
    assert "'file'" in message
    assert str(folder) in message
    assert errno.errorcode[expected_errno] in message
    assert "unchanged" in message
    assert session.id not in message
    assert manager.storage_key(session.id) not in message
    reloaded = manager.start(session.id)
    assert reloaded.all() == ({} if first_save else {"note": "earlier"})
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
            "held.__enter__()\n"
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


def test_a_lock_entered_and_abandoned_is_left_to_expire_not_released_by_the_collector(
    tmp_path: Path,
) -> None:
    handler = FileSessionHandler(tmp_path / "sessions", 60)
    key = new_storage_id()
    held = handler.lock(key, lock_seconds=30, wait_seconds=1)
    held.__enter__()
    del held
    gc.collect()
    # Only its holder's exit releases a lock: the collector never runs file I/O on its behalf.
    with pytest.raises(LockTimeout), handler.lock(key, lock_seconds=5, wait_seconds=0.1):
        pass


# -- logout against a late save ----------------------------------------------------------

RACE_ROUNDS = 200
PAUSE_SECONDS = 0.002  # widens the gap between write_existing's check and its replace


def pause_before_writing(monkeypatch: pytest.MonkeyPatch, handler: FileSessionHandler) -> None:
    """Make every ``write`` (which ``write_existing`` calls after its check) start late."""
    write = handler.write

    def late_write(session_id: str, data: str) -> bool:
        time.sleep(PAUSE_SECONDS)
        return write(session_id, data)

    monkeypatch.setattr(handler, "write", late_write)


def race_a_late_save_against_a_logout(
    handler: FileSessionHandler, key: str, save_delay: float, logout_delay: float
) -> bool:
    """Start ``write_existing`` and ``destroy`` together; return whether the save found the record."""
    start = threading.Barrier(2)
    results: list[bool] = []

    def late_save() -> None:
        start.wait()
        time.sleep(save_delay)
        results.append(handler.write_existing(key, "late"))

    def logout() -> None:
        start.wait()
        time.sleep(logout_delay)
        handler.destroy(key)

    threads = [threading.Thread(target=late_save), threading.Thread(target=logout)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results == [True]


def test_a_destroy_racing_a_late_save_always_wins_across_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # write_existing and destroy are each atomic, so whichever order they take
    # effect in, the record ends up gone: a save never brings a logout back.
    handler = FileSessionHandler(tmp_path / "sessions", 3600)
    pause_before_writing(monkeypatch, handler)
    key = new_storage_id()
    rng = random.Random(2468)
    saved_first = 0
    for _ in range(RACE_ROUNDS):
        handler.write(key, "loaded")
        # Either side may start late, so both orders (and the window itself) are hit.
        save_delay, logout_delay = rng.choice(
            [(rng.uniform(0, PAUSE_SECONDS), 0.0), (0.0, rng.uniform(0, 1.5 * PAUSE_SECONDS))]
        )
        saved_first += race_a_late_save_against_a_logout(handler, key, save_delay, logout_delay)
        assert handler.read(key) == ""
        assert not (tmp_path / "sessions" / key).exists()
    # Both orders happened: the save ran first (then was removed) and the logout did.
    assert 0 < saved_first < RACE_ROUNDS


# A helper process saving one session until its record is gone (or a second
# passed: a resurrected record would otherwise keep it saving), each save late.
LATE_SAVER = f"""
import sys, time
from satchel.drivers import file as file_driver
from satchel.drivers.file import FileSessionHandler
handler = FileSessionHandler(sys.argv[1], 3600)
write = handler.write
def late_write(session_id, data):
    time.sleep({PAUSE_SECONDS})
    return write(session_id, data)
handler.write = late_write
key = sys.argv[2]
for line in sys.stdin:
    saves, deadline = 0, time.monotonic() + 1
    while time.monotonic() < deadline and handler.write_existing(key, "late"):
        saves += 1
    print(saves, flush=True)
"""


def test_a_destroy_racing_late_saves_from_another_process_is_never_undone(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    key = new_storage_id()
    saver = subprocess.Popen(
        [sys.executable, "-c", LATE_SAVER, str(folder), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert saver.stdin is not None
    assert saver.stdout is not None
    rng = random.Random(4321)
    saves = 0
    try:
        for _ in range(40):
            handler.write(key, "loaded")
            saver.stdin.write("go\n")
            saver.stdin.flush()
            time.sleep(rng.uniform(0.002, 0.01))
            handler.destroy(key)  # the logout; every save after it must find nothing
            saves += int(saver.stdout.readline())
            assert handler.read(key) == ""
            assert not (folder / key).exists()
    finally:
        saver.stdin.close()
        saver.wait(timeout=30)
    assert saves > 0  # the saver was really saving while the logouts landed


def test_the_brief_save_lock_never_waits_on_a_held_blocking_lock(tmp_path: Path) -> None:
    # Session blocking keeps a token in the lock file, not a held flock, so a
    # holder (or a merge_on_save save under the lock) can still save and destroy.
    handler = FileSessionHandler(tmp_path / "sessions", 3600)
    key = new_storage_id()
    handler.write(key, "loaded")
    waiter_timed_out = threading.Event()

    def waiter() -> None:
        try:
            with handler.lock(key, lock_seconds=10, wait_seconds=0.5):
                pass
        except LockTimeout:
            waiter_timed_out.set()

    started = time.monotonic()
    with handler.lock(key, lock_seconds=10, wait_seconds=1):
        thread = threading.Thread(target=waiter)
        thread.start()  # polls the same lock file while we save
        assert handler.write_existing(key, "saved under the lock")
        assert handler.read(key) == "saved under the lock"
        assert handler.destroy(key)
        assert not handler.write_existing(key, "after the logout")
        thread.join()
    assert waiter_timed_out.is_set()  # the blocking lock itself still held
    assert time.monotonic() - started < 5


def make_idle(path: Path, seconds: float) -> None:
    """Give ``path`` the mtime of a file last written ``seconds`` ago."""
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)


def test_gc_never_removes_a_session_whose_lock_someone_holds(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    key = new_storage_id()
    handler.write(key, "loaded")
    with handler.lock(key, lock_seconds=5, wait_seconds=1):
        pass  # leaves the stored session's lock file
    lock_file = folder / f".lock-{key}"
    assert lock_file.exists()
    make_idle(folder / key, 2 * 3600)
    # The flock a save or a logout takes between its check and its change.
    with handler._session_flocked(str(folder / key)) as info:
        assert info is not None
        handler.gc(3600)
        # In use this very moment: removing it would let that save land after gc.
        assert lock_file.exists()
        assert (folder / key).exists()
    assert handler.gc(3600) == 1
    assert list(folder.iterdir()) == []


def test_a_save_takes_no_lock_file(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    key = new_storage_id()
    handler.write(key, "loaded")
    assert handler.write_existing(key, "saved")
    assert handler.read(key) == "saved"
    assert sorted(path.name for path in folder.iterdir()) == [key]


def test_unknown_sessions_get_no_lock_file(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    handler.write(new_storage_id(), "someone else's")
    key = new_storage_id()
    assert handler.write_existing(key, "late") is False
    assert handler.destroy(key) is True
    assert len(list(folder.iterdir())) == 1


def test_locking_an_unknown_id_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    stored = new_storage_id()
    handler.write(stored, "someone else's")
    for _ in range(3):
        with handler.lock(new_storage_id(), lock_seconds=5, wait_seconds=1):
            pass
    assert sorted(path.name for path in folder.iterdir()) == [stored]


def test_a_lock_file_goes_when_its_session_goes(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    logged_out, idle, ended_under_its_lock = (new_storage_id() for _ in range(3))
    for key in (logged_out, idle, ended_under_its_lock):
        handler.write(key, "loaded")
        with handler.lock(key, lock_seconds=5, wait_seconds=1):
            assert handler.write_existing(key, "saved")  # the stored session keeps its lock file
    assert len(list(folder.glob(".lock-*"))) == 3
    handler.destroy(logged_out)  # a logout, without block
    make_idle(folder / idle, 2 * 3600)
    make_idle(folder / f".lock-{idle}", 2 * 3600)
    assert handler.gc(3600) == 1
    with handler.lock(ended_under_its_lock, lock_seconds=5, wait_seconds=1):
        handler.destroy(ended_under_its_lock)  # a logout, with block
    assert list(folder.iterdir()) == []


def test_gc_removes_only_names_satchel_writes(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    live, idle, orphaned = new_storage_id(), new_storage_id(), new_storage_id()
    for key in (live, idle):
        handler.write(key, "session")
        with handler.lock(key, lock_seconds=5, wait_seconds=1):
            handler.write_existing(key, "saved")
    (folder / f".lock-{orphaned}").write_text("")  # its process died between two unlinks
    dead_writer = folder / ".tmp-999999999-abcd_123"  # no such pid
    dead_writer.write_text("half a payload")
    target = tmp_path / "target"
    target.write_text("linked to")
    foreign = {
        "Makefile": "all:",
        "id_rsa": "key",
        new_storage_id().upper(): "upper case",
        new_storage_id()[:-1]: "63 digits",
        f".lock-{new_storage_id().upper()}": "not a lock of ours",
        ".lock-Makefile": "not a lock of ours",
        ".tmp-notes": "not a write of ours",
        ".tmp-12-abcdefgh.txt": "not a write of ours",
        ".tmp-abc-abcdefgh": "not a write of ours",
    }
    for name, text in foreign.items():
        (folder / name).write_text(text)
    link, subfolder = folder / new_storage_id(), folder / new_storage_id()
    link.symlink_to(target)
    subfolder.mkdir()
    for path in folder.iterdir():
        if path.name != live and path.name != f".lock-{live}":
            make_idle(path, 30 * 86400)
    assert handler.gc(3600) == 1
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [live, f".lock-{live}", *foreign, link.name, subfolder.name]
    )
    assert {name: (folder / name).read_text() for name in foreign} == foreign
    assert target.read_text() == "linked to"


def test_gc_keeps_a_session_idle_for_less_than_the_lifetime(tmp_path: Path) -> None:
    """Idle between half the lifetime and the lifetime: kept; idle past it: removed."""
    folder = tmp_path / "sessions"
    manager = SessionManager(SessionConfig(files=str(folder), lifetime=60, lottery=(0, 1)))
    lifetime = manager.config.lifetime_seconds
    cookies = {}
    for name in ("three quarters", "one and a quarter"):
        session = manager.start(None)
        session.put("name", name)
        session.save()
        cookies[name] = session.id
    make_idle(folder / manager.storage_key(cookies["three quarters"]), 0.75 * lifetime)
    make_idle(folder / manager.storage_key(cookies["one and a quarter"]), 1.25 * lifetime)
    assert manager.collect_garbage() == 1
    assert [path.name for path in folder.iterdir()] == [
        manager.storage_key(cookies["three quarters"])
    ]
    assert manager.start(cookies["three quarters"]).get("name") == "three quarters"


def test_a_link_where_a_session_file_belongs_is_never_touched(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    handler.write(new_storage_id(), "makes the folder")
    target = tmp_path / "target"
    target.write_text("linked to")
    make_idle(target, 60)
    mtime = target.stat().st_mtime
    key = new_storage_id()
    (folder / key).symlink_to(target)
    assert handler.read(key) == ""
    assert handler.write_existing(key, "through the link?") is False
    assert (target.read_text(), target.stat().st_mtime) == ("linked to", mtime)
    assert handler.destroy(key) is True  # removes the link itself
    assert not os.path.lexists(folder / key)
    assert target.read_text() == "linked to"


def test_a_fifo_where_a_session_file_belongs_never_blocks_a_read(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    handler = FileSessionHandler(folder, 3600)
    handler.write(new_storage_id(), "makes the folder")
    key = new_storage_id()
    os.mkfifo(folder / key, 0o600)
    results: list[str] = []
    reader = threading.Thread(target=lambda: results.append(handler.read(key)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # free the stuck reader so the test run can end
        os.close(os.open(folder / key, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
        pytest.fail("a read waited on a FIFO planted in the sessions folder")
    assert results == [""]


# A helper process incrementing a counter file (outside the sessions folder)
# under the lock of an id that has no session, so the lock file comes and goes.
LOCKED_INCREMENTS = """
import sys, time
from pathlib import Path
from satchel.drivers import file as file_driver
from satchel.drivers.file import FileSessionHandler
handler = FileSessionHandler(sys.argv[1], 3600)
key, counter, rounds = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
for _ in range(rounds):
    with handler.lock(key, lock_seconds=30, wait_seconds=30):
        value = int(counter.read_text())
        time.sleep(0.001)
        counter.write_text(str(value + 1))
"""


def test_the_lock_of_an_unknown_id_excludes_across_processes_while_its_file_comes_and_goes(
    tmp_path: Path,
) -> None:
    # Each release removes the lock file and the next acquire makes a new one: a
    # process that opened the old file must never hold its flock beside a
    # holder of the new one, or two increments would overlap and one be lost.
    folder = tmp_path / "sessions"
    folder.mkdir(mode=0o700)
    counter = tmp_path / "counter"
    counter.write_text("0")
    key, processes, rounds = new_storage_id(), 3, 60
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", LOCKED_INCREMENTS, str(folder), key, str(counter), str(rounds)]
        )
        for _ in range(processes)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    assert int(counter.read_text()) == processes * rounds
    assert list(folder.iterdir()) == []
