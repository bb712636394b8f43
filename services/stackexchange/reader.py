"""Streaming reads of a Stack Exchange dump, spooled to a temporary SQLite file in time order.

The dump's files are sorted by ``Id``, not by time (``PostHistory.xml`` visibly is not), and a real
``Posts.xml`` is gigabytes, so nothing here holds a file in memory:

* :func:`iter_rows` streams one file's ``<row>`` elements with ``iterparse``, clearing each
  element (and the root's list of children) once read: memory is one row.
* :class:`Spool` copies the attributes the mapping needs into a temporary SQLite file (one table
  per dump file, inserted in batches of :data:`BATCH_ROWS`), then answers one query per source
  whose ``ORDER BY`` is that source's time order. The joins that fill in authors, post types and
  parents (a vote needs its post's owner) run inside SQLite against the ``posts`` table, so the
  Python process keeps no per-post or per-user dictionary at all. SQLite sorts with its own
  external merge sort; its memory is bounded by the page cache (:data:`CACHE_MIB` per sort), and
  it spills to temporary files beyond that.

Times in the dump are UTC without an offset (``2014-01-21T20:26:05.383``); :func:`parse_time`
turns them into microseconds since the epoch, which sort as integers.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from services.errors import SourceError

#: Rows per ``executemany`` while spooling.
BATCH_ROWS: Final = 1_000

#: SQLite page cache of the spool, in MiB (also what one of its sorts may use before spilling).
CACHE_MIB: Final = 16

#: The files the mapping reads, in the order they are spooled.
MAPPED_FILES: Final = ("Users.xml", "Posts.xml", "PostHistory.xml", "Comments.xml", "Votes.xml")

#: Files with no Agora equivalent: their rows are counted and reported as skipped, not stored.
IGNORED_FILES: Final = {
    "Badges.xml": "badges: the contract has no badge event",
    "Tags.xml": "tag descriptions: tags travel on post.created/post.edited only",
    "PostLinks.xml": "post links (duplicate/related): the contract has no link event",
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_SCHEMA: Final = """
CREATE TABLE users (id INTEGER PRIMARY KEY, t INTEGER NOT NULL, name TEXT NOT NULL);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY, type INTEGER NOT NULL, t INTEGER NOT NULL, parent INTEGER,
    accepted INTEGER, owner INTEGER, owner_name TEXT
);
CREATE TABLE post_text (id INTEGER PRIMARY KEY, title TEXT, body TEXT, tags TEXT);
CREATE TABLE history (
    id INTEGER PRIMARY KEY, type INTEGER NOT NULL, post INTEGER NOT NULL, guid TEXT NOT NULL,
    t INTEGER NOT NULL, user INTEGER, user_name TEXT, text TEXT, comment TEXT
);
CREATE TABLE comments (
    id INTEGER PRIMARY KEY, post INTEGER NOT NULL, t INTEGER NOT NULL, user INTEGER,
    user_name TEXT, text TEXT NOT NULL
);
CREATE TABLE votes (
    id INTEGER PRIMARY KEY, post INTEGER NOT NULL, type INTEGER NOT NULL, t INTEGER NOT NULL,
    user INTEGER
);
"""

_INDEXES: Final = """
CREATE INDEX history_post ON history (post, type, t, id);
CREATE INDEX votes_post ON votes (post, type);
-- A post as a target: its type, owner and parent question, and the time it became visible
-- (an answer older than its question -- merged questions -- counts from the question's time).
CREATE VIEW target AS
SELECT p.id, p.type, p.t, p.owner, p.owner_name, p.parent, p.accepted,
       max(p.t, coalesce(q.t, p.t)) AS te,
       q.type AS qtype, q.owner AS qowner, q.owner_name AS qowner_name
FROM posts p LEFT JOIN posts q ON q.id = p.parent;
"""


def parse_time(text: str) -> int:
    """Return a dump timestamp as microseconds since the epoch; no offset means UTC."""
    moment = datetime.fromisoformat(text)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return (moment - _EPOCH) // _MICROSECOND


def to_datetime(micros: int) -> datetime:
    """Return the UTC-aware datetime of :func:`parse_time`'s microseconds."""
    return _EPOCH + timedelta(microseconds=micros)


def iter_rows(path: Path) -> Iterator[dict[str, str]]:
    """Yield the attributes of each ``<row>`` of a dump file, one at a time.

    Each element is cleared once read, and so is the root's list of children, so memory stays at
    one row whatever the file's size. Raises :class:`SourceError` for unreadable or malformed XML.
    """
    try:
        context = ET.iterparse(path, events=("start", "end"))
        root: ET.Element | None = None
        for event, element in context:
            if event == "start":
                if root is None:
                    root = element
                continue
            if element.tag == "row":
                yield dict(element.attrib)
                element.clear()
                if root is not None:
                    root.clear()
    except ET.ParseError as error:
        line, column = error.position
        raise SourceError(f"{path}: malformed XML at line {line}, column {column}") from None
    except OSError as error:
        raise SourceError(f"{path}: cannot read ({error})") from None


class BadRow(Exception):
    """A row lacks an attribute the mapping needs, or has one that is malformed."""


def _int(row: dict[str, str], name: str) -> int:
    value = row.get(name)
    if value is None or value == "":
        raise BadRow(f"malformed row: no {name}")
    try:
        return int(value)
    except ValueError:
        raise BadRow(f"malformed row: {name} is not an integer") from None


def _opt_int(row: dict[str, str], name: str) -> int | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRow(f"malformed row: {name} is not an integer") from None


def _time(row: dict[str, str], name: str = "CreationDate") -> int:
    value = row.get(name)
    if not value:
        raise BadRow(f"malformed row: no {name}")
    try:
        return parse_time(value)
    except ValueError:
        raise BadRow(f"malformed row: {name} is not a timestamp") from None


def _user_row(row: dict[str, str]) -> tuple[tuple[Any, ...], ...]:
    return ((_int(row, "Id"), _time(row), row.get("DisplayName", "")),)


def _post_rows(row: dict[str, str]) -> tuple[tuple[Any, ...], ...]:
    post_id = _int(row, "Id")
    meta = (
        post_id,
        _int(row, "PostTypeId"),
        _time(row),
        _opt_int(row, "ParentId"),
        _opt_int(row, "AcceptedAnswerId"),
        _opt_int(row, "OwnerUserId"),
        row.get("OwnerDisplayName"),
    )
    return meta, (post_id, row.get("Title"), row.get("Body"), row.get("Tags"))


def _history_row(row: dict[str, str]) -> tuple[tuple[Any, ...], ...]:
    row_id = _int(row, "Id")
    return (
        (
            row_id,
            _int(row, "PostHistoryTypeId"),
            _int(row, "PostId"),
            row.get("RevisionGUID") or f"#{row_id}",
            _time(row),
            _opt_int(row, "UserId"),
            row.get("UserDisplayName"),
            row.get("Text"),
            row.get("Comment"),
        ),
    )


def _comment_row(row: dict[str, str]) -> tuple[tuple[Any, ...], ...]:
    return (
        (
            _int(row, "Id"),
            _int(row, "PostId"),
            _time(row),
            _opt_int(row, "UserId"),
            row.get("UserDisplayName"),
            row.get("Text", ""),
        ),
    )


def _vote_row(row: dict[str, str]) -> tuple[tuple[Any, ...], ...]:
    return (
        (
            _int(row, "Id"),
            _int(row, "PostId"),
            _int(row, "VoteTypeId"),
            _time(row),
            _opt_int(row, "UserId"),
        ),
    )


_Converter = Callable[[dict[str, str]], tuple[tuple[Any, ...], ...]]

#: Per mapped file: how a row becomes table rows, and the INSERT of each table, in that order.
_LOADERS: Final[dict[str, tuple[_Converter, tuple[str, ...]]]] = {
    "Users.xml": (_user_row, ("INSERT OR IGNORE INTO users VALUES (?, ?, ?)",)),
    "Posts.xml": (
        _post_rows,
        (
            "INSERT OR IGNORE INTO posts VALUES (?, ?, ?, ?, ?, ?, ?)",
            "INSERT OR IGNORE INTO post_text VALUES (?, ?, ?, ?)",
        ),
    ),
    "PostHistory.xml": (
        _history_row,
        ("INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",),
    ),
    "Comments.xml": (_comment_row, ("INSERT OR IGNORE INTO comments VALUES (?, ?, ?, ?, ?, ?)",)),
    "Votes.xml": (_vote_row, ("INSERT OR IGNORE INTO votes VALUES (?, ?, ?, ?, ?)",)),
}


@dataclass
class LoadStats:
    """What spooling read: rows per file, rows refused (with the reason), files absent."""

    rows: Counter[str] = field(default_factory=Counter)
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    missing_files: list[str] = field(default_factory=list)


class Spool:
    """The temporary SQLite file the dump is copied into, and the time-ordered queries on it.

    One connection, used by one thread at a time (it may move between threads: the importer
    reads it from a worker thread). Close it to release the file; the caller deletes it.
    """

    def __init__(self, path: Path, *, cache_mib: int = CACHE_MIB) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "temp_store = FILE",
            f"cache_size = -{cache_mib * 1024}",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    def load(self, directory: Path, stats: LoadStats, *, comments: bool = True) -> None:
        """Copy the mapped files of ``directory`` into the spool; count the ignored files' rows.

        ``Posts.xml`` is required; any other file may be absent (it is listed in
        ``stats.missing_files``). Rows without a usable ``Id``, time or reference are refused
        with the reason; a repeated ``Id`` keeps the first row.
        """
        if not directory.is_dir():
            raise SourceError(f"{directory}: not a directory")
        if not (directory / "Posts.xml").is_file():
            raise SourceError(f"{directory}: no Posts.xml; is it a Stack Exchange dump?")
        for name in MAPPED_FILES:
            path = directory / name
            if not path.is_file():
                stats.missing_files.append(name)
            elif name == "Comments.xml" and not comments:
                reason = "comments not imported (include_comments=False)"
                for _ in iter_rows(path):
                    stats.rows[name] += 1
                    stats.refused[(name, reason)] += 1
            else:
                self._load_file(path, stats)
        for name, reason in IGNORED_FILES.items():
            path = directory / name
            if not path.is_file():
                stats.missing_files.append(name)
                continue
            for _ in iter_rows(path):
                stats.rows[name] += 1
                stats.refused[(name, reason)] += 1
        self._db.executescript(_INDEXES)
        self._db.execute("ANALYZE")

    def _load_file(self, path: Path, stats: LoadStats) -> None:
        name = path.name
        convert, inserts = _LOADERS[name]
        batches: list[list[tuple[Any, ...]]] = [[] for _ in inserts]

        def flush() -> None:
            self._db.execute("BEGIN")
            before = self._db.total_changes
            for sql, batch in zip(inserts, batches, strict=True):
                self._db.executemany(sql, batch)
            changed = self._db.total_changes - before
            duplicates = (len(batches[0]) * len(inserts) - changed) // len(inserts)
            if duplicates:
                stats.refused[(name, "repeated Id: the first row is kept")] += duplicates
            self._db.execute("COMMIT")
            for batch in batches:
                batch.clear()

        for row in iter_rows(path):
            stats.rows[name] += 1
            try:
                converted = convert(row)
            except BadRow as error:
                stats.refused[(name, str(error))] += 1
                continue
            for batch, values in zip(batches, converted, strict=True):
                batch.append(values)
            if len(batches[0]) >= BATCH_ROWS:
                flush()
        if batches[0]:
            flush()

    # -- the time-ordered sources; each query's ORDER BY is the key the mapping merges on -------

    def users(self) -> Iterator[sqlite3.Row]:
        """Users by (CreationDate, Id)."""
        return self._db.execute("SELECT id, t, name FROM users ORDER BY t, id")

    def posts(self) -> Iterator[sqlite3.Row]:
        """Posts by (visible time, Id), with their question's owner and their revisions' text.

        ``h_title``/``h_body``/``h_tags`` are the initial revision (Markdown source);
        ``h_last_body`` is the latest body revision (initial, edit or rollback).
        """
        return self._db.execute(
            """
            SELECT p.id, p.type, p.t, p.te, p.owner, p.owner_name, p.parent, p.qtype,
                   p.qowner, p.qowner_name, x.title, x.body, x.tags,
                   (SELECT text FROM history h WHERE h.post = p.id AND h.type = 1
                    ORDER BY h.t, h.id LIMIT 1) AS h_title,
                   (SELECT text FROM history h WHERE h.post = p.id AND h.type = 2
                    ORDER BY h.t, h.id LIMIT 1) AS h_body,
                   (SELECT text FROM history h WHERE h.post = p.id AND h.type = 3
                    ORDER BY h.t, h.id LIMIT 1) AS h_tags,
                   (SELECT text FROM history h WHERE h.post = p.id AND h.type IN (2, 5, 8)
                    AND h.text IS NOT NULL ORDER BY h.t DESC, h.id DESC LIMIT 1) AS h_last_body
            FROM target p JOIN post_text x ON x.id = p.id
            ORDER BY p.te, p.id
            """
        )

    def history(self) -> Iterator[sqlite3.Row]:
        """PostHistory by (time, PostId, RevisionGUID, Id): a revision's rows are adjacent.

        A row's time is moved up to its post's visible time if it is earlier. ``final_delete``
        is 1 for a deletion (type 12) that no later undeletion (13) of the same post reverses.
        """
        return self._db.execute(
            """
            SELECT h.id, h.type, h.post, h.guid, h.t AS t0, max(h.t, coalesce(p.te, h.t)) AS t,
                   h.user, h.user_name, h.text, h.comment,
                   p.type AS ptype, p.owner, p.owner_name, p.parent, p.qtype,
                   p.qowner, p.qowner_name,
                   CASE WHEN h.type = 12 AND NOT EXISTS (
                       SELECT 1 FROM history l WHERE l.post = h.post AND l.type IN (12, 13)
                       AND (l.t, l.id) > (h.t, h.id)
                   ) THEN 1 ELSE 0 END AS final_delete
            FROM history h NOT INDEXED LEFT JOIN target p ON p.id = h.post
            ORDER BY t, h.post, h.guid, h.id
            """
        )

    def comments(self) -> Iterator[sqlite3.Row]:
        """Comments by (time, Id), with the commented post, its type and its question's owner."""
        return self._db.execute(
            """
            SELECT c.id, c.post, c.t AS t0, max(c.t, coalesce(p.te, c.t)) AS t, c.user,
                   c.user_name, c.text, p.type AS ptype, p.owner, p.owner_name, p.parent,
                   p.qtype, p.qowner, p.qowner_name
            FROM comments c LEFT JOIN target p ON p.id = c.post
            ORDER BY t, c.id
            """
        )

    def votes(self) -> Iterator[sqlite3.Row]:
        """Votes by (time, Id), with the voted post, its owner and its question's owner.

        A vote's time is its day (00:00); it is moved up to its post's visible time when the post
        appeared later that day.
        """
        return self._db.execute(
            """
            SELECT v.id, v.post, v.type AS vtype, v.t AS t0, max(v.t, coalesce(p.te, v.t)) AS t,
                   v.user, p.type AS ptype, p.owner, p.owner_name, p.parent, p.qtype,
                   p.qowner, p.qowner_name
            FROM votes v NOT INDEXED LEFT JOIN target p ON p.id = v.post
            ORDER BY t, v.id
            """
        )

    def unvoted_accepts(self) -> Iterator[sqlite3.Row]:
        """Questions whose AcceptedAnswerId has no AcceptedByOriginator vote, by answer time."""
        return self._db.execute(
            """
            SELECT q.id, a.te AS t, a.id AS answer, a.owner, a.owner_name,
                   q.owner AS qowner, q.owner_name AS qowner_name
            FROM posts q JOIN target a ON a.id = q.accepted AND a.type = 2 AND a.parent = q.id
            WHERE q.type = 1 AND NOT EXISTS (
                SELECT 1 FROM votes v WHERE v.post = q.accepted AND v.type = 1
            )
            ORDER BY a.te, q.id
            """
        )
