"""JSONL audit sink: one append-only file, one JSON object per line (``jsonl:///path``).

Every line has a ``type``: ``schema`` (first line), ``key`` (a tenant's HMAC key),
``record`` (the stored columns of ``sink.COLUMNS``), ``checkpoint``, ``signing_key``,
``policy``. Appends take an exclusive ``flock`` on ``PATH.lock`` (so several
processes can share the file), write whole lines and ``fsync`` before returning.
A torn last line (a crash mid-write, never acknowledged) is dropped before the
next append. Purge and erasure rewrite the file atomically (temp file, fsync,
rename). Queries scan the file: fine for a few million records, constant memory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from veto_core.audit.errors import AuditSchemaError, AuditStoreMissing, AuditUnavailable
from veto_core.audit.pending import PendingRecord
from veto_core.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    SealedRecord,
    canonical_str,
    ts_from_us,
    ts_to_us,
)
from veto_core.audit.sink import (
    COLUMNS,
    AuditQuery,
    AuditSink,
    Checkpoint,
    PolicyRevision,
    SinkConfig,
    from_row,
)

__all__ = ["SCHEMA_VERSION", "JsonlSink"]

SCHEMA_VERSION = 1


def jsonl_path(url: str) -> Path:
    rest = url[len("jsonl://") :]
    if not rest.startswith("/"):
        raise ValueError(f"jsonl URL must be jsonl:///PATH, got {url!r}")
    return Path(os.path.expanduser(rest[1:]))


class JsonlSink(AuditSink):
    scheme = "jsonl"

    def __init__(self, config: SinkConfig) -> None:
        self.url = config.url
        self.path = jsonl_path(config.url)
        self._fsync = config.durability != "os"  # "os": written to the OS, not synced
        self._lock = threading.RLock()
        self._heads: dict[str, tuple[int, str]] = {}
        self._keys: dict[str, bytes] = {}
        self._cps: list[Checkpoint] = []
        self._policies: dict[str, PolicyRevision] = {}
        self._seed: bytes | None = None
        self._offset = 0
        self._ino: int | None = None
        if not config.create and not self.path.is_file():
            raise AuditStoreMissing(f"no audit file at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lockfd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            with self._locked():
                if self._offset == 0:
                    self._write_lines(
                        [{"type": "schema", "component": "audit", "version": SCHEMA_VERSION}]
                    )
        except AuditUnavailable:
            raise
        except OSError as exc:
            raise AuditUnavailable(f"cannot open audit file {self.path}: {exc}") from exc

    # -- file state --------------------------------------------------------------

    @contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        with self._lock:
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            except OSError as exc:
                raise AuditUnavailable(f"cannot lock {self.path}: {exc}") from exc
            try:
                self._refresh()
                yield
            finally:
                fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    def _reset(self) -> None:
        self._heads.clear()
        self._keys.clear()
        self._cps.clear()
        self._policies.clear()
        self._seed = None
        self._offset = 0

    def _refresh(self) -> None:
        """Read lines appended (by any process) since we last looked."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._reset()
            self._ino = None
            return
        if st.st_ino != self._ino or st.st_size < self._offset:
            self._reset()
            self._ino = st.st_ino
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # ignore a torn last line
        for line in data[:end].splitlines():
            if line.strip():
                self._apply(json.loads(line))
        self._offset += end

    def _apply(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "record":
            self._heads[obj["tenant"]] = (int(obj["seq"]), str(obj["hash"]))
        elif kind == "key":
            self._keys.setdefault(obj["tenant"], base64.b64decode(obj["hmac_key"]))
        elif kind == "checkpoint":
            cp = _cp_from(obj)
            self._cps = [
                c for c in self._cps if (c.tenant, c.kind, c.seq) != (cp.tenant, cp.kind, cp.seq)
            ]
            self._cps.append(cp)
        elif kind == "signing_key":
            if self._seed is None:
                self._seed = base64.b64decode(obj["seed"])
        elif kind == "policy":
            rev = PolicyRevision(
                revision=obj["revision"],
                name=obj["name"],
                content=obj["content"],
                source=obj["source"],
                first_seen=ts_from_us(int(obj["first_seen_us"])),
            )
            self._policies.setdefault(rev.revision, rev)
        elif kind == "schema":
            version = int(obj.get("version", 0))
            if version > SCHEMA_VERSION:
                raise AuditSchemaError(
                    f"audit file {self.path} has schema version {version}, newer than this "
                    f"veto-core supports ({SCHEMA_VERSION}); upgrade veto-core to open it"
                )
        elif kind == "head":
            self._heads[obj["tenant"]] = (int(obj["seq"]), str(obj["hash"]))

    def _write_lines(self, objs: Sequence[dict[str, Any]]) -> None:
        """Append whole lines and fsync (caller holds the exclusive lock)."""
        payload = "".join(canonical_str(o) + "\n" for o in objs).encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size > self._offset:
                os.ftruncate(fd, self._offset)  # drop a torn, never-acknowledged line
            os.lseek(fd, self._offset, os.SEEK_SET)
            view = memoryview(payload)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self._fsync:
                os.fsync(fd)
            self._ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        for o in objs:
            self._apply(o)
        self._offset += len(payload)

    def _rewrite(
        self,
        transform: Callable[[dict[str, Any]], dict[str, Any] | None],
        extra: Sequence[dict[str, Any]] = (),
    ) -> int:
        """Rewrite the file through ``transform`` (None drops a line); atomic. Returns changes."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        changed = 0
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            for raw in src:
                if not raw.endswith(b"\n"):
                    break
                obj = json.loads(raw)
                out = transform(obj)
                if out is not obj:
                    changed += 1
                if out is not None:
                    dst.write((canonical_str(out) + "\n").encode("utf-8"))
            for o in extra:
                dst.write((canonical_str(o) + "\n").encode("utf-8"))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self._ino = None
        self._refresh()
        return changed

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AuditUnavailable:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise AuditUnavailable(f"audit file {self.path}: {exc!r}") from exc

    # -- AuditSink -------------------------------------------------------------

    def tenant_key(self, tenant: str) -> bytes:
        key = self._keys.get(tenant)
        if key is not None:
            return key

        def work() -> bytes:
            with self._locked():
                if tenant not in self._keys:
                    self._write_lines(
                        [
                            {
                                "type": "key",
                                "tenant": tenant,
                                "hmac_key": base64.b64encode(secrets.token_bytes(32)).decode(),
                            }
                        ]
                    )
                return self._keys[tenant]

        out = self._guard(work)
        assert isinstance(out, bytes)
        return out

    def append(self, batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        def work() -> list[SealedRecord]:
            with self._locked():
                heads = dict(self._heads)
                out: list[SealedRecord] = []
                lines: list[dict[str, Any]] = []
                for p in batch:
                    seq, prev = heads.get(p.tenant, (0, GENESIS_HASH))
                    s = p.seal(seq + 1, prev)
                    heads[p.tenant] = (seq + 1, s.record.hash)
                    out.append(s)
                    lines.append({"type": "record", **dict(zip(COLUMNS, p.row, strict=True))})
                self._write_lines(lines)
                return out

        result = self._guard(work)
        assert isinstance(result, list)
        return result

    def _scan(self) -> Iterator[dict[str, Any]]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - generator owns the handle
        except OSError as exc:
            raise AuditUnavailable(f"audit file {self.path}: {exc}") from exc
        with f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                yield json.loads(raw)

    def _records(self, tenant: str | None) -> Iterator[SealedRecord]:
        for obj in self._scan():
            if obj.get("type") == "record" and (tenant is None or obj.get("tenant") == tenant):
                yield from_row(tuple(obj.get(c) for c in COLUMNS))

    def iter_chain(self, tenant: str) -> Iterator[SealedRecord]:
        yield from self._records(tenant)

    def chain_head(self, tenant: str) -> tuple[int, str] | None:
        with self._locked(shared=True):
            return self._heads.get(tenant)

    def tenants(self) -> list[str]:
        with self._locked(shared=True):
            return sorted((set(self._heads) | {c.tenant for c in self._cps}) - {""})

    def query(self, q: AuditQuery) -> Iterator[AuditRecord]:
        # Order is append order (time order unless records were written with a past ``now``).
        if q.newest_first:
            # A file scan is oldest first; newest-first needs the matches in memory.
            matches = [s.record for s in self._records(q.tenant) if q.matches(s.record)]
            matches.reverse()
            stop = None if q.limit is None else q.offset + q.limit
            yield from matches[q.offset : stop]
            return
        skipped = 0
        emitted = 0
        for s in self._records(q.tenant):
            if not q.matches(s.record):
                continue
            if skipped < q.offset:
                skipped += 1
                continue
            if q.limit is not None and emitted >= q.limit:
                return
            emitted += 1
            yield s.record

    def checkpoints(self, tenant: str) -> list[Checkpoint]:
        with self._locked(shared=True):
            return sorted(
                (c for c in self._cps if c.tenant == tenant), key=lambda c: (c.seq, c.kind)
            )

    def add_checkpoint(self, cp: Checkpoint) -> None:
        def work() -> None:
            with self._locked():
                self._write_lines([_cp_to(cp)])

        self._guard(work)

    def purge_through(self, tenant: str, seq: int, tombstone: Checkpoint) -> int:
        def drop(o: dict[str, Any]) -> dict[str, Any] | None:
            if o.get("type") == "record" and o.get("tenant") == tenant and int(o["seq"]) <= seq:
                return None
            return o

        def work() -> int:
            with self._locked():
                head = self._heads.get(tenant)
                extra: list[dict[str, Any]] = [_cp_to(tombstone)]
                if head is not None:
                    extra.append(
                        {"type": "head", "tenant": tenant, "seq": head[0], "hash": head[1]}
                    )
                return self._rewrite(drop, extra)

        return int(self._guard(work))

    def count_user(self, tenant: str, user: str) -> int:
        return sum(
            1
            for o in self._scan()
            if o.get("type") == "record"
            and o.get("tenant") == tenant
            and json.loads(o["principal"]).get("user") == user
        )

    def erase_user(self, tenant: str, user: str, before_seq: int, erased_mac: str) -> int:
        def erase(o: dict[str, Any]) -> dict[str, Any] | None:
            if (
                o.get("type") != "record"
                or o.get("tenant") != tenant
                or int(o["seq"]) >= before_seq
            ):
                return o
            p = json.loads(o["principal"])
            if p.get("user") != user:
                return o
            p["user"] = None
            return {**o, "principal": canonical_str(p), "args": None, "args_mac": erased_mac}

        def work() -> int:
            with self._locked():
                return self._rewrite(erase)

        return int(self._guard(work))

    def legacy_signing_seed(self) -> bytes | None:
        with self._locked(shared=True):
            return self._seed

    def drop_legacy_signing_seed(self) -> None:
        def work() -> None:
            with self._locked():
                self._rewrite(lambda o: None if o.get("type") == "signing_key" else o)
                self._seed = None

        self._guard(work)

    def store_policy_revision(self, rev: PolicyRevision) -> None:
        def work() -> None:
            with self._locked():
                if rev.revision not in self._policies:
                    self._write_lines(
                        [
                            {
                                "type": "policy",
                                "revision": rev.revision,
                                "name": rev.name,
                                "content": rev.content,
                                "source": rev.source,
                                "first_seen_us": ts_to_us(rev.first_seen),
                            }
                        ]
                    )

        self._guard(work)

    def policy_revisions(self) -> list[PolicyRevision]:
        with self._locked(shared=True):
            return sorted(self._policies.values(), key=lambda r: (r.first_seen, r.revision))

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            os.close(self._lockfd)


def _cp_to(cp: Checkpoint) -> dict[str, Any]:
    return {
        "type": "checkpoint",
        "tenant": cp.tenant,
        "kind": cp.kind,
        "seq": cp.seq,
        "hash": cp.hash,
        "created_us": ts_to_us(cp.created_at),
        "info": dict(cp.info),
        "public_key": cp.public_key,
        "signature": cp.signature,
    }


def _cp_from(o: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        tenant=o["tenant"],
        kind=o["kind"],
        seq=int(o["seq"]),
        hash=o["hash"],
        created_at=ts_from_us(int(o["created_us"])),
        info=o.get("info") or {},
        public_key=o["public_key"],
        signature=o["signature"],
    )
