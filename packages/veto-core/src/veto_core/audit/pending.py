"""The hot path of ``record_decision``: a record prepared outside the commit lock.

Everything that does not depend on the record's place in the chain (ids, keyed
digests, JSON fragments) is computed by the calling thread, concurrently with
other callers. Under the sink's lock only ``seq``/``prev_hash``/``hash`` remain.

:meth:`PendingRecord.seal` assembles the hashed view by string concatenation of
canonical fragments; it produces byte-for-byte ``canonical_json(hash_view(r))``
(a test checks this against the reference :func:`~veto_core.audit.record.hash_view`).
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from json.encoder import encode_basestring
from typing import Any

import orjson

from veto_core.audit.record import (
    ApprovalInfo,
    AuditRecord,
    SealedRecord,
    canonical_str,
    str_list_json,
    ts_from_us,
    us_to_iso,
)
from veto_core.model import Principal

__all__ = ["PendingRecord", "principal_fragments"]

_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS
_Fragment = orjson.Fragment


def _s(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def principal_fragments(p: Principal, user_dig: str | None) -> tuple[str, str]:
    """(stored JSON of the principal, its hashed view with ``user_digest`` for ``user``)."""
    roles = str_list_json(p.roles)
    head = f'{{"agent":{_s(p.agent)},"roles":{roles},"session":{_s(p.session)},"tenant":{_s(p.tenant)},'
    return f'{head}"user":{_s(p.user)}}}', f'{head}"user_digest":{_s(user_dig)}}}'


class PendingRecord:
    """A record waiting for its chain position (not a public value: see :class:`AuditRecord`)."""

    __slots__ = (
        "approval",
        "approval_json",
        "args",
        "args_digest",
        "args_json",
        "args_mac",
        "effect",
        "env",
        "errors",
        "framework",
        "id",
        "latency_us",
        "outcome",
        "policy_name",
        "policy_revision",
        "principal",
        "principal_json",
        "principal_view",
        "reasons",
        "row",
        "rule_ids",
        "run_id",
        "tenant",
        "tool",
        "tool_call_id",
        "ts_us",
        "user_digest",
    )

    def __init__(
        self,
        id: str,
        ts_us: int,
        tenant: str,
        env: str | None,
        principal: Principal,
        principal_json: str,
        principal_view: str,
        framework: str | None,
        run_id: str | None,
        tool: str,
        tool_call_id: str | None,
        args: Any,
        args_json: str | None,
        args_digest: str,
        effect: str | None,
        outcome: str,
        rule_ids: tuple[str, ...],
        reasons: tuple[str, ...],
        errors: tuple[str, ...],
        policy_name: str | None,
        policy_revision: str | None,
        approval: ApprovalInfo | None,
        latency_us: int,
        user_digest: str | None,
        args_mac: str,
    ) -> None:
        self.id = id
        self.ts_us = ts_us
        self.tenant = tenant
        self.env = env
        self.principal = principal
        self.principal_json = principal_json
        self.principal_view = principal_view
        self.framework = framework
        self.run_id = run_id
        self.tool = tool
        self.tool_call_id = tool_call_id
        self.args = args
        self.args_json = args_json
        self.args_digest = args_digest
        self.effect = effect
        self.outcome = outcome
        self.rule_ids = rule_ids
        self.reasons = reasons
        self.errors = errors
        self.policy_name = policy_name
        self.policy_revision = policy_revision
        self.approval = approval
        self.approval_json = None if approval is None else canonical_str(approval.to_dict())
        self.latency_us = latency_us
        self.user_digest = user_digest
        self.args_mac = args_mac
        self.row: tuple[Any, ...] = ()

    def _view_text(
        self,
        seq: int,
        prev_hash: str,
        rule_ids: str,
        reasons: str,
        errors: str,
        approval: str,
        ts_iso: str,
    ) -> bytes:
        # Keys in sorted order: canonical_json(hash_view(record)).
        return (
            f'{{"approval":{approval},"args_digest":{_s(self.args_digest)},'
            f'"effect":{_s(self.effect)},"env":{_s(self.env)},"errors":{errors},'
            f'"framework":{_s(self.framework)},"id":{_s(self.id)},'
            f'"latency_us":{int(self.latency_us)},"outcome":{_s(self.outcome)},'
            f'"policy_name":{_s(self.policy_name)},"policy_revision":{_s(self.policy_revision)},'
            f'"prev_hash":{_s(prev_hash)},"principal":{self.principal_view},'
            f'"reasons":{reasons},"rule_ids":{rule_ids},"run_id":{_s(self.run_id)},'
            f'"seq":{int(seq)},"tenant":{_s(self.tenant)},"tool":{_s(self.tool)},'
            f'"tool_call_id":{_s(self.tool_call_id)},"ts":"{ts_iso}"}}'
        ).encode()

    def seal(self, seq: int, prev_hash: str) -> SealedRecord:
        """Fix the chain position; sets :attr:`row` (columns in ``sink.COLUMNS`` order)."""
        rule_ids = str_list_json(self.rule_ids)
        reasons = str_list_json(self.reasons)
        errors = str_list_json(self.errors)
        approval = "null" if self.approval_json is None else self.approval_json
        ts_iso = us_to_iso(self.ts_us)
        try:
            # orjson sorts the keys and writes strings, ints and lists of strings exactly
            # as the json encoder does: canonical_json(hash_view(record)).
            view = _dumps(
                {
                    "approval": _Fragment(approval),
                    "args_digest": self.args_digest,
                    "effect": self.effect,
                    "env": self.env,
                    "errors": self.errors,
                    "framework": self.framework,
                    "id": self.id,
                    "latency_us": int(self.latency_us),
                    "outcome": self.outcome,
                    "policy_name": self.policy_name,
                    "policy_revision": self.policy_revision,
                    "prev_hash": prev_hash,
                    "principal": _Fragment(self.principal_view),
                    "reasons": self.reasons,
                    "rule_ids": self.rule_ids,
                    "run_id": self.run_id,
                    "seq": int(seq),
                    "tenant": self.tenant,
                    "tool": self.tool,
                    "tool_call_id": self.tool_call_id,
                    "ts": ts_iso,
                },
                option=_SORT,
            )
        except TypeError:  # a lone surrogate or an int beyond 64 bits: the slow, exact way
            view = self._view_text(seq, prev_hash, rule_ids, reasons, errors, approval, ts_iso)
        h = hashlib.sha256(prev_hash.encode("ascii") + view).hexdigest()
        self.row = (
            self.tenant,
            seq,
            self.id,
            self.ts_us,
            self.env,
            self.principal_json,
            self.framework,
            self.run_id,
            self.tool,
            self.tool_call_id,
            self.args_json,
            self.args_digest,
            self.effect,
            self.outcome,
            rule_ids,
            reasons,
            errors,
            self.policy_name,
            self.policy_revision,
            self.approval_json,
            self.latency_us,
            prev_hash,
            h,
            self.user_digest,
            self.args_mac,
        )
        rec = _new_record(
            self.id,
            seq,
            ts_from_us(self.ts_us),
            self.tenant,
            self.env,
            self.principal,
            self.framework,
            self.run_id,
            self.tool,
            self.tool_call_id,
            self.args,
            self.args_digest,
            self.effect,
            self.outcome,
            self.rule_ids,
            self.reasons,
            self.errors,
            self.policy_name,
            self.policy_revision,
            self.approval,
            self.latency_us,
            prev_hash,
            h,
        )
        sealed: SealedRecord = _new_sealed(rec, self.user_digest, self.args_mac)
        return sealed


def _record_factory(cls: type) -> Any:
    """``cls(**fields)`` (a frozen, slotted dataclass without ``__post_init__``), with
    the fields positional and without the frozen dataclass's ``object.__setattr__``
    per field: the slots' own setters, called in one generated function (a third of
    the cost; the result is the same frozen value)."""
    names = [f.name for f in fields(cls)]
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    env.update({f"_set_{n}": getattr(cls, n).__set__ for n in names})
    body = "\n".join(f"    _set_{n}(o, {n})" for n in names)
    src = f"def make({', '.join(names)}):\n    o = _new(_cls)\n{body}\n    return o\n"
    exec(src, env)
    return env["make"]


_new_record = _record_factory(AuditRecord)
_new_sealed = _record_factory(SealedRecord)
