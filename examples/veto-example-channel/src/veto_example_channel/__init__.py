"""A third-party Veto approval channel: appends each new request to a JSON-lines file.

Registered through the ``veto`` entry-point group (see ``pyproject.toml``); Veto's
plugin manager loads it exactly like its built-in ``console`` and ``webhook``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from veto_core.approvals import ApprovalLinks, ApprovalRequest
from veto_core.hookspecs import ApprovalChannel, hookimpl

__all__ = ["ENV_FILE", "FileChannel", "veto_approval_channels"]

ENV_FILE = "VETO_EXAMPLE_CHANNEL_FILE"


class FileChannel:
    """``name`` is what a rule's ``approval.channels`` lists; ``notify`` delivers."""

    name = "example"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None:
        line = json.dumps(
            {
                "id": request.id,
                "tenant": request.tenant,
                "tool": request.tool,
                "args": request.args,  # already redacted by the policy's `redact:`
                "approvers": list(request.approvers),
                "expires_at": request.expires_at.isoformat(),
                "approve": links.approve_command,
            },
            sort_keys=True,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


@hookimpl
def veto_approval_channels() -> list[ApprovalChannel]:
    path = os.environ.get(ENV_FILE) or str(Path.home() / ".veto" / "example-channel.jsonl")
    return [FileChannel(Path(path))]
