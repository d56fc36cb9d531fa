"""``veto.toml`` + environment: the channels' settings and secrets (never the policy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veto_core.config import ConfigError, SmtpSettings, load_config

TOML = """
db = "sqlite:///from-file.db"
secret_key = "file-secret"
dashboard_url = "https://veto.example.com"

[slack]
bot_token = "xoxb-file"
signing_secret = "file-signing"
channel = "CFILE"
users = { U1 = "alice" }

[email]
smtp_url = "smtp://u:p%40ss@mail.example.com:587?starttls=1"
from = "veto@example.com"
token_ttl = 3600
"""


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "veto.toml"
    path.write_text(TOML)
    c = load_config(path, env={})
    assert c.source == path and c.db == "sqlite:///from-file.db"
    assert c.slack.bot_token == "xoxb-file" and c.slack.users == {"U1": "alice"}
    assert c.slack.base_url == "https://slack.com/api/"
    assert c.email.sender == "veto@example.com" and c.email.token_ttl_s == 3600
    env = {
        "VETO_SLACK_BOT_TOKEN": "xoxb-env",
        "VETO_SLACK_API_URL": "http://127.0.0.1:1/api",
        "VETO_SMTP_URL": "smtps://mail.example.com",
        "VETO_SECRET_KEY": "env-secret",
        "VETO_SLACK_CHANNEL": "",  # empty: the file's value stays
    }
    c = load_config(path, env=env)
    assert c.slack.bot_token == "xoxb-env" and c.secret_key == "env-secret"
    assert c.slack.base_url == "http://127.0.0.1:1/api/" and c.slack.channel == "CFILE"
    assert c.email.smtp().ssl and c.email.smtp().port == 465


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text('dashboard_url = "https://x"\n')
    assert load_config(env={"VETO_CONFIG": str(path)}).dashboard_url == "https://x"
    with pytest.raises(ConfigError, match="no such file"):
        load_config(env={"VETO_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("slack = 3", r"\[slack\] must be a table"),
        ("[slack]\nbot_token = 5", "slack.bot_token must be a string"),
        ("[slack]\nusers = { U1 = 2 }", "slack.users"),
        ("[email]\ntoken_ttl = -1", "token_ttl"),
        ("not toml [", "cannot read"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "veto.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path, env={})


def test_smtp_url() -> None:
    s = SmtpSettings.parse("smtp://u:p%40ss@mail.example.com:587?starttls=1")
    assert (s.host, s.port, s.username, s.password, s.starttls, s.ssl) == (
        "mail.example.com",
        587,
        "u",
        "p@ss",
        True,
        False,
    )
    s = SmtpSettings.parse("smtp://localhost")
    assert (s.port, s.username, s.starttls) == (25, None, False)
    for bad in ("http://x", "smtp://", "smtp://h:notaport"):
        with pytest.raises(ConfigError):
            SmtpSettings.parse(bad)
