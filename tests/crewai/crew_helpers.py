"""Build and run real CrewAI crews with a scripted (offline) model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from crewai.tools import BaseTool, tool

from contract import AgentRun, Counter, ScriptedCall, ToolSpec
from crewai import Agent, Crew, Task
from veto_crewai.testing import ScriptedLLM, tool_call


def make_tool(spec: ToolSpec, counter: Counter, *, style: str = "decorator") -> BaseTool:
    """A CrewAI tool ``spec.name(spec.param: spec.type)`` whose body is ``spec.run``.

    ``style="decorator"``: a ``@tool`` function; ``"class"``: a ``BaseTool`` subclass.
    """
    if style == "class":
        annotations = {spec.param: spec.type, "return": str}

        def _run(self: Any, **kwargs: Any) -> str:
            return spec.run(counter, **kwargs)

        _run.__annotations__ = annotations
        cls = type(
            f"{spec.name.title().replace('_', '')}Tool",
            (BaseTool,),
            {
                "__annotations__": {"name": str, "description": str},
                "name": spec.name,
                "description": spec.description,
                "_run": _run,
            },
        )
        return cls()  # type: ignore[no-any-return]

    def body(**kwargs: Any) -> str:
        return spec.run(counter, **kwargs)

    # A real function signature so CrewAI builds the argument schema from it.
    namespace: dict[str, Any] = {"body": body, "T": spec.type}
    source = (
        f"def {spec.name}({spec.param}: T) -> str:\n    return body({spec.param}={spec.param})\n"
    )
    exec(compile(source, f"<tool {spec.name}>", "exec", dont_inherit=True), namespace)
    fn = namespace[spec.name]
    fn.__doc__ = spec.description
    return tool(spec.name)(fn)


def scripted_llm(calls: Sequence[ScriptedCall], final: str = "All done.") -> ScriptedLLM:
    return ScriptedLLM(turns=[[tool_call(c.tool, dict(c.args), c.id) for c in calls], final])


#: The task description when the person's words come in as the kickoff input ``request``.
REQUEST_TASK = "Handle the customer's request: {request}"


def make_crew(
    llm: ScriptedLLM,
    tools: Sequence[BaseTool],
    *,
    role: str = "Support Agent",
    description: str = "Handle the ticket.",
) -> Crew:
    agent = Agent(
        role=role,
        goal="Help the customer",
        backstory="A careful support agent.",
        llm=llm,
        tools=list(tools),
        allow_delegation=False,
        max_iter=4,
        verbose=False,
    )
    task = Task(description=description, expected_output="A short summary.", agent=agent)
    return Crew(agents=[agent], tasks=[task], verbose=False)


def kickoff(crew: Crew, *, is_async: bool, inputs: dict[str, Any] | None = None) -> Any:
    if is_async:
        return asyncio.run(crew.akickoff(inputs=inputs))
    return crew.kickoff(inputs=inputs)


def run_crew(
    calls: Sequence[ScriptedCall],
    tools: Sequence[BaseTool],
    *,
    is_async: bool,
    role: str = "Support Agent",
    user_message: str | None = None,
) -> AgentRun:
    """Kick off a one-agent crew whose model emits ``calls``; ``user_message`` is the
    person's request, given as the kickoff input ``request`` (the task says
    ``{request}``)."""
    llm = scripted_llm(calls)
    if user_message is None:
        crew = make_crew(llm, tools, role=role)
        inputs = None
    else:
        crew = make_crew(llm, tools, role=role, description=REQUEST_TASK)
        inputs = {"request": user_message}
    try:
        kickoff(crew, is_async=is_async, inputs=inputs)
    except Exception as exc:
        return AgentRun(observations=llm.tool_results, error=exc)
    return AgentRun(observations=llm.tool_results)
