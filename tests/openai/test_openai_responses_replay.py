"""The real ``OpenAIResponsesModel`` (Responses API client, fake key) against a hand-written
vcrpy cassette (record mode ``none``): the SDK's own request building and response parsing
run, offline. Veto denies one call of the turn, allows the other, and the denial reaches
the model in the next request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import vcr
from agents import Agent, Runner
from agents.models.openai_responses import OpenAIResponsesModel
from oa_helpers import make_tool

from contract import POLICY, TOOL_SPECS, Counter
from openai import AsyncOpenAI
from veto_core import Veto
from veto_openai import guard_agent, run_config

CASSETTE = Path(__file__).resolve().parent / "cassettes" / "responses_delete_read.yaml"


def test_responses_api_replay_denies_and_allows(tmp_path: Path) -> None:
    requests: list[dict[str, Any]] = []

    async def keep(request: httpx.Request) -> None:  # what the SDK really sends
        assert request.headers["authorization"] == "Bearer sk-test-fake"
        requests.append(json.loads(await request.aread()))

    client = AsyncOpenAI(
        api_key="sk-test-fake",
        base_url="https://api.openai.com/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(event_hooks={"request": [keep]}),
    )
    model = OpenAIResponsesModel(model="gpt-4.1", openai_client=client)
    counters = {s.name: Counter() for s in TOOL_SPECS}
    tools = [make_tool(s, counters[s.name]) for s in TOOL_SPECS]
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    agent = guard_agent(Agent(name="files-bot", model=model, tools=tools), veto, run_id="run-1")

    recorder = vcr.VCR(record_mode="none", match_on=["method", "scheme", "host", "path"])
    with recorder.use_cassette(str(CASSETTE)) as cassette:
        result = asyncio.run(Runner.run(agent, "tidy up /data/a", run_config=run_config()))
        assert cassette.all_played and cassette.play_count == 2

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
