"""Durable run stores (DESIGN.md 2.7): SQLite (embedded default), PostgreSQL, Redis.

`open_run_store` picks one by URL like `veto_core.limits.open_limit_store`: ``url``, else
``$VETO_RUNS_URL``, else ``default`` (the audit store's URL), else the default audit URL.
Runs live next to approvals: the same SQLite file or PostgreSQL schema.

Semantics shared by every store (tested by one conformance suite):

- ``append`` commits before it returns and returns the event's seq; seqs of a run are
  1, 2, 3... gap-free, even with threads and processes appending at once (SQLite:
  ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE`` on the run's head row;
  Redis: one Lua script). It sets the run's expiry to ``now + ttl_s``.
- An expired run reads as empty (``load`` gives ``()``, ``head`` 0). The next append
  drops its old events and **continues the numbering** (head + 1), so a head value is
  never reused while the run's head row lives; ``purge_expired`` and ``erase`` delete
  the head row too, after which a new run of that id starts again at 1 (so does a
  Redis run whose keys the server expired).
- At most `MAX_RUN_TEXT_BYTES` (1 MiB, UTF-8) of output text is kept per run: when an
  append takes the run past it, the text of the oldest events is blanked first (their
  rows, labels, args and effect stay), in the same transaction. A single text longer
  than the bound is cut to it (at a character boundary). Either way the event comes back
  with ``text_lost`` set, so flow rules know that text is missing (fail closed). NUL
  characters (which PostgreSQL cannot store) and lone surrogates become U+FFFD in every
  store alike.
- ``args`` are stored as canonical JSON (`veto_core.audit.record.plain_args_json`) and
  come back as their JSON form (tagged forms such as ``{"$tuple": [...]}`` for non-JSON
  Python values, as in the audit trail); ``labels`` are stored sorted; ``at`` is UTC
  with microsecond precision.
- A tenant of ``None`` and a tenant named ``"null"`` never mix: tenants are keyed by their
  JSON text.
"""

from __future__ import annotations

import enum
import functools
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..audit.record import canonical_str, loads_plain, plain_args_json, str_list_json
from ..audit.record import ts_from_us as _ts_from_us
from ..audit.record import ts_to_us as _ts_to_us
from ..storage import Execute, executor, open_by_scheme
from .store import RunEvent, RunStore, RunStoreUnavailable

__all__ = [
    "ENV_RUNS_URL",
    "MAX_RUN_TEXT_BYTES",
    "PostgresRunStore",
    "RedisRunStore",
    "SQLiteRunStore",
    "open_run_store",
]

ENV_RUNS_URL = "VETO_RUNS_URL"
MAX_RUN_TEXT_BYTES = 1 << 20
"""Output text kept per run (UTF-8 bytes); the oldest events' text is blanked first."""

COMPONENT = "runs"


def open_run_store(url: str | None = None, *, default: str | None = None) -> RunStore:
    """``url`` or ``$VETO_RUNS_URL`` or ``default`` (the audit store's URL) or the
    default audit URL. Any failure to open raises `RunStoreUnavailable`."""
    from ..audit.log import default_audit_url

    target = url or os.environ.get(ENV_RUNS_URL) or default or default_audit_url()
    openers: dict[str, Callable[[str], RunStore]] = {
        "sqlite": SQLiteRunStore, "postgresql": PostgresRunStore,
        "redis": RedisRunStore, "rediss": RedisRunStore,
    }  # fmt: skip
    return open_by_scheme(target, openers, RunStoreUnavailable, "run store")


# --- what every store shares -----------------------------------------------------------------


def _tenant_key(tenant: str | None) -> str:
    if tenant is not None and not isinstance(tenant, str):
        raise TypeError(f"tenant must be a string or None, got {type(tenant).__name__}")
    return canonical_str(tenant)


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    return run_id


def _us(now: datetime) -> int:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError(f"run store times must be timezone-aware datetimes, got {now!r}")
    return _ts_to_us(now)


def _ttl_us(ttl_s: float) -> int:
    if isinstance(ttl_s, bool) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"ttl_s must be a finite number of seconds > 0, got {ttl_s!r}")
    return max(1, round(ttl_s * 1_000_000))


def _clean_text(text: str) -> tuple[str, int, bool]:
    """``(text, UTF-8 size, cut)`` as stored: NUL and lone surrogates replaced, cut to
    the per-run bound at a character boundary (``cut`` says it was)."""
    if not isinstance(text, str):
        raise TypeError(f"event text must be a string, got {type(text).__name__}")
    text = text.replace("\x00", "\ufffd")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        data = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode("utf-8")
    cut = len(data) > MAX_RUN_TEXT_BYTES
    if cut:
        data = data[:MAX_RUN_TEXT_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return data.decode("utf-8"), len(data), cut


class _Encoded:
    """An event's stored columns."""

    __slots__ = (
        "args",
        "at_us",
        "effect",
        "labels",
        "source_ids",
        "text",
        "text_bytes",
        "text_lost",
        "tool",
        "tool_call_id",
    )

    def __init__(self, event: RunEvent) -> None:
        if not isinstance(event.tool, str) or not event.tool:
            raise ValueError(f"event tool must be a non-empty string, got {event.tool!r}")
        self.tool = event.tool
        self.args = plain_args_json(dict(event.args))[1]
        effect = event.effect
        self.effect = str(effect.value if isinstance(effect, enum.Enum) else effect)
        self.tool_call_id = event.tool_call_id
        self.labels = str_list_json(sorted(event.labels))
        self.source_ids = str_list_json(tuple(event.source_ids))
        self.text, self.text_bytes, cut = _clean_text(event.text)
        self.text_lost = cut or bool(event.text_lost)
        self.at_us = _us(event.at)


def _decode(
    seq: int,
    tool: str,
    args: str,
    effect: str,
    tool_call_id: str | None,
    labels: str,
    source_ids: str,
    text: str | None,
    at_us: int,
    text_lost: Any = 0,
) -> RunEvent:
    return RunEvent(
        seq=int(seq),
        tool=tool,
        args=loads_plain(args),
        effect=effect,
        tool_call_id=tool_call_id,
        labels=frozenset(loads_plain(labels)),
        source_ids=tuple(loads_plain(source_ids)),
        text=text or "",
        at=_ts_from_us(int(at_us)),
        text_lost=bool(text_lost),
    )


# --- SQL (SQLite and PostgreSQL share the statements) ----------------------------------------

_V1 = """
CREATE TABLE IF NOT EXISTS veto_runs (
    tenant TEXT NOT NULL, run_id TEXT NOT NULL, head BIGINT NOT NULL,
    expires_us BIGINT NOT NULL, text_bytes BIGINT NOT NULL,
    PRIMARY KEY (tenant, run_id)
);
CREATE INDEX IF NOT EXISTS veto_runs_expiry ON veto_runs (expires_us);
CREATE TABLE IF NOT EXISTS veto_run_events (
    tenant TEXT NOT NULL, run_id TEXT NOT NULL, seq BIGINT NOT NULL,
    tool TEXT NOT NULL, args TEXT NOT NULL, effect TEXT NOT NULL, tool_call_id TEXT,
    labels TEXT NOT NULL, source_ids TEXT NOT NULL, text TEXT NOT NULL,
    text_bytes BIGINT NOT NULL, at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant, run_id, seq)
)
"""
# An event whose text was cut or blanked says so (flow rules fail closed on lost text).
_V2 = "ALTER TABLE veto_run_events ADD COLUMN text_lost INTEGER NOT NULL DEFAULT 0"
MIGRATIONS: tuple[str, ...] = (_V1, _V2)

_RUN = "tenant = ? AND run_id = ?"
_EVENT_COLUMNS = "seq, tool, args, effect, tool_call_id, labels, source_ids, text, at_us, text_lost"


class RunSchemaError(RunStoreUnavailable):
    """The database holds a newer run-store schema than this code knows: never write to it."""


def _too_new(current: int, supported: int) -> Exception:
    return RunSchemaError(
        f"run store schema version {current} is newer than this Veto supports "
        f"({supported}); upgrade veto-core"
    )


class _SqlRunStore(RunStore):
    """The statements, written once with ``?`` placeholders; a subclass supplies the
    transaction (``_write``), a read (``_read``) and its placeholder."""

    _placeholder = "?"
    _lock_head = ""  # PostgreSQL: " FOR UPDATE"

    def _sql(self, text: str) -> str:
        return text if self._placeholder == "?" else text.replace("?", self._placeholder)

    def _write(self, fn: Callable[[Execute], Any]) -> Any:
        raise NotImplementedError

    def _read(self, fn: Callable[[Execute], Any]) -> Any:
        raise NotImplementedError

    def append(
        self, tenant: str | None, run_id: str, event: RunEvent, *, ttl_s: float, now: datetime
    ) -> int:
        key = (_tenant_key(tenant), _check_run_id(run_id))
        enc = _Encoded(event)
        now_us, ttl_us = _us(now), _ttl_us(ttl_s)
        q = self._sql

        def append(ex: Execute) -> int:
            ex(
                q(
                    "INSERT INTO veto_runs (tenant, run_id, head, expires_us, text_bytes) "
                    "VALUES (?, ?, 0, 0, 0) ON CONFLICT (tenant, run_id) DO NOTHING"
                ),
                key,
            )
            ((head, expires_us, total),) = ex(
                q(f"SELECT head, expires_us, text_bytes FROM veto_runs WHERE {_RUN}")
                + self._lock_head,
                key,
            )
            if int(expires_us) <= now_us:  # expired: its events go, its numbering goes on
                ex(q(f"DELETE FROM veto_run_events WHERE {_RUN}"), key)
                total = 0
            seq = int(head) + 1
            ex(
                q(
                    f"INSERT INTO veto_run_events (tenant, run_id, {_EVENT_COLUMNS}, text_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (
                    *key,
                    seq,
                    enc.tool,
                    enc.args,
                    enc.effect,
                    enc.tool_call_id,
                    enc.labels,
                    enc.source_ids,
                    enc.text,
                    enc.at_us,
                    int(enc.text_lost),
                    enc.text_bytes,
                ),
            )
            total = int(total) + enc.text_bytes
            if total > MAX_RUN_TEXT_BYTES:
                rows = ex(
                    q(
                        f"SELECT seq, text_bytes FROM veto_run_events WHERE {_RUN} "
                        "AND text_bytes > 0 AND seq < ? ORDER BY seq"
                    ),
                    (*key, seq),
                )
                last = 0
                for old_seq, size in rows:
                    if total <= MAX_RUN_TEXT_BYTES:
                        break
                    last, total = int(old_seq), total - int(size)
                if last:
                    ex(
                        q(
                            "UPDATE veto_run_events SET text = '', text_bytes = 0, text_lost = 1 "
                            f"WHERE {_RUN} AND seq <= ? AND text_bytes > 0"
                        ),
                        (*key, last),
                    )
            ex(
                q(f"UPDATE veto_runs SET head = ?, expires_us = ?, text_bytes = ? WHERE {_RUN}"),
                (seq, now_us + ttl_us, total, *key),
            )
            return seq

        out: int = self._write(append)
        return out

    def load(
        self, tenant: str | None, run_id: str, *, now: datetime, after_seq: int = 0
    ) -> tuple[RunEvent, ...]:
        key = (_tenant_key(tenant), _check_run_id(run_id))
        cols = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
        stmt = self._sql(
            f"SELECT {cols} FROM veto_run_events e JOIN veto_runs r "
            "ON r.tenant = e.tenant AND r.run_id = e.run_id "
            "WHERE e.tenant = ? AND e.run_id = ? AND r.expires_us > ? AND e.seq > ? "
            "ORDER BY e.seq"
        )
        params = (*key, _us(now), int(after_seq))
        rows = self._read(lambda ex: ex(stmt, params))
        return tuple(_decode(*row) for row in rows)

    def head(self, tenant: str | None, run_id: str, *, now: datetime) -> int:
        key = (_tenant_key(tenant), _check_run_id(run_id))
        stmt = self._sql(f"SELECT head FROM veto_runs WHERE {_RUN} AND expires_us > ?")
        params = (*key, _us(now))
        rows = self._read(lambda ex: ex(stmt, params))
        return int(rows[0][0]) if rows else 0

    def purge_expired(self, *, now: datetime) -> int:
        now_us = _us(now)
        q = self._sql

        def purge(ex: Execute) -> int:
            runs = ex(
                q("DELETE FROM veto_runs WHERE expires_us <= ? RETURNING tenant, run_id"),
                (now_us,),
            )
            for key in runs:
                ex(q(f"DELETE FROM veto_run_events WHERE {_RUN}"), tuple(key))
            return len(runs)

        out: int = self._write(purge)
        return out

    def erase(self, *, tenant: str | None, run_id: str | None = None) -> int:
        where, params = "tenant = ?", [_tenant_key(tenant)]
        if run_id is not None:
            where, params = _RUN, [*params, _check_run_id(run_id)]
        q = self._sql

        def erase(ex: Execute) -> int:
            ex(q(f"DELETE FROM veto_run_events WHERE {where}"), params)
            return len(ex(q(f"DELETE FROM veto_runs WHERE {where} RETURNING run_id"), params))

        out: int = self._write(erase)
        return out


class SQLiteRunStore(_SqlRunStore):
    """The embedded default: the audit trail's SQLite file (WAL). Appends serialize across
    threads and processes with ``BEGIN IMMEDIATE``."""

    def __init__(self, url: str) -> None:
        from ..audit.sqlite import sqlite_path
        from ..storage import SQLiteConnections, migrate_sqlite

        self._cons = SQLiteConnections(sqlite_path(url))
        self._guard(
            lambda: migrate_sqlite(
                self._cons.get(), component=COMPONENT, migrations=MIGRATIONS, too_new=_too_new
            )
        )

    @staticmethod
    def _guard(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise RunStoreUnavailable(f"run store (SQLite) failed: {exc}") from exc

    def _write(self, fn: Callable[[Execute], Any]) -> Any:
        def tx() -> Any:
            con = self._cons.get()
            con.execute("BEGIN IMMEDIATE")
            try:
                out = fn(executor(con))
                con.execute("COMMIT")
                return out
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

        return self._guard(tx)

    def _read(self, fn: Callable[[Execute], Any]) -> Any:
        return self._guard(lambda: fn(executor(self._cons.get())))

    def close(self) -> None:
        self._cons.close()


class PostgresRunStore(_SqlRunStore):
    """PostgreSQL (``?schema=NAME``, default ``public``): an append locks its run's head
    row (``SELECT ... FOR UPDATE``), so seqs are gap-free across workers. A connection the
    server dropped is replaced; an append that failed after its transaction began is never
    repeated (it may have committed)."""

    _placeholder = "%s"
    _lock_head = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        try:
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - the [postgres] extra
            raise RunStoreUnavailable(
                "PostgreSQL run state needs veto-core[postgres] (psycopg 3)"
            ) from exc
        from ..audit.postgres import _split_url
        from ..storage import PostgresConnections, create_postgres_schema, migrate_postgres

        conninfo, schema = _split_url(url)
        path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))
        self._cons = PostgresConnections(
            conninfo,
            error=RunStoreUnavailable,
            what="run store",
            on_connect=lambda con: con.execute(path),
        )

        def create(con: Any) -> None:
            create_postgres_schema(con, schema)
            migrate_postgres(con, component=COMPONENT, migrations=MIGRATIONS, too_new=_too_new)

        self._cons.run(create, repeatable=True)

    def _write(self, fn: Callable[[Execute], Any]) -> Any:
        return self._cons.run(lambda con: fn(executor(con)), tx=True)

    def _read(self, fn: Callable[[Execute], Any]) -> Any:
        return self._cons.run(lambda con: fn(executor(con)), repeatable=True)

    def close(self) -> None:
        self._cons.close()


# --- Redis -----------------------------------------------------------------------------------

# A run is three keys under ``veto:run:<JSON [tenant, run_id]>``: the hash itself (head,
# exp (µs), bytes (text kept), lo (every seq below it has blank text), tok:<token> -> seq
# for appends already applied), ``...:e`` (seq -> event JSON without text) and ``...:t``
# (seq -> text; a lone NUL once blanked for newer text: ``text_lost``). ``veto:runs:expiry`` (run key scored by expiry) serves purge_expired and
# ``veto:runs:tenant:<JSON tenant>`` (set of run keys) serves erase.
_APPEND_LUA = """
local meta, events, texts, expiry, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, exp, ttl_ms = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local token = 'tok:' .. ARGV[4]
local size, max = tonumber(ARGV[7]), tonumber(ARGV[8])
local done = redis.call('HGET', meta, token)
if done then return tonumber(done) end  -- a repeat after a lost reply: applied once
local head = tonumber(redis.call('HGET', meta, 'head') or '0')
local total = tonumber(redis.call('HGET', meta, 'bytes') or '0')
local lo = tonumber(redis.call('HGET', meta, 'lo') or '1')
if tonumber(redis.call('HGET', meta, 'exp') or '0') <= now then
  redis.call('DEL', meta, events, texts)  -- expired: its events go, its numbering goes on
  total = 0
  lo = head + 1
end
local seq = head + 1
redis.call('HSET', events, seq, ARGV[5])
if size > 0 then redis.call('HSET', texts, seq, ARGV[6]) end
total = total + size
while total > max and lo < seq do
  local n = redis.call('HSTRLEN', texts, lo)
  if n > 0 then
    redis.call('HSET', texts, lo, '\\0')  -- blanked: a NUL, which no kept text holds
    total = total - n
  end
  lo = lo + 1
end
redis.call('HSET', meta, 'head', seq, 'exp', exp, 'bytes', total, 'lo', lo, token, seq)
for _, k in ipairs({meta, events, texts}) do redis.call('PEXPIRE', k, ttl_ms) end
redis.call('ZADD', expiry, exp, meta)
redis.call('SADD', index, meta)
return seq
"""

# KEYS: meta, events, texts; ARGV: now, after. Returns {} when expired, else a flat list
# of seq, event JSON, text (false when blank) for seq > after.
_LOAD_LUA = """
local meta, events, texts = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', meta, 'head', 'exp')
if not state[1] or tonumber(state[2]) <= tonumber(ARGV[1]) then return {} end
local out = {}
for seq = tonumber(ARGV[2]) + 1, tonumber(state[1]) do
  local ev = redis.call('HGET', events, seq)
  if ev then
    table.insert(out, seq)
    table.insert(out, ev)
    table.insert(out, redis.call('HGET', texts, seq) or '')
  end
end
return out
"""

# KEYS: meta, events, texts, expiry, index; ARGV: now ('' = unconditionally). Deletes the
# run if it is expired (or always); returns 1 if a run was deleted.
_DELETE_LUA = """
local meta = KEYS[1]
if ARGV[1] ~= '' then
  local exp = redis.call('HGET', meta, 'exp')
  if exp and tonumber(exp) > tonumber(ARGV[1]) then return 0 end
end
local existed = redis.call('EXISTS', meta)
redis.call('DEL', meta, KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], meta)
redis.call('SREM', KEYS[5], meta)
return existed
"""

_EXPIRY = "veto:runs:expiry"


class RedisRunStore(RunStore):
    """Redis (``veto-core[redis]``): each append, load and deletion is one Lua script,
    atomic on the server; runs also expire by key expiry (``ttl_s`` after their last
    append). An append carries a token, so repeating it after a dropped connection
    applies it once."""

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the [redis] extra
            raise RunStoreUnavailable("Redis run state needs veto-core[redis]") from exc
        from ..storage import RedisCalls

        self._calls = RedisCalls(error=RunStoreUnavailable, what="run store")
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            self._append = self._client.register_script(_APPEND_LUA)
            self._load = self._client.register_script(_LOAD_LUA)
            self._delete = self._client.register_script(_DELETE_LUA)
            self._client.ping()
        except redis.RedisError as exc:
            raise RunStoreUnavailable(f"run store (Redis) unreachable: {exc}") from exc

    @staticmethod
    def _index(tenant_key: str) -> str:
        return f"veto:runs:tenant:{tenant_key}"

    @staticmethod
    def _keys(tenant: str | None, run_id: str) -> list[str]:
        meta = "veto:run:" + canonical_str([_tenant_key(tenant), _check_run_id(run_id)])
        return [meta, meta + ":e", meta + ":t"]

    def append(
        self, tenant: str | None, run_id: str, event: RunEvent, *, ttl_s: float, now: datetime
    ) -> int:
        import uuid

        keys = self._keys(tenant, run_id)
        keys += [_EXPIRY, self._index(_tenant_key(tenant))]
        enc = _Encoded(event)
        now_us, ttl_us = _us(now), _ttl_us(ttl_s)
        fields = [enc.tool, enc.effect, enc.tool_call_id, enc.labels, enc.source_ids, enc.at_us]
        if enc.text_lost:  # cut to the bound (events written before this field have 6)
            fields.append(1)
        body = canonical_str(fields)
        args = [
            str(now_us),
            str(now_us + ttl_us),
            str(math.ceil(ttl_us / 1000) + 1000),  # the server's own expiry: a little later
            uuid.uuid4().hex,
            enc.args + "\n" + body,
            enc.text,
            str(enc.text_bytes),
            str(MAX_RUN_TEXT_BYTES),
        ]
        return int(self._calls.run(lambda: self._append(keys=keys, args=args)))

    def load(
        self, tenant: str | None, run_id: str, *, now: datetime, after_seq: int = 0
    ) -> tuple[RunEvent, ...]:
        keys = self._keys(tenant, run_id)
        params = [str(_us(now)), str(int(after_seq))]
        flat: list[Any] = list(self._calls.run(lambda: self._load(keys=keys, args=params)))
        out = []
        for i in range(0, len(flat), 3):
            args, body = bytes(flat[i + 1]).decode().split("\n", 1)
            tool, effect, tool_call_id, labels, source_ids, at_us, *cut = loads_plain(body)
            text = bytes(flat[i + 2]).decode() if flat[i + 2] else ""
            lost = bool(cut and cut[0])
            if text == "\x00":  # blanked for newer text
                text, lost = "", True
            out.append(
                _decode(
                    int(flat[i]), tool, args, effect, tool_call_id, labels, source_ids, text,
                    at_us, lost,
                )
            )  # fmt: skip
        return tuple(out)

    def head(self, tenant: str | None, run_id: str, *, now: datetime) -> int:
        meta = self._keys(tenant, run_id)[0]
        now_us = _us(now)
        head, exp = self._calls.run(lambda: self._client.hmget(meta, ["head", "exp"]))
        if head is None or exp is None or int(exp) <= now_us:
            return 0
        return int(head)

    def _delete_runs(self, metas: Sequence[bytes | str], index: str | None, now: str) -> int:
        deleted = 0
        for raw in metas:
            meta = raw.decode() if isinstance(raw, bytes) else raw
            idx = index or self._index(loads_plain(meta[len("veto:run:") :])[0])
            keys: list[str] = [meta, meta + ":e", meta + ":t", _EXPIRY, idx]
            deleted += int(self._calls.run(functools.partial(self._delete, keys=keys, args=[now])))
        return deleted

    def purge_expired(self, *, now: datetime) -> int:
        now_us = _us(now)
        metas = self._calls.run(lambda: self._client.zrangebyscore(_EXPIRY, "-inf", now_us))
        return self._delete_runs(list(metas), None, str(now_us))

    def erase(self, *, tenant: str | None, run_id: str | None = None) -> int:
        index = self._index(_tenant_key(tenant))
        if run_id is not None:
            return self._delete_runs([self._keys(tenant, run_id)[0]], index, "")
        metas = self._calls.run(lambda: self._client.smembers(index))
        return self._delete_runs(sorted(metas), index, "")

    def close(self) -> None:
        self._client.close()
