"""``slack`` channel: a Block Kit message with **Approve** / **Deny** buttons.

Enabled when a bot token is configured (``VETO_SLACK_BOT_TOKEN`` or ``[slack]
bot_token`` in ``veto.toml``) and needs the ``slack`` extra (``slack-sdk``). The
message goes to ``VETO_SLACK_CHANNEL`` when set, else as a direct message to each
eligible approver that ``[slack] users`` maps to a Slack user id.

The buttons carry only the request id (``action_id`` ``veto_approve`` /
``veto_deny``, ``value`` = request id): nothing secret, nothing that decides by
itself. Clicks come back to ``veto serve`` at ``POST /slack/interactions``, which
verifies Slack's signature, refuses stale and replayed payloads, maps the Slack
user to a Veto approver and casts the vote through the approval service
(``veto_core.server.channels``).
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from veto_core.approvals.channels.common import UserDirectory, pretty_args
from veto_core.approvals.model import ApprovalLinks, ApprovalRequest, ApprovalState
from veto_core.config import ConfigError, SlackConfig, load_config
from veto_core.hookspecs import ApprovalChannel, hookimpl

if TYPE_CHECKING:
    from slack_sdk import WebClient

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "SlackChannel",
    "outcome_blocks",
    "request_blocks",
    "slack_client",
    "veto_approval_channels",
]

log = logging.getLogger("veto.approvals.slack")

APPROVE_ACTION = "veto_approve"
DENY_ACTION = "veto_deny"
ACTIONS_BLOCK = "veto_actions"
TIMEOUT_S = 5


def slack_client(config: SlackConfig) -> WebClient:
    """A ``WebClient`` for the configured token and API URL (short timeout)."""
    try:
        from slack_sdk import WebClient
    except ImportError as exc:
        raise RuntimeError("the Slack channel needs: pip install 'veto-core[slack]'") from exc
    if not config.bot_token:
        raise RuntimeError("VETO_SLACK_BOT_TOKEN is not set")
    return WebClient(token=config.bot_token, base_url=config.base_url, timeout=TIMEOUT_S)


def esc(text: object) -> str:
    """Escape text for Slack ``mrkdwn`` (``&``, ``<``, ``>``)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(at: _dt.datetime) -> str:
    ts = int(at.timestamp())
    fallback = at.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{ts}^{{date_short_pretty}} {{time}}|{fallback}>"


def _detail_blocks(request: ApprovalRequest) -> list[dict[str, Any]]:
    p = request.principal
    fields = [
        f"*Tool*\n`{esc(request.tool)}`",
        f"*Agent*\n{esc(p.agent or '-')}" + (f" (user {esc(p.user)})" if p.user else ""),
        f"*Tenant*\n{esc(request.tenant)}" + (f" ({esc(request.env)})" if request.env else ""),
        f"*Rule*\n{esc(', '.join(request.rule_ids) or '-')}",
        f"*Approvers*\n{esc(request.needs)}",
        f"*Expires*\n{_when(request.expires_at)}",
    ]
    args = esc(pretty_args(request).replace("```", "` ` `"))
    if len(args) > 2900:  # a section's text holds 3000 characters
        args = args[:2880] + "\n… (truncated)"
    return [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Approval needed: {request.tool}"[:150]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Why*\n"
                + esc("; ".join(request.reasons) or "the policy requires approval")[:2900],
            },
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Arguments*\n```{args}```"}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Veto request `{esc(request.id)}`"}],
        },
    ]


def request_blocks(request: ApprovalRequest) -> list[dict[str, Any]]:
    """The message for a new request: details and the two buttons."""
    return [
        *_detail_blocks(request),
        {
            "type": "actions",
            "block_id": ACTIONS_BLOCK,
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": request.id,
                },
                {
                    "type": "button",
                    "action_id": DENY_ACTION,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Deny"},
                    "value": request.id,
                },
            ],
        },
    ]


def outcome_text(request: ApprovalRequest) -> str:
    """One line: what happened to the request, who decided, when."""
    at = request.decided_at
    when = f" at {_when(at)}" if at else ""
    if request.state is ApprovalState.APPROVED:
        who = ", ".join(request.approved_by) or "?"
        return f":white_check_mark: *Approved* by {esc(who)}{when}"
    if request.state is ApprovalState.DENIED:
        deniers = [v.approver for v in request.votes if not v.approve]
        who = ", ".join(deniers) or "?"
        why = f": {esc(request.final_reason)}" if request.final_reason else ""
        return f":no_entry: *Denied* by {esc(who)}{when}{why}"
    if request.state is ApprovalState.EXPIRED:
        return f":hourglass: *Expired*{when}: nobody decided before the deadline"
    if request.state is ApprovalState.CANCELLED:
        return f":heavy_multiplication_x: *Cancelled*{when}"
    got = len(request.approved_by)
    return (
        f":hourglass_flowing_sand: {got} of {request.quorum} approvals "
        f"({esc(', '.join(request.approved_by))}); waiting for more"
    )


def outcome_blocks(request: ApprovalRequest) -> list[dict[str, Any]]:
    """The message after a click: details, the outcome, buttons only while pending."""
    blocks = _detail_blocks(request)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": outcome_text(request)}})
    if not request.state.final:
        blocks.append(request_blocks(request)[-1])
    return blocks


def fallback_text(request: ApprovalRequest) -> str:
    who = request.principal.agent or request.principal.user or "an agent"
    return f"Approval needed: {request.tool} requested by {who} (request {request.id})"


class SlackChannel:
    """Posts each request to Slack; ``client`` builds the ``WebClient`` (tests pass
    one aimed at a fake API), ``directory`` finds eligible approvers for DMs."""

    name = "slack"

    def __init__(
        self,
        config: SlackConfig,
        *,
        client: Callable[[], WebClient] | None = None,
        directory: UserDirectory | None = None,
    ) -> None:
        self.config = config
        self._client = client or (lambda: slack_client(config))
        self.directory = directory

    def destinations(self, request: ApprovalRequest) -> list[str]:
        if self.config.channel:
            return [self.config.channel]
        if not self.config.users:
            return []
        directory = self.directory or UserDirectory()
        names = {u.username for u in directory.eligible(request)}
        return [sid for sid, name in self.config.users.items() if name in names]

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None:
        targets = self.destinations(request)
        if not targets:
            raise RuntimeError(
                "no Slack destination: set VETO_SLACK_CHANNEL, or map eligible approvers "
                "in [slack] users of veto.toml"
            )
        client = self._client()
        blocks = request_blocks(request)
        failures: list[str] = []
        for target in targets:
            try:
                client.chat_postMessage(
                    channel=target, text=fallback_text(request), blocks=blocks, unfurl_links=False
                )
            except Exception as exc:
                failures.append(f"{target}: {type(exc).__name__}: {exc}")
        if failures:  # the service logs and records it; the request stays pending
            raise RuntimeError("Slack postMessage failed for " + "; ".join(failures))

    def send_test(self, target: str | None = None) -> str:
        """``veto channels test slack``: post a plain message; returns where it went."""
        where = target or self.config.channel
        if not where:
            raise RuntimeError("no Slack channel: set VETO_SLACK_CHANNEL or pass --to")
        self._client().chat_postMessage(
            channel=where, text=":wave: Veto test message: approval requests will appear here."
        )
        return where


@hookimpl
def veto_approval_channels() -> list[ApprovalChannel]:
    try:
        config = load_config()
    except ConfigError as exc:
        log.error("Slack channel disabled: %s", exc)
        return []
    if not config.slack.bot_token:
        return []
    return [SlackChannel(config.slack, directory=UserDirectory(config.db))]
