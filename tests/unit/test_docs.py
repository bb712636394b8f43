"""docs/events.md is generated from the catalogue and must match it."""

from __future__ import annotations

import difflib
from pathlib import Path

import msgspec
import pytest

from agora.docgen import ENVELOPE_FIELDS, main, render_events_markdown
from events import EVENT_TYPES, Event
from events.limits import MAX_EVENT_BYTES, MAX_NOTE_LENGTH, MAX_TITLE_LENGTH, SYSTEM_ACTOR

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
REGENERATE = ".venv/bin/python -m agora.docgen > docs/events.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_events_markdown()


def test_docs_events_md_is_up_to_date(rendered: str) -> None:
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if committed != rendered:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                "docs/events.md",
                "render_events_markdown()",
                n=1,
            )
        )
        pytest.fail(f"docs/events.md is stale; regenerate it with:\n    {REGENERATE}\n\n{diff}")


def test_rendering_is_deterministic(rendered: str) -> None:
    assert render_events_markdown() == rendered


def test_main_prints_the_document(rendered: str, capsys: pytest.CaptureFixture[str]) -> None:
    main()
    assert capsys.readouterr().out == rendered


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.TYPE)
def test_every_type_and_field_is_documented(rendered: str, cls: type[Event]) -> None:
    section = rendered.split(f"### `{cls.TYPE}`\n", 1)[1].split("\n### ", 1)[0]
    assert f"agora.c42.{cls.TYPE}" in section
    for field in msgspec.structs.fields(cls):
        if field.name not in ENVELOPE_FIELDS:
            assert f"| `{field.encode_name}` |" in section, field.name
    first_line = (cls.__doc__ or "").strip().splitlines()[0]
    assert first_line in section


def test_envelope_is_documented_once(rendered: str) -> None:
    envelope = rendered.split("## The envelope", 1)[1].split("\n## ", 1)[0]
    for name in ENVELOPE_FIELDS:
        assert f"| `{name}` |" in envelope
    reference = rendered.split("## Event reference", 1)[1]
    assert "| `occurred_at` |" not in reference


def test_limits_and_rules_are_quoted_from_the_code(rendered: str) -> None:
    for text in (
        f"{MAX_EVENT_BYTES} bytes",
        f"1..{MAX_TITLE_LENGTH} characters",
        f"at most {MAX_NOTE_LENGTH} characters",
        f"`{SYSTEM_ACTOR}`",
        "Nats-Msg-Id",
        "AGORA_STREAM_DUPLICATE_WINDOW",
        "agora schema --out DIR",
        "agora.<community>.<type>",
        "`agora.>`",
    ):
        assert text in rendered, text


def test_table_cells_escape_pipes(rendered: str) -> None:
    """The UTC pattern contains `|`; unescaped it would split the table cell."""
    row = next(line for line in rendered.splitlines() if line.startswith("| `occurred_at` |"))
    assert row.replace("\\|", "").count("|") == 6
