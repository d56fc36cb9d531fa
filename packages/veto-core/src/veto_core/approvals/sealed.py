"""The unredacted arguments of a pending request, for its eligible approvers only.

The audit trail and the request's ``args`` stay redacted. An approver still has to
see what they approve (the IBAN of a wire), so the real values are kept beside the
request, encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from the
tenant's key, the one that keys ``args_digest``; the request id is the associated
data, so a sealed value cannot be moved to another request. The store nulls it when
the request ends and on erasure.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

from veto_core.audit.record import canonical_json

if TYPE_CHECKING:  # imported when used: `veto approvals list` must start fast (DESIGN 8)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["open_args", "seal_args"]

_PREFIX = "v1:"
_INFO = b"veto approval args v1"


def _aead(tenant_key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(tenant_key)
    return AESGCM(key)


def seal_args(tenant_key: bytes, request_id: str, args: Any) -> str:
    """``args`` (JSON-plain) encrypted for ``request_id``."""
    nonce = os.urandom(12)
    box = _aead(tenant_key).encrypt(nonce, canonical_json(args), request_id.encode("utf-8"))
    return _PREFIX + base64.b64encode(nonce + box).decode("ascii")


def open_args(tenant_key: bytes, request_id: str, sealed: str) -> Any:
    """The arguments sealed for ``request_id``; ``ValueError`` if tampered with."""
    if not sealed.startswith(_PREFIX):
        raise ValueError("unknown sealed-arguments format")
    from cryptography.exceptions import InvalidTag

    raw = base64.b64decode(sealed[len(_PREFIX) :])
    try:
        plain = _aead(tenant_key).decrypt(raw[:12], raw[12:], request_id.encode("utf-8"))
    except InvalidTag:
        raise ValueError("the sealed arguments do not belong to this request") from None
    return json.loads(plain)
