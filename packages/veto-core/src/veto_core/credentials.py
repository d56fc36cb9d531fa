"""Who is acting at the command line (DESIGN.md 2.8): nobody is taken on trust.

A vote cast from the CLI carries one of three credentials:

- an API token of the approver (``veto users token``; ``--token`` or ``$VETO_TOKEN``),
- the approver's dashboard password (prompted, never a flag value),
- the local admin key of an operator (``~/.veto/admin.key``, mode 0600, created on
  first use), in which case the vote records the operator as well as ``--as``.

The admin key is a 256-bit random secret in a file only its owner can read. A
database accepts the first admin key presented to it and, after that, only keys
registered in it (``veto users admin-key``), so a second person who can open the
database cannot mint an operator key of their own.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ADMIN_KEY_NAME",
    "ENV_TOKEN",
    "ENV_URL",
    "AdminKey",
    "CredentialError",
    "admin_key_path",
    "load_admin_key",
]

ADMIN_KEY_NAME = "admin.key"
ENV_TOKEN = "VETO_TOKEN"
ENV_URL = "VETO_URL"
_KEY_BYTES = 32


class CredentialError(Exception):
    """A credential is missing, malformed, unsafe (a key file others can read) or wrong."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AdminKey:
    """The operator's local admin key. ``secret`` never leaves this process; databases
    keep only the fingerprint."""

    path: Path
    secret: bytes
    owner: str  # the OS user holding the key, recorded with the votes it casts

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(b"veto-admin-key-v1:" + self.secret).hexdigest()

    @property
    def operator(self) -> str:
        """How a vote names the operator: OS user and key fingerprint."""
        return f"{self.owner} (admin key {self.fingerprint[:16]})"


def admin_key_path() -> Path:
    """``~/.veto/admin.key`` of the current user."""
    return Path.home() / ".veto" / ADMIN_KEY_NAME


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return  # another process created it first: load theirs
    try:
        os.write(fd, (secrets.token_hex(_KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_admin_key(path: Path | None = None, *, create: bool = True) -> AdminKey:
    """The admin key at ``path`` (default ``~/.veto/admin.key``), created with mode 0600
    if missing and ``create``. Refuses a symlink, a file of another user, a file that
    group or others may read or write, and anything but 64 hex digits."""
    path = path or admin_key_path()
    if create and not path.exists() and not path.is_symlink():
        _create(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise CredentialError(f"no admin key at {path}") from None
    except OSError as exc:
        raise CredentialError(f"cannot open the admin key {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialError(f"the admin key {path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CredentialError(f"the admin key {path} belongs to another user")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise CredentialError(
                f"the admin key {path} has mode {mode:04o}: others may read it, so it is "
                f"refused; run `chmod 600 {path}` if it has not leaked, else delete it"
            )
        raw = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        secret = bytes.fromhex(raw)
    except ValueError:
        secret = b""
    if len(secret) != _KEY_BYTES:
        raise CredentialError(f"the admin key {path} is malformed (expected 64 hex digits)")
    return AdminKey(path=path, secret=secret, owner=getpass.getuser())
