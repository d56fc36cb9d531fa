"""Property tests of the JSON API against its own /openapi.json (schemathesis):
no input, valid or not, makes the server answer 5xx. Bounded: 15 examples per
operation (~20 operations), authenticated as a tenant admin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from server_helpers import World, token_for

from veto_core.server import ServerSettings, create_app


@pytest.fixture
def api_app(world: World) -> Iterator[FastAPI]:
    for amount in (20, 500, 900):
        world.call(world.acme, amount)
    world.call(world.globex, 700)
    app = create_app(settings=ServerSettings(db=world.db, sse_max_s=1.0))
    app.state.token = token_for(world.db, "alice")
    yield app
    app.state.ctx.close()


def test_api_never_answers_5xx(api_app: FastAPI) -> None:
    api_schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    headers = {"Authorization": f"Bearer {api_app.state.token}"}
    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

        run()
    assert operations >= 18
    assert len(statuses) >= 150, len(statuses)  # bounded: at most 15 per operation
    assert any(200 <= s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
    assert failures == []


def test_openapi_lists_the_routes_other_tools_rely_on(api_app: FastAPI) -> None:
    paths = api_app.openapi()["paths"]
    assert "get" in paths["/api/approvals"]
    assert "post" in paths["/api/approvals/{request_id}/approve"]
    assert "post" in paths["/api/approvals/{request_id}/deny"]
    assert "get" in paths["/api/audit"]
