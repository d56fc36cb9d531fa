"""The shared adapter contract (tests/contract.py) for every CrewAI integration point:
``install()`` (global hooks), ``scope()`` (execution-scoped hooks) and ``guard_tools``,
each with a sync ``kickoff`` and an async ``akickoff``; approvals block (``"wait"``).
The person's message is the crew's kickoff input ``request``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crew_helpers import make_tool, run_crew

import veto_crewai
from contract import AdapterContract, AgentRun, Counter, Human, ScriptedCall, ToolSpec


class CrewAIContract(AdapterContract):
    framework = "crewai"
    approval_style = "wait"

    def make_tool(self, spec: ToolSpec, counter: Counter) -> Any:
        return make_tool(spec, counter)

    def options(self) -> dict[str, Any]:
        return {"principal": self.principal, "run_id": self.run_id}


class Install(CrewAIContract):
    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        veto_crewai.install(self.veto, **self.options())
        try:
            return run_crew(calls, tools, is_async=self.is_async, user_message=self.user_message)
        finally:
            veto_crewai.uninstall(self.veto)


class TestInstallSync(Install):
    is_async = False


class TestInstallAsync(Install):
    is_async = True


class Scope(CrewAIContract):
    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        with veto_crewai.scope(self.veto, **self.options()):
            return run_crew(calls, tools, is_async=self.is_async, user_message=self.user_message)


class TestScopeSync(Scope):
    is_async = False


class TestScopeAsync(Scope):
    is_async = True


class GuardTools(CrewAIContract):
    def run_agent_with_tool_calls(
        self, tools: Sequence[Any], calls: Sequence[ScriptedCall], *, human: Human
    ) -> AgentRun:
        guarded = veto_crewai.guard_tools(tools, self.veto, **self.options())
        return run_crew(calls, guarded, is_async=self.is_async, user_message=self.user_message)


class TestGuardToolsSync(GuardTools):
    is_async = False


class TestGuardToolsAsync(GuardTools):
    is_async = True
