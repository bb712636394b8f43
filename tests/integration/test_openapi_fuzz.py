"""Every OpenAPI document the services serve, fuzzed by schemathesis against the real service.

Ingest, the moderation API and the dashboard's read API run as their commands run them (real
uvicorn on loopback, real nats-server, SQLite holding a small folded history). For every
operation of the document each serves, schemathesis generates requests that follow the schema
(positive) and requests that break it (negative); every answer must be below 500, and every
error a JSON body. Generation is bounded and derandomized: the same requests on every run.
Half the requests carry a valid token and name ``town`` (and its member ``ann``), whose rows the
folded history holds, so that they pass authentication and the queries reach rows.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from nats.js import JetStreamContext
from schemathesis import GenerationMode
from support.served import (
    COMMUNITY,
    MODERATOR_TOKEN,
    PATIENCE,
    PRODUCER_TOKEN,
    dashboard,
    ingest,
    moderation,
)

from agora.embedded import EmbeddedNats

MAX_EXAMPLES = 10
"""Fuzzing: generated requests per operation and mode (positive, negative)."""

MAX_COVERAGE = 200
"""Coverage: boundary cases per operation, in schemathesis' fixed order. Every read API and
moderation operation has fewer; ingest's ``POST /v1/events`` has about 3,200 (every field of
every event type), of which the first 200 are sent to keep the run short."""

FUZZING = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # a fixed sequence of requests: the same on every run and in CI
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)

KNOWN = {"community": COMMUNITY, "member": "ann"}
"""Path parameters that name rows of the folded history."""


def check(case: Any, base_url: str, session: requests.Session) -> None:
    """Send ``case``; AssertionError on a 5xx or an error that is not JSON."""
    response = case.call(base_url=base_url, session=session, timeout=PATIENCE)
    status = response.status_code
    what = f"{case.method} {case.formatted_path} {case.query or ''} -> {status}"
    assert status < 500, f"{what}: {response.text[:300]}"
    if status >= 400:
        kind = "".join(response.headers.get("content-type", []))
        assert kind.startswith("application/json"), f"{what}: {kind}"
        response.json()


def probe(cases: st.SearchStrategy[Any], base_url: str, session: requests.Session) -> None:
    """Send what ``cases`` generates, :data:`MAX_EXAMPLES` of them, through :func:`check`."""

    @FUZZING
    @given(case=cases)
    def run(case: Any) -> None:
        check(case, base_url, session)

    run()


def fuzz(
    document: dict[str, Any], base_url: str, headers: dict[str, str] | None = None
) -> list[str]:
    """Run every operation of ``document`` against ``base_url``; return what went wrong."""
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the document lists no operation"
    with requests.Session() as session:
        for operation in operations:
            # The coverage phase: boundary values of every parameter and field, a fixed list.
            generation = schema.config.generation_for(operation=operation)
            boundaries = schema.iter_coverage_cases(
                operation, generation_modes=list(GenerationMode), generation_config=generation
            )
            for case in itertools.islice(boundaries, MAX_COVERAGE):
                try:
                    check(case, base_url, session)
                except AssertionError as error:
                    problems.append(f"coverage: {str(error).splitlines()[0]}")
            # The fuzzing phase: cases that follow the schema and cases that break it.
            known = {k: v for k, v in KNOWN.items() if k in operation.path_parameters}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                cases = st.one_of(  # anything, or with a valid token and a known community
                    operation.as_strategy(mode),
                    operation.as_strategy(mode, headers=headers, path_parameters=known),
                )
                try:
                    probe(cases, base_url, session)
                except AssertionError as error:
                    problems.append(f"{mode.value}: {str(error).splitlines()[0]}")
                except ExceptionGroup as group:  # hypothesis found several distinct failures
                    problems.extend(
                        f"{mode.value}: {str(e).splitlines()[0]}" for e in group.exceptions
                    )
                except Unsatisfiable:
                    # Nothing of the operation can be broken (no parameter, no body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
    return problems


async def document(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=PATIENCE) as client:
        response = await client.get(f"{base_url}/openapi.json")
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


async def test_the_read_api_answers_no_5xx(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as url:
        spec = await document(url)
        assert any("{community}" in path for path in spec["paths"])
        assert await asyncio.to_thread(fuzz, spec, url) == []


async def test_ingest_answers_no_5xx(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    async with ingest(tmp_path, nats_server.url) as url:
        spec = await document(url)
        auth = {"Authorization": f"Bearer {PRODUCER_TOKEN}"}
        assert await asyncio.to_thread(fuzz, spec, url, auth) == []
    assert (await js.stream_info("AGORA")).state.messages > 0, "no generated event was stored"


async def test_the_moderation_api_answers_no_5xx(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    async with moderation(tmp_path, nats_server.url) as url:
        spec = await document(url)
        auth = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
        assert await asyncio.to_thread(fuzz, spec, url, auth) == []
