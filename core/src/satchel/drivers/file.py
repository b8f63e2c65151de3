"""The ``file`` driver (the default): one file per session in a private folder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from satchel.config import SessionConfig
from satchel.errors import ConfigError, SessionBackendError
from satchel.handler import RequestMetadata, SessionHandler
from satchel.ids import log_digest
from satchel.locking import TokenLock

logger = logging.getLogger("satchel")

# The only names the driver writes, and so the only ones gc ever removes: a
# session file (the SHA-256 hex digest core hands drivers), its lock file (made
# for session blocking), and
# the temporary file of a write in progress (the writer's pid, then eight random
# characters). An id of any other shape never becomes a path.
TEMP_PREFIX = ".tmp-"
LOCK_PREFIX = ".lock-"
_SESSION_NAME = re.compile(r"[0-9a-f]{64}")
_LOCK_NAME = re.compile(re.escape(LOCK_PREFIX) + r"([0-9a-f]{64})")
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"([0-9]+)-[a-z0-9_]{8}")
STALE_TEMP_SECONDS = 3600
_TEMP_ATTEMPTS = 100
# Every open in the folder: never through a symbolic link planted there, and
# never stuck on a FIFO planted there.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What open(O_NOFOLLOW) fails with on a symbolic link (EMLINK on FreeBSD).
_LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK})


class _NotAFile(Exception):
    """A symbolic link, FIFO or other non-file stands where one of satchel's files belongs."""


def _check_folder(folder: Path) -> bool:
    """Refuse a sessions folder that someone else could write to; False when it does not exist.

    Whoever can write to the folder can plant, replace or remove sessions, so
    a folder writable by its group or by everyone, or owned by another user, is
    a :class:`~satchel.ConfigError` naming it (key ``files``).
    """
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(
            "files", f"cannot use the sessions folder {folder}: {exc.strerror}"
        ) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError("files", f"{folder} is not a folder")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            "files",
            f"the sessions folder {folder} belongs to another user (uid {info.st_uid}; this "
            f"process runs as uid {os.geteuid()}), who could read, plant or remove sessions; "
            "give satchel a folder of its own user",
        )
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable:
        whom = "everyone" if writable & stat.S_IWOTH else "its group"
        raise ConfigError(
            "files",
            f"the sessions folder {folder} is writable by {whom} (mode "
            f"{stat.S_IMODE(info.st_mode):04o}), who could plant or remove sessions; "
            f"make it private (chmod 700 {folder})",
        )
    return True


class FileSessionHandler(SessionHandler):
    """Sessions as files named by the id's digest.

    Writes go to a temporary file in the same folder and are moved over the
    old one with ``os.replace``, so a reader sees the old or the new payload,
    never a partial one. The folder is created 0700 and files are 0600; a
    folder others can write to is refused when the handler is built.

    Nothing in the folder is opened through a symbolic link (``O_NOFOLLOW``;
    temporary files with ``O_CREAT | O_EXCL | O_NOFOLLOW``): a link where a
    session file belongs reads as no session, one where a lock file belongs is
    replaced by a real lock file; neither target is ever opened.

    Session blocking uses a lock file per session that records its holder's
    token and expiry; ``flock`` guards only the brief check-and-set, so a
    holder that died or hangs loses the lock after ``lock_seconds``, and a
    late holder never releases a lock someone else took since. A brief
    ``flock`` on the session file itself makes ``write_existing`` (check, then
    replace), ``destroy`` and gc's removal atomic with respect to each other,
    so a late save never undoes a logout; it costs a save one open and no
    lock file. No ``flock`` is held while waiting or across a request, so
    these never wait on a held blocking lock.

    A lock file lives while its session is stored or while a request holds its
    lock, never longer: whoever holds the ``flock`` last once neither is true
    removes it. So a request with an unknown id leaves nothing behind (its
    lock file goes when it releases the lock), and a session's lock file goes
    with the session (``destroy``, gc).
    """

    # A session file is small and local: the async twin reads and writes it on the
    # event loop, where a worker-thread hop would cost more than the file I/O.
    runs_on_event_loop = True

    def __init__(self, folder: str | os.PathLike[str], lifetime_seconds: int) -> None:
        self.folder = Path(folder)
        self._prefix = os.path.join(self.folder, "")
        self.lifetime_seconds = lifetime_seconds
        self._ready = _check_folder(self.folder)

    @classmethod
    def from_config(cls, config: SessionConfig) -> FileSessionHandler:
        return cls(config.files, config.lifetime_seconds)

    def _error(self, message: str) -> SessionBackendError:
        return SessionBackendError("file", str(self.folder), message)

    def _ensure_folder(self) -> None:
        if self._ready:
            return
        try:
            self.folder.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            _check_folder(self.folder)  # made by someone else since the handler was built
        except OSError as exc:
            raise self._error(f"cannot create the sessions folder: {exc.strerror or exc}") from exc
        self._ready = True

    def _path(self, session_id: str) -> str | None:
        if not _SESSION_NAME.fullmatch(session_id):
            return None
        return self._prefix + session_id  # a plain string: no Path built per request

    def _lock_path(self, session_id: str) -> Path:
        return self.folder / f"{LOCK_PREFIX}{session_id}"

    def _warn_not_a_file(self, session_id: str, what: str) -> None:
        logger.warning(
            "satchel: a symbolic link or other non-file sits where the %s of session %s "
            "belongs in %s; it is never followed",
            what,
            log_digest(session_id),
            self.folder,
        )

    def read(self, session_id: str) -> str:
        path = self._path(session_id)
        if path is None:
            return ""
        try:
            opened = _open_plain_file(path, os.O_RDONLY)
        except _NotAFile:
            self._warn_not_a_file(session_id, "session file")
            return ""  # read as no session: core issues a fresh one
        except OSError as exc:
            raise self._error(f"cannot read a session file: {exc.strerror or exc}") from exc
        if opened is None:
            return ""
        fd, info = opened
        try:
            if info.st_mtime < time.time() - self.lifetime_seconds:
                return ""
            return _read_all(fd, info.st_size).decode("utf-8")
        except UnicodeDecodeError:
            return ""  # not ours; core treats "" as no session
        except OSError as exc:
            raise self._error(f"cannot read a session file: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def write(self, session_id: str, data: str) -> bool:
        path = self._path(session_id)
        if path is None:
            raise ValueError("refusing a session id that is not a safe file name")
        self._ensure_folder()
        temp_name: str | None = None
        try:
            fd, temp_name = create_temp_file(self.folder)
            try:
                _write_all(fd, data.encode("utf-8"))
            finally:
                os.close(fd)
            # rename replaces whatever has the name, a planted link included, never its target.
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

    def _stored(self, path: str | Path) -> os.stat_result | None:
        """The session file's status, or None when no plain file is stored there."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(f"cannot check a session file: {exc.strerror or exc}") from exc
        return info if stat.S_ISREG(info.st_mode) else None

    def write_existing(
        self, session_id: str, data: str, metadata: RequestMetadata | None = None
    ) -> bool:
        path = self._path(session_id)
        if path is None:
            return False
        # destroy and gc remove the file under this same flock, so neither can land
        # between the check and the replace.
        with self._session_flocked(path) as info:
            if info is None or info.st_mtime < time.time() - self.lifetime_seconds:
                return False
            return self.write(session_id, data)

    def destroy(self, session_id: str) -> bool:
        path = self._path(session_id)
        if path is None:
            return True
        # Removed under the session file's flock, which write_existing takes too, so a
        # late save cannot bring it back.
        with self._session_flocked(path):
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # a planted link goes, never its target
            except OSError as exc:
                raise self._error(f"cannot delete a session file: {exc.strerror or exc}") from exc
        self._drop_lock_file(session_id)
        return True

    def _drop_lock_file(self, session_id: str, *, wait: bool = True) -> None:
        """Remove the lock file of a session no longer stored, unless a request holds its lock."""
        # A brief flock does it on the way out; no lock file, nothing to do and none made.
        with self._flocked(session_id, create=False, wait=wait):
            pass

    @contextlib.contextmanager
    def _session_flocked(self, path: str, *, wait: bool = True) -> Iterator[os.stat_result | None]:
        """Hold an exclusive ``flock`` on the stored session file itself for one brief step.

        Yields the file's status; ``None`` when no plain file is stored there
        (a link or FIFO is no session, and is never followed), or when ``wait``
        is false and someone holds the ``flock``. A write replaces the file (a
        new inode), so a process that opened the old one and gets its ``flock``
        after sees the name moved on and starts over.
        """
        with self._flock_file(path, os.O_RDONLY, wait=wait, what="session file") as held:
            yield None if held is None else held[1]

    def lock(self, session_id: str, *, lock_seconds: float, wait_seconds: float) -> TokenLock:
        if self._path(session_id) is None:
            raise ValueError("refusing a session id that is not a safe file name")
        self._ensure_folder()
        return TokenLock(
            lambda token: self._update_lock_file(session_id, token, lock_seconds, acquire=True),
            # For a session that is not stored (an unknown id), releasing also removes
            # the lock file: the request leaves nothing behind.
            lambda token: self._update_lock_file(session_id, token, lock_seconds, acquire=False),
            wait_seconds=wait_seconds,
            description="a file session",
        )

    def _update_lock_file(
        self, session_id: str, token: str, lock_seconds: float, *, acquire: bool
    ) -> bool:
        """Under a brief ``flock``: take the lock if free or expired, or release it if ours."""
        with self._flocked(session_id, create=acquire) as fd:
            if fd is None:
                return True  # no lock file: nothing of ours to release
            holder, held = _lock_record(fd)
            if acquire:
                if held and holder != token:
                    return False
                record = f"{token} {time.time() + lock_seconds:.6f}".encode("ascii")
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
                return True
            if holder == token:
                os.ftruncate(fd, 0)
            return True

    @contextlib.contextmanager
    def _flocked(self, session_id: str, *, create: bool, wait: bool = True) -> Iterator[int | None]:
        """Hold an exclusive ``flock`` on the session's lock file for one brief step.

        Yields the lock file's descriptor; ``None`` when there is no lock file
        and ``create`` is false, or when ``wait`` is false and someone holds the
        ``flock``. On the way out, a lock file whose session is not stored and
        that holds no live lock is removed, still under the ``flock``: a lock
        file lives while its session does or while a request holds it, never
        longer. A lock file is only ever unlinked under its ``flock``, so a process
        that opened it before and gets the ``flock`` after sees the name gone
        (``_same_file``) and starts over: two processes never each hold a
        ``flock`` on a different file.
        """
        path = self._lock_path(session_id)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        with self._flock_file(
            path, flags, wait=wait, what="lock file", session_id=session_id
        ) as held:
            if held is None:
                yield None
                return
            fd = held[0]
            try:
                yield fd
            finally:
                gone = self._stored(self.folder / session_id) is None
                if gone and not _lock_record(fd)[1]:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    @contextlib.contextmanager
    def _flock_file(
        self, path: str | Path, flags: int, *, wait: bool, what: str, session_id: str | None = None
    ) -> Iterator[tuple[int, os.stat_result] | None]:
        """Open ``path`` (never through a link) and hold its exclusive ``flock``.

        Yields the descriptor and status while ``path`` still names the file
        held; ``None`` when there is no plain file (``O_CREAT`` absent from
        ``flags``) or when ``wait`` is false and someone holds the ``flock``. A
        file replaced or removed between the open and the ``flock`` is opened
        again. Given ``session_id`` (a lock file), a link or other non-file at
        ``path`` is removed, with a warning, and a real file made in its place.
        """
        while True:
            try:
                opened = _open_plain_file(path, flags)
            except _NotAFile:
                if session_id is None:
                    opened = None
                else:
                    self._warn_not_a_file(session_id, what)
                    self._remove_non_file(Path(path))
                    continue
            except OSError as exc:
                raise self._error(f"cannot open a {what}: {exc.strerror or exc}") from exc
            if opened is None:
                yield None
                return
            fd, info = opened
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield None  # in use this very moment
                    return
                if _same_file(info, path):
                    yield opened
                    return
            finally:
                os.close(fd)  # closing drops the flock

    def _remove_non_file(self, path: Path) -> None:
        """Remove a link (or FIFO, …) that sits where a lock file belongs: the name only."""
        folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # Under the folder's flock, so that of two processes that both met the
            # link, the second never removes the real lock file the first made since.
            fcntl.flock(folder_fd, fcntl.LOCK_EX)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                return
            if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
                os.unlink(path)  # unlink never follows a link
        except OSError as exc:
            raise self._error(f"cannot replace a lock file: {exc.strerror or exc}") from exc
        finally:
            os.close(folder_fd)

    def gc(self, lifetime: int) -> int:
        """Remove the sessions idle for more than ``lifetime`` seconds, with their lock files.

        Only names this driver writes are ever removed (a 64-digit lowercase hex
        session file, its ``.lock-`` file, a temporary file of a write that died):
        anything else in the folder stays, however old, and so do links and
        folders whatever their name. A session in use at this very moment (its
        ``flock`` held) is left for the next run.
        """
        now = time.time()
        cutoff = now - lifetime
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                name = entry.name
                if _SESSION_NAME.fullmatch(name):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        removed += self._remove_idle(name, cutoff)
                elif lock := _LOCK_NAME.fullmatch(name):
                    # Left by a process that died holding it: a brief flock removes it,
                    # as every step does once neither its session nor a live lock needs it.
                    self._drop_lock_file(lock[1], wait=False)
                elif temp := _TEMP_NAME.fullmatch(name):
                    # Left by a writer that died mid-write; never counted as a session.
                    stale = entry.stat(follow_symlinks=False).st_mtime < now - STALE_TEMP_SECONDS
                    if stale or _process_gone(int(temp[1])):
                        os.unlink(entry.path)
            except FileNotFoundError:
                continue  # removed by a concurrent gc or destroy
        return removed

    def _remove_idle(self, session_id: str, cutoff: float) -> bool:
        """Remove a session idle since before ``cutoff`` (and then its lock file)."""
        path = self._prefix + session_id
        with self._session_flocked(path, wait=False) as info:
            # None: in use this very moment, or removed since the folder was listed.
            idle = info is not None and info.st_mtime < cutoff
            if idle:
                os.unlink(path)
        if idle:
            self._drop_lock_file(session_id, wait=False)
        return idle


def create_temp_file(folder: Path) -> tuple[int, str]:
    """A new temporary file in ``folder`` for a write: its descriptor and path.

    Opened with ``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600, so it is always a
    new plain file of this process, never a link or file someone planted. The
    writer's pid in the name lets gc clear what a killed writer left.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TEMP_ATTEMPTS):
        name = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue  # taken by another writer this very moment: draw again
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _read_all(fd: int, size: int) -> bytes:
    """Everything in the file open as ``fd``, which ``fstat`` gave ``size`` bytes."""
    data = os.read(fd, size + 1)  # one more, so a file grown since is seen to be
    if len(data) <= size:
        return data
    chunks = [data]
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_plain_file(path: str | Path, flags: int) -> tuple[int, os.stat_result] | None:
    """Open ``path`` without following a link: its descriptor and status, or None if absent.

    Raises :class:`_NotAFile` for a symbolic link or anything but a plain file.
    """
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, 0o600)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise _NotAFile from exc
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _NotAFile
    return fd, info


def _lock_record(fd: int) -> tuple[str, bool]:
    """The token in a lock file, and whether that holder's lock is still live."""
    holder, _, expiry = os.pread(fd, 128, 0).decode("ascii", "replace").partition(" ")
    try:
        return holder, bool(holder) and float(expiry) > time.time()
    except ValueError:
        return holder, False  # unreadable: treat as free


def _same_file(opened: os.stat_result, path: str | Path) -> bool:
    """True while ``path`` still names the open file whose ``fstat`` gave ``opened``."""
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists (the writer of a temporary file died)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    except OverflowError:
        return False  # no pid of ours: left to the age rule
    return False
