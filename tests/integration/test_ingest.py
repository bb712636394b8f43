"""Ingest against a real nats-server with the AGORA stream, served by real uvicorn on loopback.

The service runs as ``agora serve ingest`` runs it (:func:`agora.serve.run_service`), on a free
port. The producer-side helpers at the top use only httpx, nats-py and the standard library --
no Agora code -- as a producer in another language would, from docs/ingest.md alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agora.config import load_settings
from agora.embedded import EmbeddedNats
from agora.serve import run_service

# -- a producer that uses no Agora code ---------------------------------------------------------

TOKEN = "forum-7Hq2xS9vLw0pR4kZ8mNc"
BOT_TOKEN = "bot-Qm3ZtY6uVa1bC5dE9fGh"
INGEST_SUBJECT = "agora-ingest.v1"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def post_created(community: str = "c42", **changes: Any) -> dict[str, Any]:
    """A post.created event written by hand, as in docs/ingest.md."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "post.created",
        "v": 1,
        "community": community,
        "actor": "m7",
        "occurred_at": "2026-03-01T12:00:00Z",
        "post": "p1",
        "title": "Which hops for a pale ale?",
    }
    event.update(changes)
    return event


async def post(url: str, body: Any, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(timeout=30) as client:
        if isinstance(body, bytes):
            return await client.post(f"{url}/v1/events", content=body, headers=headers, **kw)
        return await client.post(f"{url}/v1/events", json=body, headers=headers, **kw)


async def request(nc: Client, body: Any, token: str | None = TOKEN) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(INGEST_SUBJECT, data, timeout=30, headers=headers)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def stored(js: JetStreamContext, seq: int) -> tuple[str, dict[str, Any], str | None]:
    """The subject, JSON payload and Nats-Msg-Id of the message at ``seq`` in AGORA."""
    msg = await js.get_msg("AGORA", seq)
    assert msg.data is not None
    return msg.subject, json.loads(msg.data), (msg.headers or {}).get("Nats-Msg-Id")


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info("AGORA")).state.last_seq)


# -- the service --------------------------------------------------------------------------------

GRANTS = [
    {
        "producer": "forum",
        "sha256": sha256(TOKEN),
        "communities": ["c42", "c43"],
        "types": ["post.created", "reply.created"],
    },
    {"producer": "bot", "sha256": sha256(BOT_TOKEN), "communities": ["*"], "types": ["*"]},
]
MAX_BATCH = 4
MAX_BODY = 100_000


@dataclass
class Ingest:
    url: str
    task: asyncio.Task[None]


@pytest.fixture
async def ingest(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> AsyncIterator[Ingest]:
    settings = load_settings(
        {
            "AGORA_NATS_URL": nats_server.url,
            "AGORA_DATA_DIR": str(tmp_path / "data"),
            "AGORA_INGEST_TOKENS": json.dumps(GRANTS),
            "AGORA_INGEST_MAX_BATCH": str(MAX_BATCH),
            "AGORA_INGEST_MAX_BODY_BYTES": str(MAX_BODY),
            "AGORA_PUBLISH_TIMEOUT": "0.5",
            "AGORA_PUBLISH_DEADLINE": "2",
        }
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_service("ingest", settings, stop, host="127.0.0.1", port=0, on_ready=ready.set_result)
    )
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=20, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises what stopped it
        url = ready.result()
        assert url is not None and url.startswith("http://127.0.0.1:")
        yield Ingest(url, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


# -- tests --------------------------------------------------------------------------------------


async def test_a_plain_http_producer_stores_and_dedupes(
    ingest: Ingest, js: JetStreamContext
) -> None:
    event = post_created()
    response = await post(ingest.url, event)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == 200
    (result,) = answer["results"]
    assert result["status"] == "stored" and result["index"] == 0 and result["id"] == event["id"]
    seq = result["seq"]
    subject, payload, msg_id = await stored(js, seq)
    assert subject == "agora.c42.post.created"
    assert msg_id == event["id"]
    assert {k: payload[k] for k in event if k != "occurred_at"} == {
        k: v for k, v in event.items() if k != "occurred_at"
    }

    again = await post(ingest.url, event)
    assert again.status_code == 200
    assert again.json()["results"] == [
        {"index": 0, "status": "duplicate", "id": event["id"], "seq": seq}
    ]
    assert await last_seq(js) == seq


async def test_an_id_another_producer_stored_first_is_a_conflict_not_a_duplicate(
    ingest: Ingest, js: JetStreamContext, nc: Client
) -> None:
    """The bot squats an id in c99; the forum's event under it in c42 is not said to be stored."""
    victim = post_created("c42")
    squat = post_created("c99", actor="bot1", title="squatted")
    squat["id"] = victim["id"]
    first = await post(ingest.url, squat, BOT_TOKEN)
    assert first.json()["results"][0]["status"] == "stored", first.text
    seq = first.json()["results"][0]["seq"]

    response = await post(ingest.url, victim)
    assert response.status_code == 409, response.text
    (result,) = response.json()["results"]
    assert (result["status"], result["id"], result["seq"], result["field"]) == (
        "conflict",
        victim["id"],
        seq,
        "id",
    )
    batch = await post(ingest.url, [victim, post_created("c42")])
    assert batch.status_code == 200
    assert [r["status"] for r in batch.json()["results"]] == ["conflict", "stored"]
    answer = await request(nc, victim)
    assert answer["results"][0]["status"] == "conflict"
    assert await last_seq(js) == seq + 1


async def test_a_batch_with_one_bad_event_stores_the_good_ones(
    ingest: Ingest, js: JetStreamContext
) -> None:
    before = await last_seq(js)
    good = [post_created(), post_created(community="c43", post="p2")]
    bad = post_created(title="")
    response = await post(ingest.url, [good[0], bad, good[1]])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["stored", "rejected", "stored"]
    assert results[1]["field"] == "title" and results[1]["reason"]
    assert "seq" not in results[1]
    assert await last_seq(js) == before + 2
    for event, result in zip(good, (results[0], results[2]), strict=True):
        _, payload, msg_id = await stored(js, result["seq"])
        assert payload["id"] == msg_id == event["id"]


async def test_unknown_tokens_and_events_outside_the_grant_are_refused(
    ingest: Ingest, js: JetStreamContext
) -> None:
    before = await last_seq(js)
    for token in (None, "not-a-token", sha256(TOKEN)):
        response = await post(ingest.url, post_created(), token=token)
        assert response.status_code == 401, token
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")

    outside = await post(ingest.url, post_created(community="c99"))
    assert outside.status_code == 403
    (result,) = outside.json()["results"]
    assert (result["status"], result["field"]) == ("refused", "community")

    wrong_type = {**post_created(), "type": "member.joined", "member": "m8"}
    for key in ("post", "title"):
        del wrong_type[key]
    batch = await post(ingest.url, [wrong_type, post_created(community="c99")])
    assert batch.status_code == 200
    assert [(r["status"], r["field"]) for r in batch.json()["results"]] == [
        ("refused", "type"),
        ("refused", "community"),
    ]
    assert await last_seq(js) == before  # nothing stored

    # The same member.joined with a token granted every type is stored.
    allowed = await post(ingest.url, wrong_type, token=BOT_TOKEN)
    assert allowed.status_code == 200
    assert allowed.json()["results"][0]["status"] == "stored"


async def test_size_limits_and_malformed_bodies_are_clear_4xx(
    ingest: Ingest, js: JetStreamContext
) -> None:
    before = await last_seq(js)
    too_big = await post(ingest.url, b"[" + b" " * MAX_BODY + b"]")
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(MAX_BODY // 1000 + 2):
            yield b" " * 1000

    async with httpx.AsyncClient(timeout=30) as client:
        chunked = await client.post(
            f"{ingest.url}/v1/events",
            content=chunks(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert chunked.status_code == 413

    many = await post(ingest.url, [post_created() for _ in range(MAX_BATCH + 1)])
    assert many.status_code == 413
    assert many.json()["error"] == "too_many_events"
    for body in (b"[{", b"[]"):
        malformed = await post(ingest.url, body)
        assert malformed.status_code == 422
        assert malformed.json()["error"] == "malformed"
    not_json = await post(ingest.url, b"hello")
    assert not_json.status_code == 422
    assert not_json.json()["results"][0]["field"] == "$"
    assert await last_seq(js) == before


async def test_nats_request_reply_answers_like_http(
    ingest: Ingest, nc: Client, js: JetStreamContext
) -> None:
    event = post_created()
    answer = await request(nc, event)
    assert answer["status"] == 200
    (result,) = answer["results"]
    assert result["status"] == "stored"
    _, payload, msg_id = await stored(js, result["seq"])
    assert payload["id"] == msg_id == event["id"]

    batch = await request(nc, [event, post_created(v=7), post_created(community="c99")])
    assert batch["status"] == 200
    assert [r["status"] for r in batch["results"]] == ["duplicate", "rejected", "refused"]
    assert batch["results"][0]["seq"] == result["seq"]
    assert batch["results"][1]["field"] == "v"

    for token in (None, "nope"):
        refused = await request(nc, event, token=token)
        assert (refused["status"], refused["error"]) == (401, "unauthorized")
    assert (await request(nc, b"[1,"))["status"] == 422


async def test_a_raw_jetstream_publish_needs_no_agora_code(
    ingest: Ingest, js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    """docs/ingest.md, "Publishing straight to NATS": nats-py, a subject, a header, JSON."""
    client = await nats.connect(nats_server.url)
    try:
        jetstream = client.jetstream()
        event = post_created()
        data = json.dumps(event).encode()
        headers = {"Nats-Msg-Id": event["id"]}
        ack = await jetstream.publish("agora.c42.post.created", data, headers=headers)
        assert ack.stream == "AGORA" and not ack.duplicate
        again = await jetstream.publish("agora.c42.post.created", data, headers=headers)
        assert again.duplicate and again.seq == ack.seq
    finally:
        await client.close()
    subject, payload, msg_id = await stored(js, ack.seq)
    assert (subject, payload, msg_id) == ("agora.c42.post.created", event, event["id"])
    # ... and ingest, given the same event, recognises it as stored.
    response = await post(ingest.url, event)
    assert response.json()["results"][0] == {
        "index": 0,
        "status": "duplicate",
        "id": event["id"],
        "seq": ack.seq,
    }


async def test_unreachable_nats_is_503_and_a_retry_dedupes(
    ingest: Ingest, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        health = await client.get(f"{ingest.url}/v1/health")
        assert health.status_code == 200
        await asyncio.to_thread(nats_server.stop)
        event = post_created()
        response = await post(ingest.url, [event])
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        (result,) = response.json()["results"]
        assert result["status"] == "failed" and result["reason"]
        assert (await client.get(f"{ingest.url}/v1/health")).status_code == 503
        await asyncio.to_thread(nats_server.start)
        deadline = asyncio.get_running_loop().time() + 20
        while (await client.get(f"{ingest.url}/v1/health")).status_code != 200:
            assert asyncio.get_running_loop().time() < deadline, "no reconnection"
            await asyncio.sleep(0.05)
    retry = await post(ingest.url, [event])
    assert retry.status_code == 200
    (first,) = retry.json()["results"]
    # The failed attempt may still reach the stream when the client reconnects and flushes what
    # it had buffered; the retry then is its duplicate. Either way there is one copy, and any
    # further retry is answered duplicate with that copy's seq.
    assert first["status"] in {"stored", "duplicate"}
    again = await post(ingest.url, [event])
    assert again.status_code == 200
    (second,) = again.json()["results"]
    assert (second["status"], second["seq"]) == ("duplicate", first["seq"])
    copies = []
    for seq in range(1, await last_seq(js) + 1):
        _, payload, msg_id = await stored(js, seq)
        if payload["id"] == event["id"]:
            copies.append((seq, msg_id))
    assert copies == [(first["seq"], event["id"])]


async def test_the_openapi_document_is_served(ingest: Ingest) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{ingest.url}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert "/v1/events" in document["paths"]
    assert "PostCreated" in document["components"]["schemas"]


async def test_agora_serve_runs_until_sigterm(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        PYTHONUNBUFFERED="1",
        AGORA_NATS_URL=nats_server.url,
        AGORA_DATA_DIR=str(tmp_path / "data"),
        AGORA_INGEST_TOKENS=json.dumps(GRANTS),
        AGORA_LOG_FORMAT="json",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agora.cli", "serve", "ingest", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("ingest: serving on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        response = await post(url, post_created())
        assert response.json()["results"][0]["status"] == "stored"
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)
        rest = (await process.stdout.read()).decode()
        assert code == 0, (await process.stderr.read()).decode()
        assert "ingest stopped" in rest
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def test_serve_refuses_to_start_without_tokens(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(AGORA_DATA_DIR=str(tmp_path / "data"), AGORA_NATS_URL=nats_server.url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agora.cli", "serve", "ingest",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2, err
    assert b"configuration error: AGORA_INGEST_TOKENS is not set" in err


async def test_both_doors_reach_the_projections(
    ingest: Ingest, js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """An event posted over HTTP and one published raw to NATS are both counted by a projection."""
    over_http = post_created(community="c43")
    response = await post(ingest.url, over_http)
    assert response.json()["results"][0]["status"] == "stored"
    raw = post_created(community="c43", post="p2", occurred_at="2026-03-01T13:00:00Z")
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().publish(
            "agora.c43.post.created", json.dumps(raw).encode(), headers={"Nats-Msg-Id": raw["id"]}
        )
    finally:
        await client.close()

    from projections.counts import EventCounts
    from projections.database import create_engine
    from projections.runner import Worker, WorkerSettings
    from projections.store import ProjectionStore

    engine = create_engine(f"sqlite:///{tmp_path / 'counts.db'}")
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    worker = Worker(js, store, generation=1, settings=WorkerSettings(stall_timeout=2.0))
    await asyncio.wait_for(worker.run(until_seq=await last_seq(js)), timeout=30)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT community, type, day, events FROM event_counts__g1"
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("c43", "post.created", "2026-03-01", 2)]
