"""Generate docs/events.md (the event contract) and docs/tables.md (the projection tables).

The per-type reference is rendered from :func:`events.schema.event_schemas`, the same JSON Schemas
``agora schema`` exports, so the documentation and the schemas cannot drift apart; the prose
around it quotes the limits from :mod:`events.limits`. Regenerate with::

    python -m agora.docgen > docs/events.md
    python -m agora.docgen tables > docs/tables.md

docs/tables.md is rendered from each registered projection's ``define_tables``: stable names,
columns, types, keys and the columns' ``comment=``. ``tests/unit/test_docs.py`` and
``tests/unit/test_tables_doc.py`` fail when a committed file differs from what this renders.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from agora.config import Settings, env_name
from agora.registry import get_projections
from events.catalogue import EVENT_TYPES, Event
from events.codec import CODEC
from events.fields import Tag
from events.limits import (
    DEFAULT_MAX_FUTURE_SKEW,
    EXTRA_FIELD_PATTERN,
    ID_PATTERN,
    MAX_BODY_LENGTH,
    MAX_EVENT_BYTES,
    MAX_EVENT_TIME,
    MAX_EXTRA_DEPTH,
    MAX_FUTURE_SKEW_LIMIT,
    MAX_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_SAFE_INTEGER,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    MIN_EVENT_TIME,
    SYSTEM_ACTOR,
    TEXT_PATTERN,
    TIME_PATTERN,
    UUID_PATTERN,
)
from events.schema import event_schemas
from events.subjects import ALL_SUBJECTS, PREFIX, STREAM, community_filter, subject
from projections.api import TableNamer

FIXTURES_DIR = "tests/fixtures/events"
"""Where the frozen example payloads live, relative to the repository root."""

TAG_PATTERN: str = getattr(msgspec.inspect.type_info(Tag), "pattern", "")
"""The pattern every tag matches."""

ENVELOPE_FIELDS: tuple[str, ...] = ("type", *(f.name for f in msgspec.structs.fields(Event)))
"""The fields every event carries, documented once rather than in every type's table."""


def _cell(text: str) -> str:
    """Make ``text`` safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: Any) -> str:
    """Render a value as inline code: strings as they are, anything else as JSON."""
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _variants(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return list(prop.get("anyOf", [prop]))


def _json_type(prop: dict[str, Any]) -> str:
    """The JSON type of a property: ``string``, ``array of string``, ``string or null``..."""
    names: list[str] = []
    for variant in _variants(prop):
        if "enum" in variant:
            kinds = {type(v).__name__ for v in variant["enum"]}
            name = "string" if kinds == {"str"} else "enum"
        elif variant.get("type") == "array":
            name = f"array of {_json_type(variant.get('items', {}))}"
        else:
            name = str(variant.get("type", "any"))
        if "format" in variant:
            name += f" ({variant['format']})"
        names.append(name)
    return " or ".join(names)


def _length(low: int | None, high: int | None, unit: str) -> str | None:
    if low is not None and high is not None:
        return f"{low}..{high} {unit}"
    if high is not None:
        return f"at most {high} {unit}"
    if low is not None:
        return f"at least {low} {unit}"
    return None


def _constraints(prop: dict[str, Any]) -> str:
    """The constraints of a property in words, from its JSON Schema keywords."""
    parts: list[str] = []
    for variant in _variants(prop):
        if "enum" in variant:
            parts.append("one of " + ", ".join(_code(v) for v in variant["enum"]))
        chars = _length(variant.get("minLength"), variant.get("maxLength"), "characters")
        if chars:
            parts.append(chars)
        if "pattern" in variant:
            parts.append(f"pattern {_code(variant['pattern'])}")
        if "minimum" in variant or "maximum" in variant:
            parts.append(f"{variant.get('minimum', '')}..{variant.get('maximum', '')}")
        items = _length(variant.get("minItems"), variant.get("maxItems"), "items")
        if items:
            parts.append(items)
        if variant.get("type") == "array" and variant.get("items"):
            inner = _constraints(variant["items"])
            if inner:
                parts.append(f"each: {inner}")
    return "; ".join(parts)


def _presence(name: str, prop: dict[str, Any], required: list[str]) -> str:
    if name in required:
        return "required"
    if "default" in prop:
        return f"default `{json.dumps(prop['default'])}`"
    return "optional"


def _component(schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema a type's document points at."""
    name = str(schema["$ref"]).rsplit("/", 1)[-1]
    component: dict[str, Any] = schema["$defs"][name]
    return component


def _field_table(component: dict[str, Any], names: list[str]) -> list[str]:
    required = list(component.get("required", []))
    rows = [
        "| Field | JSON type | Presence | Constraints | Description |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        prop = component["properties"][name]
        cells = (
            f"`{name}`",
            _json_type(prop),
            _presence(name, prop, required),
            _constraints(prop),
            prop.get("description", ""),
        )
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _envelope(schemas: dict[str, dict[str, Any]]) -> list[str]:
    component = _component(next(iter(schemas.values())))
    table = _field_table(component, list(ENVELOPE_FIELDS))
    # ``type`` is an enum of one tag per type; in the envelope it stands for all of them.
    table[2] = (
        "| `type` | string | required | the wire tag of the type | "
        "What the event is, e.g. `post.created`; selects the fields below. |"
    )
    return table


def _example_community(schemas: dict[str, dict[str, Any]]) -> str:
    prop = _component(next(iter(schemas.values())))["properties"]["community"]
    return str(prop.get("examples", ["c42"])[0])


def _type_section(cls: type[Event], schema: dict[str, Any], community: str) -> list[str]:
    component = _component(schema)
    version = CODEC.current[cls.TYPE]
    example = f"{FIXTURES_DIR}/v{version}/{cls.TYPE}.json"
    own = [name for name in component["properties"] if name not in ENVELOPE_FIELDS]
    description = inspect.cleandoc(component.get("description", ""))
    lines = [
        f"### `{cls.TYPE}`",
        "",
        description,
        "",
        f"- Subject: `{subject(community, cls.TYPE)}`",
        f"- Current version: `v = {version}`",
        f"- Python: `events.{cls.__name__}`",
        f"- Example payload: [`{example}`](../{example})",
        "",
        "Fields besides the envelope:",
        "",
        *_field_table(component, own),
    ]
    return lines


def _intro(schemas: dict[str, dict[str, Any]]) -> str:
    community = _example_community(schemas)
    window = Settings().stream_duplicate_window
    window_text = f"{window / 60:g} minutes" if window % 60 == 0 else f"{window:g} seconds"
    types = ", ".join(f"[`{cls.TYPE}`](#{cls.TYPE.replace('.', '')})" for cls in EVENT_TYPES)
    time_range = f"{MIN_EVENT_TIME:%Y-%m-%d} to {MAX_EVENT_TIME:%Y-%m-%d}"
    skew = (
        f"{DEFAULT_MAX_FUTURE_SKEW.total_seconds():g} s by default, "
        f"at most {MAX_FUTURE_SKEW_LIMIT.total_seconds():g} s"
    )
    return f"""\
<!-- Generated by `python -m agora.docgen > docs/events.md` from events/. Do not edit by hand. -->

# Agora events

Everything that happens in an Agora community is an **event**: an immutable fact, published once
to the append-only NATS JetStream stream `{STREAM}` and never changed afterwards. Projections
(counts, reputation, moderation queues...) are derived from the stream and can be rebuilt from it.
This page is the contract between the producers of events and their consumers. The Python side of
it is the `events` package; other languages use the JSON Schemas that `agora schema` exports.

Event types: {types}.

## The envelope

An event is one flat JSON object (UTF-8), tagged by `type`. Every type carries the same envelope
fields, followed by its own:

{chr(10).join(_envelope(schemas))}

Times are RFC 3339 strings in UTC, spelled one way: `YYYY-MM-DDTHH:MM:SS`, an optional
fraction of 1 to 6 digits, then `Z` or `+00:00`, e.g. `2024-03-14T09:26:53.589793Z`. Refused
rather than converted: another offset, `-00:00`, a lower-case `t` or `z`, a space for `T`, a
seventh fractional digit, a leap second (`:60`; Python cannot represent it). The pattern is
`{TIME_PATTERN}`. Times lie from {MIN_EVENT_TIME:%Y-%m-%d} to {MAX_EVENT_TIME:%Y-%m-%d}
(inclusive, UTC): nothing in a community happened before the Unix epoch, and the year-2999
ceiling leaves every projection and dashboard centuries of headroom for its date arithmetic
(an event dated 9999-12-31 used to overflow one). `occurred_at` is when the fact happened, not
when it was sent, so imported history keeps its original times; it may not lie in the future
either, beyond a clock skew (see Validation).

## Subjects, stream and order

Each event is published on the subject `{PREFIX}.<community>.<type>`, for example
`{subject(community, "post.created")}`. The stream `{STREAM}` captures `{ALL_SUBJECTS}`: every
community, every type. A consumer of one community filters on `{community_filter(community)}`,
a consumer of one type on `{PREFIX}.*.<type>`.

The subject is part of the contract: it must be exactly `{PREFIX}.<community>.<type>` of the
payload's own `community` and `type`. Deploy permissions are granted per subject, so a payload
naming another community (or another type) than its subject would let a producer write where it
has no right to: projections set such a message aside as a dead letter of kind
`subject_mismatch` and never fold it. The publisher, ingest and `agora publish` derive the subject
from the event; a producer in another language must do the same.

The stream's sequence numbers are the order of events. Consumers apply the events of one
community in that order; there is no order between communities that anyone should rely on. A
producer that needs one event stored after another (a reply after its post) publishes the second
only once the first is acknowledged: retries after a lost acknowledgement can otherwise reorder
events that were in flight together.

## Identifiers and limits

Community, member, post, reply and report ids are NATS subject tokens: `{ID_PATTERN}`, that
is 1 to {MAX_ID_LENGTH} ASCII letters, digits, `_` and `-`; no dots, spaces or wildcards.
Post, reply and report ids are unique within their community. The event `id` is a UUID in its
canonical spelling, lower-case and hyphenated (`{UUID_PATTERN}`), so that it has one spelling
as `Nats-Msg-Id`; live events use random ones (UUID4), importers derive them from the source's
ids (`events.derived_event_id`, UUID5) so that importing the same history twice yields the same
ids.

| Limit | Value |
|---|---|
| Encoded event (JSON bytes) | at most {MAX_EVENT_BYTES} bytes ({MAX_EVENT_BYTES // 1024} KiB) |
| Identifier | 1..{MAX_ID_LENGTH} characters of `[A-Za-z0-9_-]` |
| Post title | 1..{MAX_TITLE_LENGTH} characters |
| Post or reply body (Markdown) | at most {MAX_BODY_LENGTH} characters, within the byte limit |
| Note (reports, decisions, hides, restores) | at most {MAX_NOTE_LENGTH} characters |
| Tags of a post | at most {MAX_TAGS}, each at most {MAX_TAG_LENGTH} characters, `{TAG_PATTERN}` |
| Event time (`occurred_at`, `until`) | {time_range}, UTC |
| `occurred_at` past the producer's clock | {skew} |
| Free text (title, body, note, display name, rule) | no control but TAB, LF, CR: `{TEXT_PATTERN}` |

Lengths are counted in Unicode code points, as JSON Schema counts them. The byte limit applies
to the whole encoded event, so a long body of non-ASCII text can exceed it. Free text refuses
NUL (PostgreSQL text cannot store it) and the other C0 controls and DEL (invisible or harmful
in a browser); identifiers are ASCII and hold no control character at all.

A JSON object never names a key twice (RFC 8259 only says it SHOULD NOT; parsers then disagree
on which copy wins), at any depth.

## The reserved actor `{SYSTEM_ACTOR}`

`actor` is the member who caused the event. Automation (rules, importers, the moderation reactor)
acts as `{SYSTEM_ACTOR}`; `content.hidden`, for one, is normally published by `{SYSTEM_ACTOR}`.
No member can be called `{SYSTEM_ACTOR}`: a `member.joined` for it is refused.

## Publishing exactly once: de-duplication

Every event is published with the header `Nats-Msg-Id` set to its `id`. Within the stream's
duplicate window, {window_text} by default (`{env_name("stream_duplicate_window")}`, in seconds),
a second publish of the same id stores nothing and is acknowledged with `duplicate: true`. That
is what makes retries safe: after a time-out, publish the *same* event (same id, same bytes)
again. A re-publish after the window is stored a second time; consumers recognise the repeated
event id and ignore it, so a fact is applied once however often it is sent.

An id names one event in its community, forever. A copy whose content differs in any way (another
`occurred_at`, another body) is not that event: projections set it aside as a dead letter of
kind `conflicting_duplicate` naming both sequences, and never apply it. Within the window the
server answers such a copy `duplicate: true` without storing it; `events.publisher` then fetches
the stored message and reports a conflict (`PublishStatus.CONFLICT`) unless it is the same event.
(In nats-py, `PubAck.duplicate` is `None`, not `False`, for a newly stored message.) The same id
in two communities names two events: nothing one community's producer sends can make another
community's event a duplicate.

## Validation

Three entry points of `events.codec`, one per boundary:

- `encode(event)`: a Python producer's event to bytes. msgspec does not check constraints when a
  Struct is built, so `encode` validates the encoded bytes before returning them.
- `validate_json(data)`: raw JSON from a producer that is not Python (`agora publish` uses it).
  Strict: a field the type does not have is refused.
- `decode(data)`: bytes read back from the stream. Lenient about unknown fields (see Evolution),
  upcasts older versions, refuses future ones.

`decode` and `validate_json` check the same rules; `encode` round-trips through `decode`. Where
there is a clock -- the publisher (`Publisher(max_future_skew=...)`), the ingest service and
`agora publish`, all set by `{env_name("publish_max_future_skew")}` (seconds) -- an event whose
`occurred_at` lies more than the skew past that clock is refused too. Projections never look at
a clock: a fold's answer must not depend on when it runs.

Every refusal is an `events.InvalidEvent` naming the offending field (a dotted path such as
`tags[2]`, or `$` for the whole payload) and the reason; `UnknownEventType`,
`UnsupportedVersion` and `PayloadTooLarge` are its subclasses.

The JSON Schemas express every rule but these, which the codec also enforces:

- the encoded event is at most {MAX_EVENT_BYTES} bytes;
- no key twice in an object (a parsed document cannot show it);
- `occurred_at` at most the clock skew past the producer's clock;
- the calendar (no 30 February): the schemas say `format: date-time`, which a validator checks
  only with format assertion on (the patterns already refuse leap seconds and other spellings);
- `moderation.decided` has `until` if and only if `decision` is `suspend`;
- `member.joined` refuses the member `{SYSTEM_ACTOR}`.

## Evolution

The stream is kept forever, so every event ever written must stay readable. The rules:

1. **Adding a field**: give it a default. Old events decode with the default; old consumers
   ignore the field, because `decode` skips fields it does not know (msgspec's evolution rule).
   Such a field must stay within bounds, or `decode` refuses the event: a snake_case name
   (`{EXTRA_FIELD_PATTERN}`), a value nested at most {MAX_EXTRA_DEPTH} levels deep (a scalar is
   level 0, a list of scalars level 1), finite numbers within +/-{MAX_SAFE_INTEGER} (exact in every
   JSON parser), free-text strings, object keys snake_case too.
   Producers' raw JSON is still validated strictly by `validate_json`, so a producer cannot send a
   field before the contract has it.
2. **Changing a meaning or a shape** (renaming, retyping, making a field required): either a new
   event type, or a new version of the type: bump the default of `v`, and register an upcaster
   in `events.codec.UPCASTERS` for `(type, old version)` that turns an old payload into the next
   version. `decode` upcasts old events step by step; Python producers can only write the current
   version.
3. **Future versions are refused**: a consumer that reads a `v` newer than it knows raises
   `UnsupportedVersion` instead of guessing; deploy consumers before producers.
4. **Never remove a type or reuse a tag** with another meaning.
5. **Frozen fixtures**: `{FIXTURES_DIR}/vN/<type>.json` holds one payload per type and
   version ever written. They are never edited or regenerated; the test suite decodes every one
   of them with the current code.

## Producers in other languages

1. Export the schemas: `agora schema --out DIR` writes one JSON Schema (Draft 2020-12) per type,
   `<type>.json`, and `event.json` for any event (`agora schema` alone prints the latter).
2. Build the event as JSON: a fresh UUID as `id`, `occurred_at` in UTC, the current `v`.
   Validate it against the schema, and check the rules listed under Validation.
3. Publish it with JetStream on `{PREFIX}.<community>.<type>` with the header
   `Nats-Msg-Id: <id>`, and wait for the PubAck. An acknowledgement with `duplicate: true` means
   the event was already stored: treat it as success. No acknowledgement (a time-out): publish
   the same bytes again, within the duplicate window. An error answer (too large, no stream) is
   final: fix the event.
4. Without a NATS client at hand, `agora publish FILE` reads JSON Lines, validates every line
   strictly and publishes them the same way.

Never publish without waiting for the acknowledgement (a plain core NATS publish, fire and
forget): an event lost that way goes unnoticed.

## Event reference
"""


def render_events_markdown() -> str:
    """Return the full text of docs/events.md for the current catalogue."""
    schemas = event_schemas()
    community = _example_community(schemas)
    lines = [_intro(schemas)]
    for cls in EVENT_TYPES:
        lines += _type_section(cls, schemas[cls.TYPE], community)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# -- docs/tables.md ----------------------------------------------------------------------------


_POSTGRES = sa.create_engine("postgresql+psycopg://").dialect  # no connection is made


def _type_name(column: sa.Column[Any]) -> str:
    """The column's SQL type as PostgreSQL spells it (SQLite stores the same values)."""
    return str(column.type.compile(dialect=_POSTGRES))


def _column_row(column: sa.Column[Any], key: list[str]) -> str:
    default = column.default
    shown = ""
    if isinstance(default, sa.ColumnDefault) and default.is_scalar:
        shown = _code(default.arg)
    cells = (
        f"`{column.name}`",
        f"`{_type_name(column)}`",
        str(key.index(column.name) + 1) if column.name in key else "",
        "yes" if column.nullable else "no",
        shown,
        column.comment or "",
    )
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table_section(logical: str, table: sa.Table) -> list[str]:
    key = [c.name for c in table.primary_key.columns]
    lines = [
        f"### `{logical}`",
        "",
        f"Key: {', '.join(f'`{k}`' for k in key)}. Physical tables: `{logical}__g<generation>`.",
        "",
        "| Column | Type | Key | Nullable | Default | Meaning and unit |",
        "|---|---|---|---|---|---|",
        *(_column_row(column, key) for column in table.columns),
    ]
    missing = [c.name for c in table.columns if not c.comment]
    if missing:
        lines += ["", f"Without a comment in the code: {', '.join(f'`{m}`' for m in missing)}."]
    return lines


_TABLES_INTRO = """\
<!-- Generated by `python -m agora.docgen tables > docs/tables.md` from the projections' table
definitions. Do not edit by hand. -->

# Projection tables

The tables every registered projection keeps, as dashboards and ad-hoc SQL read them. Read them
by their **stable names** (the headings below): each is a view over the projection's active
generation, and keeps its name and columns across rebuilds, replays and rollbacks
(docs/projections.md). The physical tables (`<name>__g<generation>`) come and go with
generations; never read those.

Types are PostgreSQL's; SQLite stores the same values (times as ISO 8601 text, UTC). Times are
event time (`occurred_at`) unless a column says otherwise, days and hours are UTC. "Key" is the
column's position in the primary key. "Meaning and unit" is the column's `comment=` in the code;
a column without one is listed under its table.

The engine's own tables (`agora_checkpoints`, `agora_generations`, `agora_dead_letters`,
`agora_parked`, `agora_held`, `agora_status`, `agora_leases`, `agora_seen_*`) are not projection
tables and are described in docs/projections.md and docs/operations.md.
"""


def render_tables_markdown() -> str:
    """Return the full text of docs/tables.md for the registered projections."""
    lines = [_TABLES_INTRO]
    for projection in get_projections():
        doc = inspect.cleandoc(type(projection).__doc__ or "").split("\n\n", 1)[0]
        lines += [
            f"## `{projection.name}` (version {projection.version})",
            "",
            " ".join(doc.split()),
            "",
        ]
        tables = projection.define_tables(sa.MetaData(), TableNamer(projection.name, 1))
        for logical, table in tables.items():
            lines += [*_table_section(logical, table), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


DOCUMENTS: dict[str, Callable[[], str]] = {
    "events": render_events_markdown,
    "tables": render_tables_markdown,
}
"""What ``python -m agora.docgen [NAME]`` renders: docs/events.md (default), docs/tables.md."""


def main(argv: Sequence[str] | None = None) -> None:
    """Write the rendered Markdown of ``argv[0]`` (default ``events``) to standard output."""
    name = argv[0] if argv else "events"
    if name not in DOCUMENTS:
        raise SystemExit(f"usage: python -m agora.docgen [{'|'.join(DOCUMENTS)}]")
    sys.stdout.write(DOCUMENTS[name]())


if __name__ == "__main__":
    main(sys.argv[1:])
