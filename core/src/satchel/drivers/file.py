"""The ``file`` driver (the default): one file per session in a private folder."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from pathlib import Path

from satchel.config import SessionConfig
from satchel.errors import SessionBackendError
from satchel.handler import SessionHandler

# Core hands drivers SHA-256 hex digests; anything else that could name a path
# outside the folder is refused here too, as a second fence.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600


class FileSessionHandler(SessionHandler):
    """Sessions as files named by the id's digest.

    Writes go to a temporary file in the same folder and are moved over the
    old one with ``os.replace``, so a reader sees the old or the new payload,
    never a partial one. The folder is created 0700 and files are 0600.
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
            fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.folder)  # mode 0600
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
        if path is None:
            return True
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(f"cannot delete a session file: {exc.strerror or exc}") from exc
        return True

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
                if entry.name.startswith(TEMP_PREFIX):
                    # Left by a writer that died mid-write; never counted as a session.
                    if mtime < now - STALE_TEMP_SECONDS:
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
