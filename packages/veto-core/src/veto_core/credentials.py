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
from dataclasses import dataclass
from pathlib import Path

from .keyfile import KeyFileError, read_private_key

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


def load_admin_key(path: Path | None = None, *, create: bool = True) -> AdminKey:
    """The admin key at ``path`` (default ``~/.veto/admin.key``), created with mode 0600
    if missing and ``create``. Refuses a symlink, a file of another user, a file that
    group or others may read or write, and anything but 64 hex digits."""
    path = path or admin_key_path()
    try:
        secret = read_private_key(path, create=create, what="admin key")
    except KeyFileError as exc:
        raise CredentialError(str(exc)) from None
    return AdminKey(path=path, secret=secret, owner=getpass.getuser())
