"""Audit errors. Every storage failure surfaces as :class:`AuditUnavailable` (fail closed)."""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuditSchemaError",
    "AuditStoreMissing",
    "AuditUnavailable",
    "CorruptRecord",
    "schema_too_new",
]

from typing import Any


class AuditError(Exception):
    """Base class of audit-trail errors."""


class AuditUnavailable(AuditError):
    """The audit record could not be committed (or the store could not be read).

    Callers on the decision path must treat this as a deny with reason
    ``audit unavailable``: a tool never runs without its durable record.
    """


class AuditStoreMissing(AuditUnavailable):
    """Asked to inspect a store that does not exist (nothing was created)."""


class AuditSchemaError(AuditUnavailable):
    """The store's schema is newer than this Veto understands (or is unrecognizable)."""


def schema_too_new(current: int, supported: int) -> AuditSchemaError:
    """The refusal of a SQL store whose ``audit`` schema is newer than this code."""
    return AuditSchemaError(
        f"audit database schema version {current} is newer than this veto-core "
        f"supports ({supported}); upgrade veto-core to open it"
    )


class CorruptRecord(AuditError):
    """A stored row that cannot be decoded: evidence of tampering (verify names it)."""

    def __init__(self, tenant: str, seq: Any, record_id: str, message: str) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.seq = seq
        self.record_id = record_id
