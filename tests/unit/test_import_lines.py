"""What the demo says of an import: new events apart from those the stream already held."""

from __future__ import annotations

from agora.history import import_lines
from services.stackexchange.importer import ImportSummary


def test_import_lines_within_the_window_and_when_the_stream_could_not_be_read() -> None:
    within = ImportSummary(community="beer", stored=0, duplicate=6463, seconds=2.0)
    assert import_lines(within, 0) == [
        "imported 6,463 events of beer in 2.0 s: new 0, already in the stream 6,463, failed 0"
    ]
    first = ImportSummary(community="beer", stored=6463, seconds=2.0)
    assert import_lines(first, 0)[0].endswith("new 6,463, already in the stream 0, failed 0")
    unknown = ImportSummary(community="beer", stored=6463, seconds=2.0)
    assert import_lines(unknown, None) == [
        "imported 6,463 events of beer in 2.0 s: stored 6,463, duplicate 0, failed 0"
    ]
