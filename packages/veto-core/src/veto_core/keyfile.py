"""A 256-bit secret in a file only its owner can read (``~/.veto/*.key``, mode 0600).

Shared by the operator's admin key (``credentials.py``) and the policy cache's HMAC
key (``policy/cache.py``). Light on purpose: `veto check` reads the cache key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["KEY_BYTES", "KeyFileError", "read_private_key"]

KEY_BYTES = 32


class KeyFileError(Exception):
    """The key file is missing, unsafe (others may read it, a symlink, another user's)
    or malformed."""


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return  # another process created it first: load theirs
    try:
        os.write(fd, (os.urandom(KEY_BYTES).hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_key(path: Path, *, create: bool, what: str) -> bytes:
    """The secret at ``path``, created with mode 0600 if missing and ``create``. Refuses
    a symlink, a file of another user, a file that group or others may read or write,
    and anything but 64 hex digits; ``what`` names the key in messages."""
    if create and not path.exists() and not path.is_symlink():
        _create(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KeyFileError(f"no {what} at {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open the {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"the {what} {path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise KeyFileError(f"the {what} {path} belongs to another user")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"the {what} {path} has mode {mode:04o}: others may read it, so it is "
                f"refused; run `chmod 600 {path}` if it has not leaked, else delete it"
            )
        raw = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        secret = bytes.fromhex(raw)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"the {what} {path} is malformed (expected 64 hex digits)")
    return secret
