"""The HTTP services against hostile clients: real uvicorn on loopback, raw sockets.

A client may send its head a byte at a time, never finish its body, hold idle connections or
open many, leave mid-body, or send numbers no database can hold: the service cuts it off within
the configured ``AGORA_HTTP_*`` timeouts, refuses connections beyond its cap, answers every
error as JSON and logs it as one JSON line. The dashboard (no NATS) serves the connection
tests; ingest (real nats-server) the body tests, as ``agora serve ingest`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from nats.js import JetStreamContext
from support.engine import wait_until
from support.served import GRANTS, MODERATOR_TOKEN, PATIENCE, dashboard, ingest, moderation
from support.served import PRODUCER_TOKEN as TOKEN

from agora.embedded import EmbeddedNats
from events.limits import MAX_EVENT_BYTES

SHORT = 0.5
"""A timeout short enough for a test and long enough for a loaded machine to meet."""


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_json(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """The status, headers and JSON body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"].startswith("application/json"), head
    return int(lines[0].split()[1]), headers, json.loads(body)


async def request(
    host: str, port: int, raw: bytes
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send ``raw`` on a new connection; return the first response's bytes and the streams."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    return head + await reader.readexactly(length), reader, writer


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode()


# -- timeouts -----------------------------------------------------------------------------------


async def test_a_head_sent_byte_by_byte_is_cut_off_with_408(tmp_path: Path) -> None:
    async with dashboard(tmp_path, AGORA_HTTP_HEADER_TIMEOUT=str(SHORT)) as url:
        host, port = address(url)
        started = time.monotonic()  # before the server can start its clock
        reader, writer = await asyncio.open_connection(host, port)
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            writer.write(b"GET /api/communities HTTP/1.1\r\nHost: edge\r\n")
            with contextlib.suppress(ConnectionError):
                while True:  # a header that never ends, one byte at a time
                    writer.write(b"X-Slow: " if sent == 0 else b"a")
                    await writer.drain()
                    sent += 1
                    await asyncio.sleep(0.02)  # the client's pace, not a wait for the server

        client = asyncio.create_task(trickle())
        try:
            raw = await asyncio.wait_for(read_to_eof(reader), PATIENCE)
        finally:
            client.cancel()
            writer.close()
        elapsed = time.monotonic() - started
        assert sent > 1, "the client was still sending when it was cut off"
        assert elapsed >= SHORT
        status, _, body = status_and_json(raw)
        assert status == 408
        assert "head" in body["detail"]


async def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    async with dashboard(tmp_path, AGORA_HTTP_HEADER_TIMEOUT=str(SHORT)) as url:
        host, port = address(url)
        started = time.monotonic()  # before the server can start its clock
        reader, writer = await asyncio.open_connection(host, port)
        raw = await asyncio.wait_for(read_to_eof(reader), PATIENCE)
        writer.close()
        assert raw == b""
        assert time.monotonic() - started >= SHORT


async def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path) -> None:
    async with dashboard(
        tmp_path, AGORA_HTTP_KEEP_ALIVE_TIMEOUT=str(SHORT), AGORA_HTTP_HEADER_TIMEOUT="60"
    ) as url:
        host, port = address(url)
        asked = time.monotonic()  # before the server can start its clock
        raw, reader, writer = await request(host, port, get("/api/communities"))
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in raw.lower()
        assert await asyncio.wait_for(read_to_eof(reader), PATIENCE) == b""
        writer.close()
        assert time.monotonic() - asked >= SHORT


async def test_a_body_that_never_ends_is_cut_off_with_408(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    async with ingest(tmp_path, nats_server.url, AGORA_HTTP_BODY_TIMEOUT=str(SHORT)) as url:
        host, port = address(url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"id": "'
        )
        started = time.monotonic()
        raw = await asyncio.wait_for(read_to_eof(reader), PATIENCE)
        writer.close()
        assert time.monotonic() - started >= SHORT
        status, _, body = status_and_json(raw)
        assert status == 408
        assert "body" in body["detail"]
        assert (await js.stream_info("AGORA")).state.messages == 0


async def test_a_malformed_request_is_refused_with_400_json(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as url:
        host, port = address(url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        raw = await asyncio.wait_for(read_to_eof(reader), PATIENCE)
        writer.close()
        status, headers, body = status_and_json(raw)
        assert status == 400
        assert headers["connection"] == "close"
        assert "Invalid HTTP request" in body["detail"]


# -- the connection cap -------------------------------------------------------------------------


async def test_connections_beyond_the_cap_are_answered_503_json(tmp_path: Path) -> None:
    async with dashboard(tmp_path, AGORA_HTTP_MAX_CONNECTIONS="2") as url:
        host, port = address(url)
        first, _, held_1 = await request(host, port, get("/api/communities"))
        second, _, held_2 = await request(host, port, get("/api/communities"))
        assert first.startswith(b"HTTP/1.1 200 ") and second.startswith(b"HTTP/1.1 200 ")
        refused, _, extra = await request(host, port, get("/api/communities"))
        status, headers, body = status_and_json(refused)
        assert status == 503
        assert headers["connection"] == "close" and headers["retry-after"] == "1"
        assert "connections" in body["detail"]
        extra.close()
        held_1.close()

        async def served_again() -> bool:
            raw, _, writer = await request(host, port, get("/api/communities"))
            writer.close()
            return raw.startswith(b"HTTP/1.1 200 ")

        await wait_until(served_again, PATIENCE, "a slot to free up")
        held_2.close()


# -- bounded parameters -------------------------------------------------------------------------


OUT_OF_RANGE = [
    "/api/communities/town/reputation?offset=9223372036854775808",
    "/api/communities/town/reputation?offset=9223372036854775807",
    "/api/communities/town/reputation?limit=9223372036854775808",
    "/api/communities/town/overview?days=99999999999999999999",
    "/c/town/reputation?offset=9223372036854775808",
]


async def test_numbers_no_database_holds_are_422_json(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as url, httpx.AsyncClient(timeout=PATIENCE) as client:
        for path in OUT_OF_RANGE:
            response = await client.get(f"{url}{path}")
            assert response.status_code == 422, (path, response.text)
            assert response.headers["content-type"] == "application/json", path
            assert response.json()["detail"][0]["type"] == "less_than_equal", path


# -- one JSON line per error --------------------------------------------------------------------


async def test_a_client_leaving_mid_body_is_one_json_line_without_a_traceback(
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
    lines: list[str] = []
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), PATIENCE)).decode()
        host, port = line.split("http://", 1)[1].split()[0].rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"id": "'
        )
        await writer.drain()
        writer.close()  # mid-body

        async def logged() -> bool:
            while not any("went away" in x or "Traceback" in x for x in lines):
                lines.append((await process.stderr.readline()).decode())  # type: ignore[union-attr]
            return True

        await asyncio.wait_for(logged(), PATIENCE)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), PATIENCE) == 0
        lines.extend((await process.stderr.read()).decode().splitlines())
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    lines = [x for x in lines if x.strip()]
    text = "\n".join(lines)
    assert "Traceback" not in text, text
    records = [json.loads(x) for x in lines]  # every line is one JSON object
    gone = [r for r in records if "went away" in r["event"]]
    assert len(gone) == 1, text
    assert gone[0]["path"] == "/v1/events"
    assert "exception" not in gone[0]


async def test_a_decision_body_larger_than_an_event_is_413_json(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    async with moderation(tmp_path, nats_server.url) as url, httpx.AsyncClient() as client:
        decision = {"target_kind": "post", "target": "p1", "decision": "remove"}
        response = await client.post(
            f"{url}/v1/communities/town/decisions",
            content=json.dumps({**decision, "note": "x" * MAX_EVENT_BYTES}),
            headers={"Authorization": f"Bearer {MODERATOR_TOKEN}"},
            timeout=PATIENCE,
        )
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "too_large"
        assert (await js.stream_info("AGORA")).state.messages == 0
