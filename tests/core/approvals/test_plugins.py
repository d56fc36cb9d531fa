"""Channels as plugins: the example third-party package is found through its `veto`
entry point and notified; the built-in webhook signs its POST; `veto plugins`."""

from __future__ import annotations

import http.server
import json
import os
import pwd
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from approval_helpers import call, make_veto
from click.testing import CliRunner

from veto_core.approvals.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    sign,
    verify_signature,
)
from veto_core.cli import main
from veto_core.plugins import BUILTIN_PLUGINS, describe_plugins, get_plugin_manager

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "veto-example-channel"


# --------------------------------------------------------------------------- example plugin


def _install(target: Path) -> subprocess.CompletedProcess[str]:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to install the example plugin package"
    cmd = [uv, "pip", "install", "--offline", "--no-deps", "--target", str(target), str(EXAMPLE)]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    real_cache = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "uv"
    if proc.returncode != 0 and real_cache.is_dir():
        # Other test packages may point HOME (and so uv's cache) at a temp dir: the
        # build backend (hatchling) is in the user's own cache.
        env["UV_CACHE_DIR"] = str(real_cache)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return proc


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package really installed (wheel built by its own build backend,
    offline) into a private target directory: the project's environment is left alone."""
    target = tmp_path_factory.mktemp("site")
    proc = _install(target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "veto_example_channel").is_dir()
    return target


def _run(code: str, site: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "VETO_DISABLE_PLUGINS"}
    full_env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(Path(__file__).parent)]),
        HOME=str(tmp_path),
        VETO_EXAMPLE_CHANNEL_FILE=str(tmp_path / "notified.jsonl"),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120
    )


_LIST = """
import json
from veto_core.plugins import describe_plugins
print(json.dumps([[p.name, p.source, list(p.channels)] for p in describe_plugins()]))
"""

_NOTIFY = """
from approval_helpers import call, make_veto
veto = make_veto({url!r}, channels="[example]")
auth = veto.authorize(call())
print(auth.approval.id)
veto.close()
"""


def test_the_example_plugin_is_discovered_through_its_entry_point(
    example_site: Path, tmp_path: Path
) -> None:
    proc = _run(_LIST, example_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {name: (source, channels) for name, source, channels in json.loads(proc.stdout)}
    assert plugins["example_channel"] == ("entry point veto-example-channel 0.1.0", ["example"])
    assert plugins["veto_core.approvals.channels.console"] == ("builtin", ["console"])
    # VETO_DISABLE_PLUGINS turns entry points off (built-ins stay).
    off = _run(_LIST, example_site, tmp_path, VETO_DISABLE_PLUGINS="1")
    names = [name for name, _, _ in json.loads(off.stdout)]
    assert "example_channel" not in names and names == list(BUILTIN_PLUGINS)


def test_the_example_plugin_receives_notifications(example_site: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'veto.db'}"
    proc = _run(_NOTIFY.format(url=url), example_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rid = proc.stdout.strip()
    (line,) = (tmp_path / "notified.jsonl").read_text().splitlines()
    note = json.loads(line)
    assert note["id"] == rid and note["tool"] == "pay" and note["tenant"] == "acme"
    assert note["approvers"] == ["role:finance"] and rid in note["approve"]
    assert "approval needed" not in proc.stderr  # the rule named only `example`, not `console`


def test_veto_plugins_command_lists_sources() -> None:
    result = CliRunner().invoke(main, ["plugins", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in rows] == list(BUILTIN_PLUGINS)
    assert {r["source"] for r in rows} == {"builtin"}
    webhook = next(r for r in rows if r["name"].endswith("webhook"))
    assert webhook["hooks"] == ["veto_approval_channels"]


def test_builtin_channels_register_like_any_plugin() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    channels = [c.name for answer in pm.hook.veto_approval_channels() for c in answer]
    assert channels == ["console"]  # webhook only when VETO_WEBHOOK_URL is set
    assert [p.name for p in describe_plugins(pm)] == list(BUILTIN_PLUGINS)


# --------------------------------------------------------------------------- webhook


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers.items()), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 204})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/veto", handler
    server.shutdown()
    server.server_close()


def test_webhook_posts_a_signed_request(
    hook_server: tuple[str, type[_Hook]], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = hook_server
    monkeypatch.setenv("VETO_WEBHOOK_URL", url)
    monkeypatch.setenv("VETO_WEBHOOK_SECRET", "s3cret")
    veto = make_veto(sqlite_url, channels="[webhook]")
    rid = veto.authorize(call(args={"amount": 500, "card": "4111"})).approval.id
    (headers, body), *_ = handler.received
    ts, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert signature == sign("s3cret", ts, body) and verify_signature("s3cret", ts, body, signature)
    assert abs(int(ts) - time.time()) < 10
    assert not verify_signature("wrong", ts, body, signature)
    assert not verify_signature("s3cret", ts, body + b" ", signature)
    assert not verify_signature(
        "s3cret", str(int(ts) - 301), body, sign("s3cret", str(int(ts) - 301), body)
    )
    payload = json.loads(body)
    assert payload["type"] == "approval.requested"
    assert payload["request"]["id"] == rid and payload["request"]["state"] == "pending"
    assert payload["request"]["args"] == {"amount": 500, "card": "[REDACTED]"}
    assert rid in payload["links"]["approve_command"]
    veto.close()


def test_a_failing_webhook_is_recorded_and_approves_nothing(
    hook_server: tuple[str, type[_Hook]], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = hook_server
    handler.status = 500
    monkeypatch.setenv("VETO_WEBHOOK_URL", url)
    monkeypatch.setenv("VETO_WEBHOOK_SECRET", "s3cret")
    veto = make_veto(sqlite_url)  # no channels listed: every enabled channel
    auth = veto.authorize(call())
    assert auth.approval.state.value == "pending" and not auth.run_tool
    (failed,) = veto.audit.query(outcome="approval_notify_failed")
    assert "webhook" in failed.reasons[0] and "500" in failed.reasons[0]
    veto.close()


def test_webhook_refuses_to_send_unsigned(sqlite_url: str) -> None:
    channel = WebhookChannel("http://127.0.0.1:9/never", None)
    veto = make_veto(sqlite_url)
    veto.approvals.use_channels([channel])
    veto.authorize(call())
    (failed,) = veto.audit.query(outcome="approval_notify_failed")
    assert "unsigned" in failed.reasons[0]
    veto.close()
