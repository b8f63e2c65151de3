"""The ``file`` driver (the default): one file per session in a private folder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from satchel.config import SessionConfig
from satchel.errors import SessionBackendError
from satchel.handler import RequestMetadata, SessionHandler
from satchel.locking import new_lock_token, wait_for_lock

# Core hands drivers SHA-256 hex digests; anything else that could name a path
# outside the folder is refused here too, as a second fence.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
TEMP_PREFIX = ".tmp-"
LOCK_PREFIX = ".lock-"
STALE_TEMP_SECONDS = 3600


class FileSessionHandler(SessionHandler):
    """Sessions as files named by the id's digest.

    Writes go to a temporary file in the same folder and are moved over the
    old one with ``os.replace``, so a reader sees the old or the new payload,
    never a partial one. The folder is created 0700 and files are 0600.

    Session blocking uses a lock file per session that records its holder's
    token and expiry; ``flock`` guards only the brief check-and-set, so a
    holder that died or hangs loses the lock after ``lock_seconds``, and a
    late holder never releases a lock someone else took since. The same brief
    ``flock`` makes ``write_existing`` (check, then replace) and ``destroy``
    atomic with respect to each other, so a late save never undoes a logout.
    No ``flock`` is held while waiting or across a request, so these never
    wait on a held blocking lock.
    """

    def __init__(self, folder: str | os.PathLike[str], lifetime_seconds: int) -> None:
        self.folder = Path(folder)
        self.lifetime_seconds = lifetime_seconds
        self._ready = False

    @classmethod
    def from_config(cls, config: SessionConfig) -> FileSessionHandler:
        return cls(config.files, config.lifetime_seconds)

    def _error(self, message: str) -> SessionBackendError:
        return SessionBackendError("file", str(self.folder), message)

    def _ensure_folder(self) -> None:
        if self._ready:
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot create the sessions folder: {exc.strerror or exc}") from exc
        self._ready = True

    def _path(self, session_id: str) -> Path | None:
        if not _SAFE_NAME.fullmatch(session_id):
            return None
        return self.folder / session_id

    def read(self, session_id: str) -> str:
        path = self._path(session_id)
        if path is None:
            return ""
        try:
            with path.open("r", encoding="utf-8") as stream:
                if os.fstat(stream.fileno()).st_mtime < time.time() - self.lifetime_seconds:
                    return ""
                return stream.read()
        except FileNotFoundError:
            return ""
        except UnicodeDecodeError:
            return ""  # not ours; core treats "" as no session
        except OSError as exc:
            raise self._error(f"cannot read a session file: {exc.strerror or exc}") from exc

    def write(self, session_id: str, data: str) -> bool:
        path = self._path(session_id)
        if path is None:
            raise ValueError("refusing a session id that is not a safe file name")
        self._ensure_folder()
        temp_name: str | None = None
        try:
            # The writer's pid in the name lets gc clear what a killed writer left.
            prefix = f"{TEMP_PREFIX}{os.getpid()}-"
            fd, temp_name = tempfile.mkstemp(prefix=prefix, dir=self.folder)  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(data)
            os.replace(temp_name, path)
            temp_name = None
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, "") if exc.errno else ""
            raise self._error(
                f"cannot write a session file ({reason or type(exc).__name__}: {exc.strerror or exc}); "
                "the earlier session is unchanged"
            ) from exc
        finally:
            if temp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
        return True

    def _is_live(self, path: Path) -> bool:
        try:
            return path.stat().st_mtime >= time.time() - self.lifetime_seconds
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._error(f"cannot check a session file: {exc.strerror or exc}") from exc

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        path = self._path(session_id)
        # The first check, unlocked, spares an unknown id a lock file.
        if path is None or not self._is_live(path):
            return False
        with self._brief_lock(session_id):
            # destroy takes the same lock, so it cannot land between check and replace.
            if not self._is_live(path):
                return False
            return self.write(session_id, data)

    def touch(self, session_id: str) -> bool:
        path = self._path(session_id)
        if path is None:
            return False
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._error(f"cannot touch a session file: {exc.strerror or exc}") from exc
        return True

    def destroy(self, session_id: str) -> bool:
        path = self._path(session_id)
        # A missing file needs no lock: write_existing never creates one.
        if path is None or not os.path.lexists(path):
            return True
        with self._brief_lock(session_id):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise self._error(f"cannot delete a session file: {exc.strerror or exc}") from exc
        return True

    @contextlib.contextmanager
    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> Iterator[None]:
        if not _SAFE_NAME.fullmatch(session_id):
            raise ValueError("refusing a session id that is not a safe file name")
        self._ensure_folder()
        path = self._lock_path(session_id)
        token = new_lock_token()

        def try_acquire() -> bool:
            return self._update_lock_file(path, token, lock_seconds, acquire=True)

        wait_for_lock(try_acquire, wait_seconds=wait_seconds, description="a file session")
        try:
            yield
        finally:
            self._update_lock_file(path, token, lock_seconds, acquire=False)

    def _update_lock_file(
        self, path: Path, token: str, lock_seconds: float, *, acquire: bool
    ) -> bool:
        """Under a brief ``flock``: take the lock if free or expired, or release it if ours."""
        with self._flocked(path) as fd:
            holder, _, expiry = os.pread(fd, 128, 0).decode("ascii", "replace").partition(" ")
            now = time.time()
            try:
                held = bool(holder) and float(expiry) > now
            except ValueError:
                held = False  # unreadable: treat as free
            if acquire:
                if held and holder != token:
                    return False
                record = f"{token} {now + lock_seconds:.6f}".encode("ascii")
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
                return True
            if holder == token:
                os.ftruncate(fd, 0)
            return True

    def _lock_path(self, session_id: str) -> Path:
        return self.folder / f"{LOCK_PREFIX}{session_id}"

    def _brief_lock(self, session_id: str) -> contextlib.AbstractContextManager[int]:
        """The session's lock file under ``flock`` for one short step (not session blocking)."""
        return self._flocked(self._lock_path(session_id))

    @contextlib.contextmanager
    def _flocked(self, path: Path) -> Iterator[int]:
        """Hold an exclusive ``flock`` on the lock file at ``path``; yields its descriptor."""
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise self._error(f"cannot open a lock file: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # gc may have unlinked the file between our open and our flock
                # (it unlinks only under the flock): then lock the new one.
                if _same_file(fd, path):
                    yield fd
                    return
            finally:
                os.close(fd)  # closing drops the flock

    def gc(self, lifetime: int) -> int:
        now = time.time()
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if entry.name.startswith(LOCK_PREFIX):
                    # A lock unused for an hour (every acquire rewrites it).
                    if mtime < now - STALE_TEMP_SECONDS:
                        _unlink_unless_flocked(entry.path)
                    continue
                if entry.name.startswith(TEMP_PREFIX):
                    # Left by a writer that died mid-write; never counted as a session.
                    if mtime < now - STALE_TEMP_SECONDS or _writer_died(entry.name):
                        os.unlink(entry.path)
                    continue
                if entry.name.startswith(".") or not _SAFE_NAME.fullmatch(entry.name):
                    continue
                if mtime < now - lifetime:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # removed by a concurrent gc or destroy
        return removed


def _same_file(fd: int, path: Path) -> bool:
    """True while ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _unlink_unless_flocked(path: str) -> None:
    """Remove a lock file unless someone holds its ``flock`` right now.

    Unlinking under the ``flock`` means a process that opened the old file and
    then gets the ``flock`` sees the name gone (``_same_file``) and starts over,
    so two processes can never each hold a ``flock`` on a different file.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # in use this very moment: not stale
        if _same_file(fd, Path(path)):
            os.unlink(path)
    finally:
        os.close(fd)


def _writer_died(name: str) -> bool:
    """True for a temporary file whose writing process no longer exists."""
    if not name.startswith(TEMP_PREFIX):
        return False
    pid_text = name[len(TEMP_PREFIX) :].partition("-")[0]
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return False
