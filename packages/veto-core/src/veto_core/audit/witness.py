"""Witnesses: signed chain heads published outside the audited store (DESIGN.md 4).

Someone who can write the database can delete its tail and rewind the chain head,
or delete a signed checkpoint with it. A witness keeps a copy of every signed
checkpoint (and tenant registry) where that person cannot reach, and ``verify``
reads it back: the chain must still hold every head a witness saw.

Witnesses are plugins (``veto_audit_witness`` hook); the built-ins are

- ``file:///path/witness.jsonl``: an append-only file (one signed checkpoint per
  line, ``O_APPEND`` + ``fsync``), for a different disk, host mount or user;
- ``http(s)://...``: a webhook that receives each checkpoint as a JSON ``POST``
  and returns the list it holds on ``GET`` (any store-and-return service).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from veto_core.audit.errors import AuditUnavailable
from veto_core.audit.record import canonical_str
from veto_core.audit.sink import Checkpoint
from veto_core.hookspecs import hookimpl

__all__ = [
    "AuditWitness",
    "FileWitness",
    "WebhookWitness",
    "WitnessConfig",
    "checkpoint_from_dict",
    "open_witnesses",
    "veto_audit_witness",
]


@runtime_checkable
class AuditWitness(Protocol):
    """Keeps signed checkpoints out of reach of whoever can write the audit store."""

    url: str

    def publish(self, checkpoint: Checkpoint) -> None:
        """Store one signed checkpoint durably; raise on failure."""

    def read(self) -> list[Checkpoint]:
        """Every checkpoint this witness holds (for ``veto audit verify``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WitnessConfig:
    url: str
    scheme: str

    @classmethod
    def parse(cls, url: str) -> WitnessConfig:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "" and url.startswith("/"):
            return cls(url=f"file://{url}", scheme="file")
        return cls(url=url, scheme=scheme)


def checkpoint_from_dict(d: dict[str, Any]) -> Checkpoint:
    created = d["created_at"]
    return Checkpoint(
        tenant=str(d["tenant"]),
        kind=str(d["kind"]),
        seq=int(d["seq"]),
        hash=str(d["hash"]),
        created_at=_dt.datetime.fromisoformat(created)
        if isinstance(created, str)
        else _dt.datetime.fromtimestamp(int(created) / 1e6, _dt.UTC),
        info=dict(d.get("info") or {}),
        public_key=str(d["public_key"]),
        signature=str(d["signature"]),
    )


class FileWitness:
    """An append-only JSONL file of signed checkpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(urlsplit(url).path).expanduser()

    def publish(self, checkpoint: Checkpoint) -> None:
        line = (canonical_str(checkpoint.to_dict()) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # whole lines from several processes
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditUnavailable(f"witness {self.path}: {exc}") from exc

    def read(self) -> list[Checkpoint]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditUnavailable(f"witness {self.path}: {exc}") from exc
        out = []
        for n, raw in enumerate(data.splitlines(keepends=True), 1):
            if not raw.endswith(b"\n"):
                break  # a torn last line: never acknowledged
            try:
                out.append(checkpoint_from_dict(json.loads(raw)))
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditUnavailable(f"witness {self.path} line {n}: {exc!r}") from exc
        return out


class WebhookWitness:
    """``POST`` each signed checkpoint as JSON; ``GET`` returns the list held."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def publish(self, checkpoint: Checkpoint) -> None:
        import urllib.error  # on use: urllib.request (http.client, ssl, email) is slow to import
        import urllib.request

        body = canonical_str(checkpoint.to_dict()).encode("utf-8")
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "veto-witness"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                if not 200 <= resp.status < 300:
                    raise AuditUnavailable(f"witness {self.url}: HTTP {resp.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise AuditUnavailable(f"witness {self.url}: {exc}") from exc

    def read(self) -> list[Checkpoint]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                items = json.loads(resp.read())
            return [checkpoint_from_dict(d) for d in items]
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
            raise AuditUnavailable(f"witness {self.url}: {exc!r}") from exc


@hookimpl
def veto_audit_witness(config: WitnessConfig) -> list[AuditWitness]:
    if config.scheme == "file":
        return [FileWitness(config.url)]
    if config.scheme in ("http", "https"):
        return [WebhookWitness(config.url)]
    return []


def open_witnesses(urls: tuple[str, ...]) -> tuple[AuditWitness, ...]:
    """A witness for each URL, from whichever plugin answers its scheme."""
    if not urls:
        return ()
    from veto_core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    out: list[AuditWitness] = []
    for url in urls:
        config = WitnessConfig.parse(url)
        try:
            answers = pm.hook.veto_audit_witness(config=config)
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable(f"cannot open audit witness {url!r}: {exc}") from exc
        found = [w for answer in answers for w in answer]
        if not found:
            raise AuditUnavailable(f"no audit witness for URL scheme {config.scheme!r} ({url})")
        out.append(found[0])
    return tuple(out)
