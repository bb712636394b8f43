"""The AsyncAPI document: well-formed, in agreement with the contract, and committed up to date."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

from agora.asyncapi import SCHEMA_FORMAT, asyncapi_document, render_asyncapi
from agora.cli.contract import schema as schema_command
from events.codec import CODEC
from events.schema import event_schemas
from events.subjects import ALL_SUBJECTS, subject
from services.ingest.handler import IngestReply
from services.ingest.replier import INGEST_SUBJECT

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.json"
FIXTURES = ROOT / "tests" / "fixtures" / "events"
REGENERATE = ".venv/bin/agora schema --asyncapi > docs/asyncapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def test_docs_asyncapi_json_is_up_to_date() -> None:
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    rendered = render_asyncapi()
    if committed != rendered:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                "docs/asyncapi.json",
                "render_asyncapi()",
                n=1,
            )
        )
        pytest.fail(f"docs/asyncapi.json is stale; regenerate it with:\n    {REGENERATE}\n{diff}")


def test_the_command_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    # Called directly: the CLI's root callback would point logging at a captured stream.
    schema_command(out_dir=None, asyncapi=True)
    assert capsys.readouterr().out == render_asyncapi()


def test_the_structure_is_asyncapi_3(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    ApplicationSchema.model_validate(document)  # FastStream's model of AsyncAPI 3.0.0
    key = re.compile(r"^[a-zA-Z0-9\.\-_]+$")
    for section in ("messages", "parameters"):
        for name in document["components"][section]:
            assert key.match(name), name
    for operation in document["operations"].values():
        assert operation["action"] in {"send", "receive"}


def _refs(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``$ref`` of the AsyncAPI structure, skipping the JSON Schemas inside payloads."""
    if isinstance(node, dict):
        found = [(path, node["$ref"])] if isinstance(node.get("$ref"), str) else []
        for k, v in node.items():
            if k != "payload":
                found += _refs(v, f"{path}/{k}")
        return found
    if isinstance(node, list):
        return [r for i, v in enumerate(node) for r in _refs(v, f"{path}/{i}")]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert len(refs) > 3 * len(CODEC.types)
    for where, ref in refs:
        try:
            _resolve(document, ref)
        except (KeyError, IndexError, TypeError):
            pytest.fail(f"{where}: {ref} does not resolve")


def test_operation_messages_belong_to_their_channel(document: dict[str, Any]) -> None:
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name


def test_every_address_parameter_is_declared(document: dict[str, Any]) -> None:
    for name, channel in document["channels"].items():
        address = channel["address"]
        params = set(re.findall(r"\{([^}]+)\}", address or ""))
        assert params == set(channel.get("parameters", {})), name


def test_every_event_type_has_its_channel_with_the_exported_schema(
    document: dict[str, Any],
) -> None:
    schemas = event_schemas()
    assert set(schemas) == set(CODEC.types)
    event_channels = {
        name: channel
        for name, channel in document["channels"].items()
        if (channel["address"] or "").startswith("agora.{community}.")
    }
    assert set(event_channels) == set(CODEC.types)
    for type_, channel in event_channels.items():
        assert channel["address"].replace("{community}", "c42") == subject("c42", type_)
        (message_ref,) = channel["messages"].values()
        message = _resolve(document, message_ref["$ref"])
        assert message["payload"] == {"schemaFormat": SCHEMA_FORMAT, "schema": schemas[type_]}
        assert message["headers"]["required"] == ["Nats-Msg-Id"]
        assert f"publish.{type_}" in document["operations"]


@pytest.mark.parametrize("type_", sorted(CODEC.types))
def test_payload_schemas_accept_the_frozen_fixtures(document: dict[str, Any], type_: str) -> None:
    schema = document["components"]["messages"][type_]["payload"]["schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    fixture = json.loads((FIXTURES / f"v{CODEC.current[type_]}" / f"{type_}.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(fixture)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**fixture, "unknown": 1})


def _captured(filter_: str, subject_: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    want, have = filter_.split("."), subject_.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def test_the_ingest_subject_is_outside_the_stream(document: dict[str, Any]) -> None:
    assert _captured(ALL_SUBJECTS, "agora.c42.post.created")
    assert not _captured(ALL_SUBJECTS, "agora")
    channel = document["channels"]["ingest"]
    assert channel["address"] == INGEST_SUBJECT
    assert not _captured(ALL_SUBJECTS, INGEST_SUBJECT)
    reply = _resolve(document, document["operations"]["ingest"]["reply"]["channel"]["$ref"])
    assert reply["address"] is None  # the requester's inbox


def test_the_ingest_messages_match_the_service(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    request = messages["ingestRequest"]["payload"]["schema"]
    reply = messages["ingestReply"]["payload"]["schema"]
    for schema in (request, reply):
        jsonschema.Draft202012Validator.check_schema(schema)
    fixture = json.loads((FIXTURES / "v1" / "post.created.json").read_text())
    jsonschema.Draft202012Validator(request).validate(fixture)
    jsonschema.Draft202012Validator(request).validate([fixture, fixture])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(request).validate([])
    example = {"status": 200, "results": [{"index": 0, "status": "stored", "seq": 3}]}
    jsonschema.Draft202012Validator(reply).validate(example)
    assert "IngestReply" in json.dumps(reply)
    assert messages["ingestRequest"]["headers"]["required"] == ["Authorization"]
    assert IngestReply.__struct_fields__ == ("status", "results", "error", "message")
