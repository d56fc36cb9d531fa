"""Ed25519 signed checkpoints, tombstones and tenant registries (DESIGN.md 4).

The signing key is never stored in the audited database: someone who can write
the database must not be able to re-sign a rewritten chain. It comes from, in
order:

1. ``$VETO_AUDIT_SIGNING_KEY`` or ``veto.toml`` ``[audit] signing_key``: the path
   of a key file (PEM, PKCS#8), or base64 of a 32-byte seed;
2. a key file next to a file store (``<db dir>/audit-signing.key``), or
   ``~/.veto/audit-signing.key`` for server stores, created 0600 on first use;
3. any object with ``public_key_hex()`` and ``sign(message)`` passed to
   ``AuditLog(signer=...)``: a KMS or HSM holds the key and Veto never sees it.

Verification checks every signature against *pinned* public keys (``veto.toml``
``[audit] public_key``, ``--public-key``); a checkpoint signed by any other key
is forged, however valid its signature.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from veto_core.audit.errors import AuditUnavailable
from veto_core.audit.record import canonical_json
from veto_core.audit.sink import Checkpoint, SinkConfig

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography is imported when a key is used, not with the audit trail: commands
# that only read (`veto approvals list`) start without it (DESIGN.md 8).

__all__ = [
    "ENV_SIGNING_KEY",
    "KEY_FILE_NAME",
    "KeyFileSigner",
    "Signer",
    "default_key_path",
    "load_signer",
    "load_signer_plugin",
    "public_key_hex",
    "verify_signature",
    "write_key_file",
]

ENV_SIGNING_KEY = "VETO_AUDIT_SIGNING_KEY"
KEY_FILE_NAME = "audit-signing.key"


@runtime_checkable
class Signer(Protocol):
    """What signs checkpoints: a local key, or a KMS-style plugin object."""

    def public_key_hex(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyFileSigner:
    """An Ed25519 key held in this process; ``source`` says where it came from."""

    key: Ed25519PrivateKey
    source: str

    def public_key_hex(self) -> str:
        return public_key_hex(self.key)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def public_key_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def default_key_path(config: SinkConfig) -> Path:
    """Next to a file store's database; ``~/.veto/`` for server stores."""
    if config.scheme in ("sqlite", "jsonl"):
        from veto_core.audit.jsonl import jsonl_path
        from veto_core.audit.sqlite import sqlite_path

        path = sqlite_path(config.url) if config.scheme == "sqlite" else jsonl_path(config.url)
        return path.expanduser().absolute().parent / KEY_FILE_NAME
    return Path.home() / ".veto" / KEY_FILE_NAME


def _looks_like_seed(value: str) -> bytes | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def load_signer(
    configured: str | None, sink: SinkConfig, *, create: bool = True
) -> KeyFileSigner | None:
    """The signing key named by ``configured`` (or the default key file).

    ``create=False`` (verification) never writes a key: ``None`` if there is none.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    configured = configured or os.environ.get(ENV_SIGNING_KEY) or None
    if configured is not None:
        seed = _looks_like_seed(configured)
        if seed is not None and not Path(configured).exists():
            return KeyFileSigner(
                key=Ed25519PrivateKey.from_private_bytes(seed), source=ENV_SIGNING_KEY
            )
        path = Path(configured).expanduser()
    else:
        path = default_key_path(sink)
    if not path.exists():
        if not create:
            return None
        write_key_file(path, secrets.token_bytes(32))
    return KeyFileSigner(key=_read_key_file(path), source=str(path))


def load_signer_plugin(spec: str) -> Signer:
    """``module:callable`` (``[audit] signer``): a KMS/HSM-backed signer object."""
    import importlib

    module, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
        signer = factory()
    except Exception as exc:
        raise AuditUnavailable(f"audit signer {spec!r} could not be loaded: {exc!r}") from exc
    if not isinstance(signer, Signer):
        raise AuditUnavailable(
            f"audit signer {spec!r} returned {type(signer).__name__}, which lacks "
            "public_key_hex() and sign(message)"
        )
    return signer


def _read_key_file(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise AuditUnavailable(f"audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditUnavailable(f"audit signing key {path} is not an Ed25519 private key")
    return key


def write_key_file(path: Path, seed: bytes) -> bool:
    """Create ``path`` (0600) holding ``seed``; False if it already exists.

    Written to a temporary file and hard-linked into place, so concurrent
    processes never read a half-written key and exactly one of them wins.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    except OSError as exc:
        raise AuditUnavailable(f"cannot create audit signing key {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def sign(signer: Signer, payload: dict[str, object]) -> str:
    return signer.sign(canonical_json(payload)).hex()


def verify_signature(cp: Checkpoint, pinned: Collection[str] = ()) -> str | None:
    """``None`` if the checkpoint's signature is valid (by a pinned key, if any), else why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if pinned and cp.public_key.lower() not in pinned:
        return f"signed by key {cp.public_key[:16]}…, not a pinned key (forged)"
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.public_key))
        pub.verify(bytes.fromhex(cp.signature), canonical_json(cp.payload()))
    except (ValueError, InvalidSignature):
        return "invalid signature"
    return None
