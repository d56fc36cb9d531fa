"""Crash-test child: 8 threads and 8 asyncio tasks record decisions; prints each id once
``record_decision`` / ``arecord_decision`` returned.

A line on stdout means "the caller was told allow, so the tool may now run".
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from veto_core.audit import open_audit
from veto_core.config import AuditConfig
from veto_core.model import Decision, Effect, Principal, ToolCall

# argv: URL [durability]
log = open_audit(sys.argv[1], config=AuditConfig(durability=(sys.argv[2:] or ["fsync"])[0]))
d = Decision(
    effect=Effect.ALLOW,
    rule_ids=("r",),
    deciding_rule_ids=("r",),
    reasons=("ok",),
    errors=(),
    policy_name="p",
    policy_revision="0" * 64,
)
out_lock = threading.Lock()
fd = sys.stdout.fileno()


def work(t: int) -> None:
    c = ToolCall(
        tool="pay",
        args={"t": t, "blob": "x" * 200},
        principal=Principal(agent="a", user=f"u{t}"),
        tenant=("acme", "beta")[t % 2],
    )
    while True:
        rec = log.record_decision(c, d, env="prod")
        line = f"{rec.tenant} {rec.seq} {rec.id}\n".encode()
        with out_lock:
            os.write(fd, line)


async def awork(t: int) -> None:
    c = ToolCall(
        tool="pay",
        args={"t": t, "blob": "y" * 200},
        principal=Principal(agent="a", user=f"v{t}"),
        tenant=("acme", "beta")[t % 2],
    )
    while True:
        rec = await log.arecord_decision(c, d, env="prod")
        line = f"{rec.tenant} {rec.seq} {rec.id}\n".encode()
        with out_lock:
            os.write(fd, line)


async def tasks() -> None:
    await asyncio.gather(*(awork(t) for t in range(8)))


os.write(fd, b"READY\n")
for t in range(8):
    threading.Thread(target=work, args=(t,), daemon=True).start()
asyncio.run(tasks())
