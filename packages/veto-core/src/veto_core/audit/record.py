"""The audit record, its canonical serialization, and the hash-chain arithmetic.

Everything that is hashed, MACed or compared goes through :func:`canonical_json`
(sorted keys, no whitespace, UTF-8, non-ASCII kept as is): there is exactly one
serialization, so a record read back from any sink re-hashes to the same value.

Chain rule (DESIGN.md 4)::

    hash = SHA-256(prev_hash || canonical_json(hash_view(record)))

``prev_hash`` is the previous record's hash as 64 lowercase hex characters (ASCII);
the first record of a tenant's chain has ``prev_hash = GENESIS_HASH`` (64 zeros).
``hash_view`` is the record without ``args`` and ``hash``; the user id inside
``principal`` is replaced by its keyed digest (``user_digest``), exactly as
``args`` is represented by ``args_digest``. That is what lets ``erase`` remove a
data subject's arguments and user id while the chain still verifies.

Two keyed values are stored next to each record (not fields of the record):
``user_digest`` (HMAC of the user id, part of the hashed view) and ``args_mac``
(HMAC of the stored, redacted ``args``) so that editing stored ``args`` is
detected too, although ``args`` are outside the chain.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import fnmatch
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import uuid_utils

from veto_core.model import Principal

__all__ = [
    "DEFAULT_TENANT",
    "ERASED",
    "GENESIS_HASH",
    "REDACTED",
    "ApprovalInfo",
    "ArgumentsError",
    "AuditRecord",
    "SealedRecord",
    "args_mac",
    "canonical_json",
    "check_args",
    "compute_hash",
    "hash_view",
    "new_uuid7",
    "redact_args",
    "to_jsonable",
    "ts_from_us",
    "ts_to_iso",
    "ts_to_us",
    "user_digest",
]

GENESIS_HASH = "0" * 64
REDACTED = "[REDACTED]"
ERASED = "[ERASED]"
DEFAULT_TENANT = "default"
"""Chain key for calls that carry no tenant at all."""

_UTC = _dt.UTC


# --------------------------------------------------------------------------- JSON


class ArgumentsError(TypeError):
    """Tool arguments that are not JSON values and have no unambiguous tagged form
    (DESIGN.md 7): the call is refused, never digested as something else."""


#: Type tags: a tagged value is an object with exactly one key, ``"$" + tag``. Keys of
#: plain objects that start with ``"$"`` get one more ``"$"`` (``"$x"`` -> ``"$$x"``), so
#: no plain JSON value ever has the canonical form of a tagged one, and two different
#: values never share an ``args_digest``.
TAG = "$"
_SCALARS = (str, int, float, bool, type(None))


def _escape_key(key: str) -> str:
    return TAG + key if key.startswith(TAG) else key


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {TAG + tag: value}


def to_jsonable(value: Any, path: str = "args") -> Any:
    """``value`` as a JSON value, with a type tag for the Python types that have an
    unambiguous one; raises :class:`ArgumentsError` for anything else (DESIGN.md 7).

    JSON values (str, int, float, bool, None, lists, str-keyed dicts) map to
    themselves, except that object keys starting with ``$`` are escaped with one more
    ``$``. Tagged: ``bytes``/``bytearray``/``memoryview`` (``$bytes``, base64),
    ``tuple`` (``$tuple``), ``set``/``frozenset`` (``$set``, sorted by canonical
    JSON), a dict with a non-string key (``$map``: sorted ``[key, value]`` pairs),
    ``datetime``/``date``/``time`` (``$datetime``/``$date``/``$time``, ISO 8601),
    ``Decimal`` (``$decimal``), ``UUID`` (``$uuid``). Refused: NaN and infinities (no
    JSON form), enums, dataclasses and every other object.
    """
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ArgumentsError(f"{path} is {value!r}, which is not a JSON number")
    if isinstance(value, enum.Enum):
        raise ArgumentsError(
            f"{path} is the enum member {type(value).__qualname__}.{value.name}, not a JSON "
            "value; pass its value"
        )
    if isinstance(value, _SCALARS):  # subclasses of str/int/float/bool: their plain value
        for base in (bool, int, float, str):
            if isinstance(value, base):
                return to_jsonable(base(value), path)
    if isinstance(value, Mapping):
        if all(type(k) is str for k in value):
            return {_escape_key(k): to_jsonable(v, f"{path}.{k}") for k, v in value.items()}
        pairs = [
            [to_jsonable(k, f"{path} key {k!r}"), to_jsonable(v, f"{path}[{k!r}]")]
            for k, v in value.items()
        ]
        pairs.sort(key=lambda kv: _ENCODER.encode(kv[0]))
        return _tagged("map", pairs)
    if type(value) is list:
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return _tagged("tuple", [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)])
    if isinstance(value, list):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v, f"{path} item") for v in value]
        return _tagged("set", sorted(items, key=_ENCODER.encode))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _tagged("bytes", base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, _dt.datetime):
        return _tagged("datetime", value.isoformat())
    if isinstance(value, _dt.date):
        return _tagged("date", value.isoformat())
    if isinstance(value, _dt.time):
        return _tagged("time", value.isoformat())
    if isinstance(value, decimal.Decimal):
        return _tagged("decimal", str(value))
    if isinstance(value, uuid.UUID):
        return _tagged("uuid", str(value))
    raise ArgumentsError(
        f"{path} is a {type(value).__qualname__}, not a JSON value (str, int, float, bool, "
        "null, list or string-keyed object); convert it before the call"
    )


_PLAIN_SCALARS = frozenset((str, int, bool, type(None)))


def _is_plain(value: Any) -> bool:
    """JSON values only, no object key starting with ``$`` (the common case: the C
    encoder's text is then the canonical form as it is). On the hot path: ~half the
    cost of encoding."""
    return _plain_kind(value) != 0


def _plain_kind(value: Any) -> int:
    """0: not plain JSON (see :func:`_is_plain`); 1: plain, orjson writes its canonical
    form; 2: plain with a float that only ``json`` writes canonically.

    Without floats orjson writes exactly the bytes of the canonical ``json`` encoder
    (sorted keys, no whitespace, the same string escapes; tested), in a tenth of the
    time. Floats with an exponent stay with ``json``: orjson spells them differently
    (``1e16`` against ``1e+16``), and the canonical form must never change.
    """
    t = type(value)
    if t in _PLAIN_SCALARS:
        return 1
    if t is dict:
        kind = 1
        for k, v in value.items():
            if type(k) is not str or k[:1] == TAG:
                return 0
            if type(v) not in _PLAIN_SCALARS:
                sub = _plain_kind(v)
                if sub == 0:
                    return 0
                if sub == 2:
                    kind = 2
        return kind
    if t is list:
        kind = 1
        for v in value:
            if type(v) not in _PLAIN_SCALARS:
                sub = _plain_kind(v)
                if sub == 0:
                    return 0
                if sub == 2:
                    kind = 2
        return kind
    if t is float:
        if value - value != 0.0:  # not finite (inf - inf and NaN are NaN)
            return 0
        # Where repr() writes no exponent, orjson writes the same digits (tested).
        return 1 if value == 0.0 or 1e-4 <= abs(value) < 1e16 else 2
    return 0


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
canonical_str = _ENCODER.encode
"""Canonical JSON as ``str`` (what SQL sinks store)."""


def canonical_json(value: Any) -> bytes:
    """The single serialization used for hashing: sorted keys, no whitespace, UTF-8."""
    return _ENCODER.encode(value).encode("utf-8")


_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS


def encode_plain(value: Any, kind: int) -> str:
    """Canonical JSON of a plain value (``kind`` from :func:`_plain_kind`; 0 or 2: the
    ``json`` encoder, which is canonical for every JSON value)."""
    if kind == 1:
        try:
            return _dumps(value, option=_SORT).decode()
        except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a lone surrogate
            pass
    return _ENCODER.encode(value)


def canonical_plain(value: Any) -> str:
    """:func:`canonical_str` of a plain JSON value, through orjson where that is the same."""
    return encode_plain(value, _plain_kind(value))


def str_list_json(values: Iterable[str]) -> str:
    """Canonical JSON of a list of strings (rule ids, reasons, errors, roles)."""
    if type(values) is tuple:  # a Decision's tuples repeat: remember their text
        hit = _LIST_JSON.get(values)
        if hit is not None:
            return hit
    items = list(values)
    try:
        text = _dumps(items).decode()
    except TypeError:  # a lone surrogate: the json encoder's text (fails later, in UTF-8)
        text = _ENCODER.encode(items)
    if type(values) is tuple and all(type(v) is str for v in values):
        if len(_LIST_JSON) >= 4096:
            _LIST_JSON.clear()
        _LIST_JSON[values] = text
    return text


_LIST_JSON: dict[tuple[Any, ...], str] = {}


def loads_plain(text: str) -> Any:
    """Parse canonical JSON written by :func:`encode_plain` (a fresh copy of args)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson cannot parse (ints beyond 64 bits)
        return json.loads(text)


def check_args(args: Mapping[str, Any]) -> None:
    """Raise :class:`ArgumentsError` unless ``args`` are JSON values or have a tagged
    form (DESIGN.md 7). Cheap for plain JSON (no copy)."""
    try:
        if not (type(args) is dict and _is_plain(args)):
            to_jsonable(args)
    except RecursionError:
        raise ArgumentsError("args are nested too deeply to be JSON values") from None


def plain_args_json(args: Mapping[str, Any]) -> tuple[Any, str]:
    """``(JSON args, canonical JSON)``: plain JSON as it is (the C encoder), anything
    else through :func:`to_jsonable` (tagged, or :class:`ArgumentsError`)."""
    plain, text, _ = plain_args_kind(args)
    return plain, text


def plain_args_kind(args: Mapping[str, Any]) -> tuple[Any, str, int]:
    """:func:`plain_args_json` and the encoder kind of the JSON args (0 for tagged
    ones): a redacted copy of them only replaces values by strings, so
    ``encode_plain(redacted, kind)`` is its canonical JSON without a second walk."""
    try:
        if type(args) is dict:
            kind = _plain_kind(args)
            if kind:
                return args, encode_plain(args, kind), kind
        plain = to_jsonable(args)
        return plain, _ENCODER.encode(plain), 0
    except RecursionError:
        raise ArgumentsError("args are nested too deeply to be JSON values") from None


# --------------------------------------------------------------------------- time / ids


def ts_to_us(ts: _dt.datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    delta = ts - _dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def ts_from_us(us: int) -> _dt.datetime:
    sec, frac = divmod(us, 1_000_000)
    cached_sec, base = _TS_SECOND[0]  # one tuple: threads never see half an update
    if cached_sec == sec:  # records come in bursts within one second: replace() is cheap
        return base.replace(microsecond=frac)  # type: ignore[no-any-return]
    ts = _dt.datetime(1970, 1, 1, tzinfo=_UTC) + _dt.timedelta(microseconds=us)
    _TS_SECOND[0] = (sec, ts.replace(microsecond=0))
    return ts


_TS_SECOND: list[tuple[Any, Any]] = [(None, None)]


def ts_to_iso(ts: _dt.datetime) -> str:
    """UTC, microsecond precision, ``Z`` suffix: ``2025-01-31T12:00:00.000000Z``."""
    return us_to_iso(ts_to_us(ts))


_ISO_SECOND: list[tuple[int | None, str]] = [(None, "")]


def us_to_iso(us: int) -> str:
    sec, frac = divmod(us, 1_000_000)
    cached_sec, prefix = _ISO_SECOND[0]  # one tuple: threads never see half an update
    if cached_sec != sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        if sec < 0 or len(prefix) != 19:  # outside time.gmtime's comfortable range
            return ts_from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _ISO_SECOND[0] = (sec, prefix)
    return f"{prefix}.{frac:06d}Z"


def new_uuid7() -> str:
    """RFC 9562 UUIDv7 (48-bit Unix ms timestamp, version 7, random bits), monotonic
    within a process: uuid-utils (Rust) keeps a counter for ids in the same millisecond."""
    return str(_uuid7())


_uuid7 = uuid_utils.uuid7


# --------------------------------------------------------------------------- record


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalInfo:
    """The approval a record refers to: request id, who approved/voted, via which channel, when."""

    id: str
    approvers: tuple[str, ...] = ()
    channel: str | None = None
    decided_at: _dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "approvers": list(self.approvers),
            "channel": self.channel,
            "decided_at": None if self.decided_at is None else ts_to_iso(self.decided_at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ApprovalInfo:
        decided = d.get("decided_at")
        return cls(
            id=str(d["id"]),
            approvers=tuple(d.get("approvers") or ()),
            channel=d.get("channel"),
            decided_at=None if decided is None else _parse_iso(decided),
        )


def _parse_iso(s: str) -> _dt.datetime:
    ts = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=_UTC)
    return ts


def principal_to_dict(p: Principal) -> dict[str, Any]:
    return {
        "agent": p.agent,
        "roles": list(p.roles),
        "tenant": p.tenant,
        "user": p.user,
        "session": p.session,
    }


def principal_from_dict(d: Mapping[str, Any]) -> Principal:
    return Principal(
        agent=d.get("agent"),
        roles=tuple(d.get("roles") or ()),
        tenant=d.get("tenant"),
        user=d.get("user"),
        session=d.get("session"),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRecord:
    """One audit record: one per decision and one per approval state change (DESIGN.md 4).

    ``args`` are stored after redaction (``None`` once erased); ``args_digest`` is
    ``HMAC-SHA256(tenant key, canonical_json(unredacted args))``.
    """

    id: str
    seq: int
    ts: _dt.datetime
    tenant: str
    env: str | None
    principal: Principal
    framework: str | None
    run_id: str | None
    tool: str
    tool_call_id: str | None
    args: Mapping[str, Any] | None
    args_digest: str
    effect: str | None
    outcome: str
    rule_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    policy_name: str | None
    policy_revision: str | None
    approval: ApprovalInfo | None
    latency_us: int
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (exports, ``--json``); ``ts`` as ISO-8601 UTC."""
        return {
            "id": self.id,
            "seq": self.seq,
            "ts": ts_to_iso(self.ts),
            "tenant": self.tenant,
            "env": self.env,
            "principal": principal_to_dict(self.principal),
            "framework": self.framework,
            "run_id": self.run_id,
            "tool": self.tool,
            "tool_call_id": self.tool_call_id,
            "args": None if self.args is None else dict(self.args),
            "args_digest": self.args_digest,
            "effect": self.effect,
            "outcome": self.outcome,
            "rule_ids": list(self.rule_ids),
            "reasons": list(self.reasons),
            "errors": list(self.errors),
            "policy_name": self.policy_name,
            "policy_revision": self.policy_revision,
            "approval": None if self.approval is None else self.approval.to_dict(),
            "latency_us": self.latency_us,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditRecord:
        appr = d.get("approval")
        args = d.get("args")
        return cls(
            id=str(d["id"]),
            seq=int(d["seq"]),
            ts=_parse_iso(str(d["ts"])),
            tenant=str(d["tenant"]),
            env=d.get("env"),
            principal=principal_from_dict(d.get("principal") or {}),
            framework=d.get("framework"),
            run_id=d.get("run_id"),
            tool=str(d["tool"]),
            tool_call_id=d.get("tool_call_id"),
            args=None if args is None else dict(args),
            args_digest=str(d["args_digest"]),
            effect=d.get("effect"),
            outcome=str(d["outcome"]),
            rule_ids=tuple(d.get("rule_ids") or ()),
            reasons=tuple(d.get("reasons") or ()),
            errors=tuple(d.get("errors") or ()),
            policy_name=d.get("policy_name"),
            policy_revision=d.get("policy_revision"),
            approval=None if appr is None else ApprovalInfo.from_dict(appr),
            latency_us=int(d.get("latency_us") or 0),
            prev_hash=str(d["prev_hash"]),
            hash=str(d["hash"]),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class SealedRecord:
    """A record as stored: the record plus the two keyed values kept beside it."""

    record: AuditRecord
    user_digest: str | None
    args_mac: str


# --------------------------------------------------------------------------- keyed digests


def args_digest(key: bytes, args: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of the canonical *unredacted* arguments (what approvals bind to)."""
    return digest_json(key, plain_args_json(args)[1])


def digest_json(key: bytes, canonical: str) -> str:
    return hmac.digest(key, canonical.encode("utf-8"), "sha256").hex()


def keyed_sha256(key: bytes, prefix: bytes = b"") -> Any:
    """An HMAC-SHA256 keyed once (and fed ``prefix``): ``.copy()`` it per message instead
    of keying a new HMAC each time. OpenSSL's object where there is one (its ``copy`` is
    C, half the cost of :func:`hmac.digest`)."""
    try:
        import _hashlib

        return _hashlib.hmac_new(key, prefix, "sha256")
    except (ImportError, AttributeError, ValueError):  # no OpenSSL HMAC: the pure-Python one
        return hmac.new(key, prefix, "sha256")


def user_digest(key: bytes, user: str | None) -> str | None:
    if user is None:
        return None
    return hmac.digest(key, b"user\x00" + user.encode("utf-8"), "sha256").hex()


def args_mac(key: bytes, stored_args: Mapping[str, Any] | None) -> str:
    """MAC over the args *as stored* (redacted, or ``null`` once erased)."""
    return mac_json(key, canonical_str(None if stored_args is None else stored_args))


def mac_json(key: bytes, stored_canonical: str) -> str:
    return hmac.digest(key, b"args\x00" + stored_canonical.encode("utf-8"), "sha256").hex()


# --------------------------------------------------------------------------- hashing


def hash_view(rec: AuditRecord, user_dig: str | None) -> dict[str, Any]:
    """The part of the record the chain covers: everything but ``args`` and ``hash``."""
    p = rec.principal
    return {
        "id": rec.id,
        "seq": rec.seq,
        "ts": ts_to_iso(rec.ts),
        "tenant": rec.tenant,
        "env": rec.env,
        "principal": {
            "agent": p.agent,
            "roles": list(p.roles),
            "tenant": p.tenant,
            "user_digest": user_dig,
            "session": p.session,
        },
        "framework": rec.framework,
        "run_id": rec.run_id,
        "tool": rec.tool,
        "tool_call_id": rec.tool_call_id,
        "args_digest": rec.args_digest,
        "effect": rec.effect,
        "outcome": rec.outcome,
        "rule_ids": list(rec.rule_ids),
        "reasons": list(rec.reasons),
        "errors": list(rec.errors),
        "policy_name": rec.policy_name,
        "policy_revision": rec.policy_revision,
        "approval": None if rec.approval is None else rec.approval.to_dict(),
        "latency_us": rec.latency_us,
        "prev_hash": rec.prev_hash,
    }


def compute_hash(rec: AuditRecord, user_dig: str | None) -> str:
    h = hashlib.sha256(rec.prev_hash.encode("ascii"))
    h.update(canonical_json(hash_view(rec, user_dig)))
    return h.hexdigest()


# --------------------------------------------------------------------------- redaction


@dataclass(frozen=True, slots=True)
class _Pattern:
    segments: tuple[tuple[re.Pattern[str], bool], ...]  # (key glob, descend into list items)
    anywhere: bool  # pattern without "args." prefix: matches at any depth


_SEG = re.compile(r"^(?P<key>.*?)(?P<star>\[\*\]|\[all\])?$")


def compile_redactions(patterns: Iterable[str]) -> tuple[_Pattern, ...]:
    """Compile policy ``redact:`` entries.

    ``args.password`` / ``args.*token*`` / ``args.card.number`` / ``args.items[*].card``:
    dot-separated key globs below ``args``, matched case-insensitively (redaction
    errs on the side of hiding). An entry that does not start with ``args.`` matches
    a key at any depth (``"*secret*"`` hides every key containing "secret").
    """
    out: list[_Pattern] = []
    for raw in patterns:
        text = raw.strip()
        anywhere = True
        if text == "args" or text.startswith("args.") or text.startswith("args["):
            anywhere = False
            text = text[4:].lstrip(".")
        if not text:
            raise ValueError(f"redact pattern {raw!r} names no field")
        segs: list[tuple[re.Pattern[str], bool]] = []
        for part in text.split("."):
            m = _SEG.match(part)
            assert m is not None
            key = m.group("key") or "*"
            segs.append(
                (re.compile(fnmatch.translate(key), re.IGNORECASE), m.group("star") is not None)
            )
        out.append(_Pattern(tuple(segs), anywhere))
    return tuple(out)


def _redact(value: Any, pats: tuple[_Pattern, ...], states: list[tuple[_Pattern, int]]) -> Any:
    if isinstance(value, (list, tuple)):
        # Lists are transparent: a pattern applies to each element.
        return [_redact(v, pats, states) for v in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        k = str(k)
        hit = False
        nxt: list[tuple[_Pattern, int]] = []
        for pat, idx in states:
            seg, _ = pat.segments[idx]
            if seg.match(k):
                if idx + 1 == len(pat.segments):
                    hit = True
                    break
                nxt.append((pat, idx + 1))
        if hit:
            out[k] = REDACTED
            continue
        nxt.extend((p, 0) for p in pats if p.anywhere)
        out[k] = _redact(v, pats, nxt) if nxt else v
    return out


def redact_args(args: Mapping[str, Any], patterns: Iterable[str] | tuple[_Pattern, ...]) -> Any:
    """Return a JSON-plain copy of ``args`` with matching values replaced by ``"[REDACTED]"``."""
    plain = plain_args_json(args)[0]
    pats = _compiled(patterns)
    if not pats:
        return plain
    return _redact(plain, pats, [(p, 0) for p in pats])


def redact_plain(plain: Any, patterns: Iterable[str]) -> Any:
    """Redact already JSON-plain args (hot path: no copy when no pattern is given)."""
    plan = _PLANS.get(patterns) if type(patterns) is tuple else None
    if plan is None:
        plan = _plan(patterns)
    pats, top = plan
    if not pats:
        return plain
    if top is not None and type(plain) is dict:
        # Only ``args.<glob>`` patterns: what _redact does, without its per-key state.
        return {k: REDACTED if top(k) else v for k, v in plain.items()}
    return _redact(plain, pats, [(p, 0) for p in pats])


_PLANS: dict[tuple[Any, ...], tuple[tuple[_Pattern, ...], Any]] = {}


def _plan(patterns: Iterable[str]) -> tuple[tuple[_Pattern, ...], Any]:
    """The compiled patterns, and one matcher for all their keys when every pattern
    names one key right below ``args`` (else None): a key is redacted when any
    pattern's anchored glob matches it, i.e. when their alternation does."""
    pats = _compiled(patterns)
    ok = bool(pats) and all(not p.anywhere and len(p.segments) == 1 for p in pats)
    top = (
        re.compile("|".join(f"(?:{p.segments[0][0].pattern})" for p in pats), re.IGNORECASE).match
        if ok
        else None
    )
    plan = (pats, top)
    if type(patterns) is tuple and len(_PLANS) < 256:
        _PLANS[patterns] = plan
    return plan


def _compiled(patterns: Iterable[str] | tuple[_Pattern, ...]) -> tuple[_Pattern, ...]:
    if isinstance(patterns, tuple) and all(isinstance(p, _Pattern) for p in patterns):
        return patterns
    return _redaction_cache(tuple(str(p) for p in patterns))


_CACHE: dict[tuple[str, ...], tuple[_Pattern, ...]] = {}


def _redaction_cache(key: tuple[str, ...]) -> tuple[_Pattern, ...]:
    pats = _CACHE.get(key)
    if pats is None:
        pats = compile_redactions(key)
        if len(_CACHE) < 256:
            _CACHE[key] = pats
    return pats
