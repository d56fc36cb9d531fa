"""The CLI's client of ``veto serve`` (DESIGN.md 8): with ``$VETO_URL`` set, ``veto
approvals`` and ``veto audit query|export`` go through the JSON API with an API token
(``$VETO_TOKEN``, bearer) instead of opening the database, so the server's users,
roles and tenants apply to the terminal too.

Needs ``httpx`` (``pip install 'veto-core[remote]'``), imported only when used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from veto_core.credentials import ENV_TOKEN, ENV_URL

__all__ = ["Remote", "RemoteError", "remote_from_env"]


class RemoteError(Exception):
    """The server refused or failed; ``status`` is the HTTP status (None: unreachable)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Remote:
    """A small synchronous client of the server's JSON API."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - only without the extra
            raise RemoteError(
                f"{ENV_URL} is set but httpx is missing: pip install 'veto-core[remote]'"
            ) from exc
        self.url = url.rstrip("/")
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def _check(self, response: Any) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise RemoteError(f"{self.url}: {response.status_code} {detail}", response.status_code)
        return response

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            return self._check(self._client.request(method, path, **kw)).json()
        except self._httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None

    # -- API ---------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", "/api/me")
        return out

    def approvals(self, *, tenant: str | None, state: str) -> list[dict[str, Any]]:
        params = {"state": state, **({"tenant": tenant} if tenant else {})}
        out: list[dict[str, Any]] = self._request("GET", "/api/approvals", params=params)[
            "requests"
        ]
        return out

    def approval(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", f"/api/approvals/{request_id}")
        return out

    def resolve(self, id_or_part: str) -> str:
        """A full request id from an id, a unique prefix or a unique suffix."""
        rows = self.approvals(tenant=None, state="all")
        ids = [r["id"] for r in rows]
        if id_or_part in ids:
            return id_or_part
        hits = [i for i in ids if i.startswith(id_or_part) or i.endswith(id_or_part)]
        if len(hits) == 1:
            return str(hits[0])
        if hits:
            raise RemoteError(f"{id_or_part!r} matches several requests; give more", 404)
        raise RemoteError(f"no approval request {id_or_part!r}", 404)

    def decide(self, request_id: str, *, approve: bool, reason: str | None) -> dict[str, Any]:
        verb = "approve" if approve else "deny"
        out: dict[str, Any] = self._request(
            "POST", f"/api/approvals/{request_id}/{verb}", json={"reason": reason}
        )
        return out

    def cancel(self, request_id: str, *, reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = self._request(
            "POST", f"/api/approvals/{request_id}/cancel", json={"reason": reason}
        )
        return out

    def audit(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._request("GET", "/api/audit", params=_clean(params))
        return out

    def export(self, params: Mapping[str, Any]) -> Iterator[str]:
        """The export's text, streamed as the server sends it."""
        try:
            with self._client.stream("GET", "/api/audit/export", params=_clean(params)) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                yield from r.iter_text()
        except self._httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v is not False}


def remote_from_env(token: str | None = None) -> Remote | None:
    """A client when ``$VETO_URL`` is set (``None``: use the local database). The token
    comes from ``token`` or ``$VETO_TOKEN``; a URL without a token is an error."""
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        return None
    token = token or os.environ.get(ENV_TOKEN, "").strip()
    if not token:
        raise RemoteError(
            f"{ENV_URL} is set but no API token: set {ENV_TOKEN} (create one with "
            "`veto users token NAME` on the server)"
        )
    if not url.startswith(("http://", "https://")):
        raise RemoteError(f"{ENV_URL} must be an http:// or https:// URL, not {url!r}")
    return Remote(url, token)
