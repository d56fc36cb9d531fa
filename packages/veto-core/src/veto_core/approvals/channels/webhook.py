"""``webhook`` channel: an HMAC-SHA256-signed JSON POST per approval request.

Enabled when ``VETO_WEBHOOK_URL`` is set; ``VETO_WEBHOOK_SECRET`` signs it (a
request is never sent unsigned). Headers:

- ``X-Veto-Timestamp``: Unix seconds when the request was signed;
- ``X-Veto-Signature``: ``v1=`` + hex ``HMAC-SHA256(secret, f"{timestamp}.{body}")``.

Receivers recompute the signature over the raw body and refuse stale timestamps
(:func:`verify_signature` does both). Decisions come back through the CLI or the
server API, never through the webhook's response.

Uses the standard library (``urllib.request``): no extra dependency for the core.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

from veto_core.approvals.model import ApprovalLinks, ApprovalRequest
from veto_core.hookspecs import ApprovalChannel, hookimpl

__all__ = [
    "ENV_SECRET",
    "ENV_URL",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "sign",
    "verify_signature",
    "veto_approval_channels",
]

ENV_URL = "VETO_WEBHOOK_URL"
ENV_SECRET = "VETO_WEBHOOK_SECRET"
TIMESTAMP_HEADER = "X-Veto-Timestamp"
SIGNATURE_HEADER = "X-Veto-Signature"


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    max_age_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and is not older than ``max_age_s``."""
    try:
        age = (time.time() if now is None else now) - float(timestamp)
    except ValueError:
        return False
    if abs(age) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str | None, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s

    def payload(self, request: ApprovalRequest, links: ApprovalLinks) -> dict[str, Any]:
        return {
            "type": "approval.requested",
            "request": request.to_dict(),
            "links": links.to_dict(),
        }

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None:
        if not self.secret:
            raise RuntimeError(f"{ENV_SECRET} is not set; refusing to send an unsigned webhook")
        body = json.dumps(self.payload(request, links), sort_keys=True).encode("utf-8")
        ts = str(int(time.time()))
        import urllib.request  # on use: keeps `veto` start-up fast

        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "veto-webhook/1",
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(self.secret, ts, body),
            },
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            status = resp.status
        if not 200 <= status < 300:
            raise RuntimeError(f"webhook {self.url} answered HTTP {status}")


@hookimpl
def veto_approval_channels() -> list[ApprovalChannel]:
    url = os.environ.get(ENV_URL)
    if not url:
        return []
    return [WebhookChannel(url, os.environ.get(ENV_SECRET))]
