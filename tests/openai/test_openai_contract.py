"""The shared adapter contract (tests/contract.py) for veto-openai: native approvals
(pause in ``result.interruptions``, decide in the store, ``approvals.resume``) and the
blocking mode (``approvals="wait"``), each with ``Runner.run_sync`` and ``Runner.run``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from agents import Agent
from oa_helpers import Call, ScriptedModel, make_tool, run

from contract import AdapterContract, AgentRun, Counter, Human, ScriptedCall, ToolSpec
from veto_openai import approvals, guard_agent, run_config


class OpenAIContract(AdapterContract):
    framework = "openai-agents"

    def make_tool(self, spec: ToolSpec, counter: Counter) -> Any:
        return make_tool(spec, counter)

    def context(self) -> dict[str, Any]:
        # The run id and principal come from the SDK run context (a plain mapping, so a
        # serialized RunState carries them).
        return {
            "veto": {
                "run_id": self.run_id,
                "principal": {"user": self.principal.user, "roles": list(self.principal.roles)},
            }
        }

    def agent(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall]
    ) -> tuple[Any, ScriptedModel]:
        model = ScriptedModel([Call(c.id, c.tool, dict(c.args)) for c in calls])
        agent = Agent(name=self.principal.agent or "bot", model=model, tools=list(tools))
        return agent, model


class NativeResume(OpenAIContract):
    approval_style = "resume"

    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        agent, model = self.agent(tools, calls)
        guarded = guard_agent(agent, self.veto)
        cfg = run_config()
        try:
            result = run(
                guarded,
                self.user_message,
                is_async=self.is_async,
                run_config=cfg,
                context=self.context(),
            )
            for _ in range(5):
                if not result.interruptions:
                    return AgentRun(observations=dict(model.seen))
                for p in approvals.sync(result, self.veto):
                    assert p.governed and p.tool == "issue_refund", p
                human.act(suspended=True)
                if self.is_async:
                    result = asyncio.run(approvals.resume(result, self.veto, pending="reject"))
                else:
                    result = approvals.resume_sync(result, self.veto, pending="reject")
        except Exception as exc:
            return AgentRun(observations=dict(model.seen), error=exc)
        raise AssertionError("the run kept pausing")


class TestNativeResumeSync(NativeResume):
    is_async = False


class TestNativeResumeAsync(NativeResume):
    is_async = True


class BlockingWait(OpenAIContract):
    approval_style = "wait"

    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        agent, model = self.agent(tools, calls)
        guarded = guard_agent(agent, self.veto, approvals="wait")
        try:
            result = run(guarded, self.user_message, is_async=self.is_async, context=self.context())
            assert not result.interruptions
        except Exception as exc:
            return AgentRun(observations=dict(model.seen), error=exc)
        return AgentRun(observations=dict(model.seen))


class TestBlockingWaitSync(BlockingWait):
    is_async = False


class TestBlockingWaitAsync(BlockingWait):
    is_async = True
