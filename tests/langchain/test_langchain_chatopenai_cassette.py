"""The real ``ChatOpenAI`` HTTP path, offline: a hand-written vcrpy cassette (record mode
``none``, fake key) replays two Chat Completions exchanges. The model asks for a denied
``delete_file`` and an allowed ``read_file`` in one turn; Veto refuses the first, runs the
second, and the denial (with its rule id) is what the model receives next."""

from __future__ import annotations

import json
from pathlib import Path

import vcr
from langchain.agents import create_agent
from langchain_openai import ChatOpenAI
from lc_helpers import make_tool
from vcr.request import Request

from contract import POLICY, TOOL_SPECS, Counter
from veto_core import Principal, Veto
from veto_langchain import VetoMiddleware

CASSETTE = Path(__file__).resolve().parent / "cassettes" / "chatopenai_delete_read.yaml"


def test_chatopenai_through_a_cassette_denies_and_allows(tmp_path: Path) -> None:
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS if s.name != "issue_refund"]
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test-fake", max_retries=0)  # type: ignore[arg-type]
    agent = create_agent(
        model,
        tools,
        middleware=[
            VetoMiddleware(veto, principal=Principal(agent="files-bot", user="u1"), run_id="r1")
        ],
    )
    sent_requests: list[Request] = []

    def keep(request: Request) -> Request:  # vcrpy shows us each real request before matching
        sent_requests.append(request)
        return request

    recorder = vcr.VCR(
        record_mode="none",
        match_on=["method", "scheme", "host", "path"],
        before_record_request=keep,
    )
    with recorder.use_cassette(str(CASSETTE)) as cassette:
        out = agent.invoke({"messages": [{"role": "user", "content": "tidy up /data/a"}]})
        assert cassette.all_played and cassette.play_count == 2
    second = json.loads(sent_requests[-1].body)
    assert out["messages"][-1].content == "I read the file; deleting is not allowed."
    assert counters["delete_file"].value == 0 and counters["read_file"].value == 1
    sent = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert "Deleting files is not allowed [no-delete]" in sent["call_del_1"]
    assert sent["call_read_1"] == "read_file done: '/data/a'"
    outcomes = {r.tool_call_id: r.outcome for r in veto.audit.query(tenant="acme", limit=None)}
    assert outcomes == {"call_del_1": "denied", "call_read_1": "allowed"}
    veto.close()
