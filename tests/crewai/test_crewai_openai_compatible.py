"""CrewAI's real OpenAI provider (``crewai.LLM``, native function calling over HTTP) with the
Veto hooks installed, fully offline: a local HTTP server replays a hand-written cassette of
OpenAI ``chat.completions`` responses and records what CrewAI sent back to the "model"."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from crew_helpers import make_crew, make_tool

import veto_crewai
from contract import POLICY, TOOL_SPECS, Counter
from crewai import LLM
from veto_core import Principal, Veto

CASSETTE = Path(__file__).with_name("cassettes") / "openai_chat_tool_calls.json"


class Replay:
    def __init__(self, interactions: list[dict[str, Any]]) -> None:
        self.interactions = interactions
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            i = len(self.requests)
            self.requests.append({"path": path, "body": body})
            want = self.interactions[min(i, len(self.interactions) - 1)]
        assert want["request"]["path"] == path, (want, path)
        return want["response"]  # type: ignore[no-any-return]


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Replay, str]]:
    data = json.loads(CASSETTE.read_text())
    rep = Replay(data["interactions"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            payload = json.dumps(rep.next(self.path, body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-offline-test")
    try:
        yield rep, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["install", "guard_tools"])
def test_openai_provider_path_model_sees_veto_reason(
    replay: tuple[Replay, str], tmp_path: Path, mode: str
) -> None:
    rep, base_url = replay
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    if mode == "install":
        veto_crewai.install(veto, principal=Principal(user="u1"), run_id="r-openai")
    else:
        tools = veto_crewai.guard_tools(
            tools, veto, principal=Principal(user="u1"), run_id="r-openai"
        )
    llm = LLM(model="gpt-4o-mini", base_url=base_url, api_key="sk-offline-test", max_retries=0)
    out = make_crew(llm, tools).kickoff()  # type: ignore[arg-type]
    assert "not allowed" in out.raw

    assert counters["read_file"].value == 1
    assert counters["delete_file"].value == 0
    assert len(rep.requests) == 2
    first, second = (r["body"] for r in rep.requests)
    assert {t["function"]["name"] for t in first["tools"]} >= {"read_file", "delete_file"}
    # What CrewAI sent back to the model for each tool call id:
    tool_msgs = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert tool_msgs["call_R3adF1le0001"] == "read_file done: '/data/report.txt'"
    denied = tool_msgs["call_De1eteF1le02"]
    assert "was not run (denied)" in denied and "[no-delete]" in denied
    assert "blocked by hook" not in denied
    # Audit: the provider's tool-call ids, the run id, the framework.
    records = {r.tool_call_id: r for r in veto.audit.query(tenant="acme", limit=None)}
    assert set(records) == {"call_R3adF1le0001", "call_De1eteF1le02"}
    assert records["call_De1eteF1le02"].outcome == "denied"
    assert {r.run_id for r in records.values()} == {"r-openai"}
    assert {r.framework for r in records.values()} == {"crewai"}
