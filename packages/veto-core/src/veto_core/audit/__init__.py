"""Veto's audit trail: durable, tamper-evident, queryable, exportable (DESIGN.md 4).

>>> audit = open_audit("sqlite:///veto.db")            # doctest: +SKIP
>>> rec = audit.record_decision(call, decision, env="prod", tenant="acme",
...                             redact=("args.password",), latency_us=12)  # doctest: +SKIP
>>> audit.verify().ok                                   # doctest: +SKIP
True
"""

from typing import TYPE_CHECKING

from veto_core._lazy import lazy_exports

if TYPE_CHECKING:
    from veto_core.audit.errors import (
        AuditError,
        AuditSchemaError,
        AuditStoreMissing,
        AuditUnavailable,
        CorruptRecord,
    )
    from veto_core.audit.log import (
        ENV_DB,
        AuditLog,
        EraseResult,
        PurgeResult,
        default_audit_url,
        open_audit,
        outcome_for,
        warn_best_effort,
    )
    from veto_core.audit.record import (
        DEFAULT_TENANT,
        ERASED,
        GENESIS_HASH,
        REDACTED,
        ApprovalInfo,
        AuditRecord,
        canonical_json,
        new_uuid7,
        redact_args,
    )
    from veto_core.audit.signing import Signer
    from veto_core.audit.sink import AuditQuery, AuditSink, Checkpoint, PolicyRevision, SinkConfig
    from veto_core.audit.verify import BrokenLink, TenantVerification, VerifyReport
    from veto_core.audit.witness import AuditWitness, WitnessConfig

__all__ = [
    "DEFAULT_TENANT",
    "ENV_DB",
    "ERASED",
    "GENESIS_HASH",
    "REDACTED",
    "ApprovalInfo",
    "AuditError",
    "AuditLog",
    "AuditQuery",
    "AuditRecord",
    "AuditSchemaError",
    "AuditSink",
    "AuditStoreMissing",
    "AuditUnavailable",
    "AuditWitness",
    "BrokenLink",
    "Checkpoint",
    "CorruptRecord",
    "EraseResult",
    "PolicyRevision",
    "PurgeResult",
    "Signer",
    "SinkConfig",
    "TenantVerification",
    "VerifyReport",
    "WitnessConfig",
    "canonical_json",
    "default_audit_url",
    "new_uuid7",
    "open_audit",
    "outcome_for",
    "redact_args",
    "warn_best_effort",
]

# Imported on first use: `veto` must start fast (DESIGN.md 8).
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "Signer": "veto_core.audit.signing",
        "AuditWitness": "veto_core.audit.witness",
        "WitnessConfig": "veto_core.audit.witness",
        **dict.fromkeys(
            (
                "AuditError",
                "AuditSchemaError",
                "AuditStoreMissing",
                "AuditUnavailable",
                "CorruptRecord",
            ),
            "veto_core.audit.errors",
        ),
        **dict.fromkeys(
            (
                "ENV_DB",
                "AuditLog",
                "EraseResult",
                "PurgeResult",
                "default_audit_url",
                "open_audit",
                "outcome_for",
                "warn_best_effort",
            ),
            "veto_core.audit.log",
        ),
        **dict.fromkeys(
            (
                "DEFAULT_TENANT",
                "ERASED",
                "GENESIS_HASH",
                "REDACTED",
                "ApprovalInfo",
                "AuditRecord",
                "canonical_json",
                "new_uuid7",
                "redact_args",
            ),
            "veto_core.audit.record",
        ),
        **dict.fromkeys(
            ("AuditQuery", "AuditSink", "Checkpoint", "PolicyRevision", "SinkConfig"),
            "veto_core.audit.sink",
        ),
        **dict.fromkeys(
            ("BrokenLink", "TenantVerification", "VerifyReport"), "veto_core.audit.verify"
        ),
    },
)
