"""docs/tables.md is generated from the projections' table definitions and must match them."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import sqlalchemy as sa

from agora.docgen import main, render_tables_markdown
from agora.registry import get_projections
from projections.api import TableNamer

DOC = Path(__file__).resolve().parents[2] / "docs" / "tables.md"
REGENERATE = ".venv/bin/python -m agora.docgen tables > docs/tables.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_tables_markdown()


def test_docs_tables_md_is_up_to_date(rendered: str) -> None:
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if committed != rendered:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                "docs/tables.md",
                "render_tables_markdown()",
                n=1,
            )
        )
        pytest.fail(f"docs/tables.md is stale; regenerate it with:\n    {REGENERATE}\n\n{diff}")


def test_main_prints_the_tables_document(rendered: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["tables"])
    assert capsys.readouterr().out == rendered


def test_every_table_and_column_is_documented_by_its_stable_name(rendered: str) -> None:
    for projection in get_projections():
        tables = projection.define_tables(sa.MetaData(), TableNamer(projection.name, 7))
        for logical, table in tables.items():
            assert table.name == f"{logical}__g7"
            section = rendered.split(f"### `{logical}`\n", 1)[1].split("\n### ", 1)[0]
            for column in table.columns:
                assert f"| `{column.name}` |" in section, (logical, column.name)
                if column.comment:
                    assert column.comment.replace("|", "\\|") in section
    assert "__g7" not in rendered


def test_event_counts_columns_all_have_a_meaning(rendered: str) -> None:
    section = rendered.split("### `event_counts`\n", 1)[1].split("\n## ", 1)[0]
    assert "Without a comment" not in section
    assert "| `events` | `BIGINT` |  | no | `0` | events that day (count) |" in section
