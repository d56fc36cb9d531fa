"""Ed25519 signed checkpoints and tombstones.

The signing key comes from ``$VETO_AUDIT_SIGNING_KEY`` (base64 of a 32-byte seed,
or the path of a PEM private key) when set, otherwise from the store itself.
A key kept outside the database, with its public key pinned at verification
(``veto audit verify --public-key``), is what makes checkpoints evidence
against someone who can write to the database.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING

from veto_core.audit.errors import AuditUnavailable
from veto_core.audit.record import canonical_json
from veto_core.audit.sink import AuditSink, Checkpoint

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography is imported when a key is used, not with the audit trail: commands
# that only read (`veto approvals list`) start without it (DESIGN.md 8).

__all__ = ["ENV_SIGNING_KEY", "load_signer", "public_key_hex", "sign", "verify_signature"]

ENV_SIGNING_KEY = "VETO_AUDIT_SIGNING_KEY"


def load_signer(sink: AuditSink) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    configured = os.environ.get(ENV_SIGNING_KEY)
    if configured:
        return _parse_private(configured)
    return Ed25519PrivateKey.from_private_bytes(sink.signing_seed())


def _parse_private(value: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(value).expanduser()
    try:
        if path.is_file():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise AuditUnavailable(f"{ENV_SIGNING_KEY}: {path} is not an Ed25519 private key")
            return key
        seed = base64.b64decode(value, validate=True)
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, binascii.Error, OSError) as exc:
        raise AuditUnavailable(
            f"{ENV_SIGNING_KEY} must be base64 of a 32-byte Ed25519 seed or a PEM file path: {exc}"
        ) from exc


def public_key_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def sign(key: Ed25519PrivateKey, payload: dict[str, object]) -> str:
    return key.sign(canonical_json(payload)).hex()


def verify_signature(cp: Checkpoint, pinned_public_key: str | None = None) -> str | None:
    """``None`` if the checkpoint's signature is valid, else why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pub_hex = pinned_public_key or cp.public_key
    if pinned_public_key is not None and cp.public_key != pinned_public_key:
        return f"signed by key {cp.public_key[:16]}…, not the pinned key"
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub_hex))
        pub.verify(bytes.fromhex(cp.signature), canonical_json(cp.payload()))
    except (ValueError, InvalidSignature):
        return "invalid signature"
    return None
