"""CrewAI's real OpenAI provider (``crewai.LLM``, native function calling over HTTP) with Veto,
fully offline: a hand-written vcrpy cassette (record mode ``none``, fake key) replays two
OpenAI ``chat.completions`` responses, like the LangChain and OpenAI Agents adapters' provider
tests, and vcrpy shows us what CrewAI sent back to the "model"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vcr
from crew_helpers import make_crew, make_tool
from vcr.request import Request

import veto_crewai
from contract import POLICY, TOOL_SPECS, Counter
from crewai import LLM
from veto_core import Principal, Veto

CASSETTE = Path(__file__).with_name("cassettes") / "openai_chat_tool_calls.yaml"


class Replay:
    """The chat completions CrewAI really sent, in order (each body as JSON).

    vcrpy hands every request to ``keep`` (several times: matching, playing; and the
    cassette's own entries, which have no body). CrewAI's token counter also calls
    ``/v1/responses/input_tokens``; the cassette has no answer for it, so vcrpy refuses
    it and CrewAI falls back to its approximate count: no network either way.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._last: bytes | None = None

    def keep(self, request: Request) -> Request:
        body = request.body or b""
        if request.path == "/v1/chat/completions" and body and body != self._last:
            self._last = body
            self.requests.append({"path": request.path, "body": json.loads(body)})
        return request


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[Replay]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-offline-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    rep = Replay()
    recorder = vcr.VCR(
        record_mode="none",
        match_on=["method", "scheme", "host", "path"],
        before_record_request=rep.keep,
    )
    with recorder.use_cassette(str(CASSETTE)) as cassette:
        yield rep
        assert cassette.all_played and cassette.play_count == 2


@pytest.mark.parametrize("mode", ["install", "guard_tools"])
def test_openai_provider_path_model_sees_veto_reason(
    replay: Replay, tmp_path: Path, mode: str
) -> None:
    rep = replay
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    if mode == "install":
        veto_crewai.install(veto, principal=Principal(user="u1"), run_id="r-openai")
    else:
        tools = veto_crewai.guard_tools(
            tools, veto, principal=Principal(user="u1"), run_id="r-openai"
        )
    llm = LLM(model="gpt-4o-mini", api_key="sk-offline-test", max_retries=0)
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
