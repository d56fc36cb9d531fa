"""The real ``OpenAIResponsesModel`` (Responses API client, fake key) against a replayed
cassette: the HTTP layer is an ``httpx.MockTransport`` serving recorded responses in order,
so the SDK's own request building and response parsing run, offline. Veto denies one
call of the turn, allows the other, and the denial reaches the model in the next request.

(vcrpy is not in the workspace lock; this replays the same kind of cassette with httpx,
which is.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from agents import Agent, Runner
from agents.models.openai_responses import OpenAIResponsesModel
from oa_helpers import make_tool

from contract import POLICY, TOOL_SPECS, Counter
from openai import AsyncOpenAI
from veto_core import Veto
from veto_openai import guard_agent, run_config

CASSETTE = Path(__file__).resolve().parent / "cassettes" / "responses_refund_delete.json"


def test_responses_api_replay_denies_and_allows(tmp_path: Path) -> None:
    interactions = json.loads(CASSETTE.read_text())["interactions"]
    requests: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer sk-test-fake"
        n = len(requests)
        assert n < len(interactions), "more requests than the cassette holds"
        want = interactions[n]["request"]
        assert (request.method, request.url.path) == (want["method"], want["path"])
        requests.append(json.loads(request.content))
        res = interactions[n]["response"]
        return httpx.Response(res["status"], json=res["body"])

    client = AsyncOpenAI(
        api_key="sk-test-fake",
        base_url="https://api.openai.com/v1",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    model = OpenAIResponsesModel(model="gpt-4.1", openai_client=client)
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    agent = guard_agent(Agent(name="files-bot", model=model, tools=tools), veto)

    result = asyncio.run(Runner.run(agent, "tidy up /data/a", run_config=run_config()))

    assert result.final_output == "I read the file; deleting is not allowed."
    assert counters["delete_file"].value == 0 and counters["read_file"].value == 1
    assert len(requests) == 2
    sent = {
        i["call_id"]: i["output"]
        for i in requests[1]["input"]
        if i.get("type") == "function_call_output"
    }
    assert (
        "no-delete" in sent["call_del_1"] and "Deleting files is not allowed" in sent["call_del_1"]
    )
    assert sent["call_read_1"] == "read_file done: '/data/a'"
    outcomes = {r.tool_call_id: r.outcome for r in veto.audit.query(tenant="acme", limit=None)}
    assert outcomes == {"call_del_1": "denied", "call_read_1": "allowed"}
    veto.close()
