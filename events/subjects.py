"""Stream and subject naming: ``agora.<community>.<type>`` on the stream ``AGORA``."""

from __future__ import annotations

from typing import Final

from events.catalogue import Event

STREAM: Final = "AGORA"
"""Name of the one append-only stream that holds every event."""

PREFIX: Final = "agora"
"""First token of every event subject."""

ALL_SUBJECTS: Final = f"{PREFIX}.>"
"""The subject filter the stream captures."""


def subject(community: str, type_: str) -> str:
    """Return the subject an event of ``type_`` in ``community`` is published on."""
    return f"{PREFIX}.{community}.{type_}"


def subject_of(event: Event) -> str:
    """Return the subject ``event`` is published on, e.g. ``agora.c42.post.created``."""
    return f"{PREFIX}.{event.community}.{event.TYPE}"


def community_filter(community: str) -> str:
    """Return the subject filter matching every event of one community."""
    return f"{PREFIX}.{community}.>"


def parse_subject(value: str) -> tuple[str, str]:
    """Split an event subject into ``(community, type)``; raise ValueError if it is not one."""
    prefix, _, rest = value.partition(".")
    community, _, type_ = rest.partition(".")
    if prefix != PREFIX or not community or not type_:
        raise ValueError(f"not an Agora event subject: {value!r}")
    return community, type_
