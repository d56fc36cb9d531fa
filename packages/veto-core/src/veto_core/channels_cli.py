"""``veto channels test slack|email``: send a test message through a channel's settings."""

from __future__ import annotations

import click

from veto_core.config import ConfigError, load_config

__all__ = ["channels_cli"]


@click.group("channels")
def channels_cli() -> None:
    """Approval channels (Slack, email): check their settings."""


@channels_cli.command("test")
@click.argument("channel", type=click.Choice(["slack", "email"]))
@click.option("--to", "to", default=None, help="Slack channel/user id, or email address.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="veto.toml to read (default: $VETO_CONFIG, ./veto.toml, ~/.veto/veto.toml).")  # fmt: skip
def test_cmd(channel: str, to: str | None, config_file: str | None) -> None:
    """Send a test message; exit 1 with the reason if it cannot be sent, 2 if the
    channel is not configured."""
    try:
        config = load_config(config_file)
        if channel == "slack":
            from veto_core.approvals.channels.slack import SlackChannel

            if not config.slack.bot_token:
                raise ConfigError("VETO_SLACK_BOT_TOKEN is not set")
            where = SlackChannel(config.slack).send_test(to)
            click.echo(f"slack: test message posted to {where}")
        else:
            from veto_core.approvals.channels.email import EmailChannel

            if not config.email.smtp_url:
                raise ConfigError("VETO_SMTP_URL is not set")
            if not to:
                raise ConfigError("--to ADDRESS is required for email")
            EmailChannel(config).send_test(to)
            click.echo(f"email: test message sent to {to}")
    except ConfigError as exc:  # not configured: a usage error (DESIGN.md 8)
        click.echo(f"{channel}: {exc}", err=True)
        raise SystemExit(2) from None
    except Exception as exc:
        click.echo(f"{channel}: test failed: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(1) from None
