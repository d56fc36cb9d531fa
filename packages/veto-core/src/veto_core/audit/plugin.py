"""Built-in audit sinks as a plugin: answers ``veto_audit_sinks`` for sqlite, postgresql, jsonl."""

from __future__ import annotations

from veto_core.audit.sink import AuditSink, SinkConfig
from veto_core.hookspecs import hookimpl

__all__ = ["veto_audit_sinks"]


@hookimpl
def veto_audit_sinks(config: SinkConfig) -> list[AuditSink]:
    if config.scheme == "sqlite":
        from veto_core.audit.sqlite import SqliteSink

        return [SqliteSink(config)]
    if config.scheme == "postgresql":
        from veto_core.audit.postgres import PostgresSink

        return [PostgresSink(config)]
    if config.scheme == "jsonl":
        from veto_core.audit.jsonl import JsonlSink

        return [JsonlSink(config)]
    return []
