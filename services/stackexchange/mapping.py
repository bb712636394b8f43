"""Stack Exchange dump rows to Agora events, in global time order (docs/import.md has the table).

:func:`iter_events` spools the dump (:mod:`services.stackexchange.reader`), merges the
time-ordered sources with :func:`heapq.merge` and maps each row (or each revision: the rows of one
``RevisionGUID``) to at most one event. Every event is validated with :func:`events.encode` before
it is yielded; every row that yields no event is counted in the :class:`MappingReport` with the
reason, as *skipped* (the information is not imported) or *folded* (another event carries it).

Ordering key of every source: ``(time, rank, id, revision)``; ``rank`` orders sources that share an
instant (a user joins, then posts, then the post's history, comments and votes), so a row is never
yielded before the post it refers to. Times are the dump's, except where a row would precede the
post it refers to (votes carry only their day): such rows are moved up to that post's time, and
counted in ``MappingReport.adjusted``.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import re
import sqlite3
import tempfile
import unicodedata
import uuid
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from events import (
    AnswerAccepted,
    AnyEvent,
    InvalidEvent,
    MemberJoined,
    PayloadTooLarge,
    PostCreated,
    PostDeleted,
    PostEdited,
    ReactionAdded,
    ReplyCreated,
    ReplyDeleted,
    derived_event_id,
    encode,
)
from events.fields import ContentKind, DeleteReason
from events.limits import (
    ID_PATTERN,
    MAX_BODY_LENGTH,
    MAX_EVENT_BYTES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    SYSTEM_ACTOR,
)
from services.errors import InvalidSetting
from services.stackexchange.reader import LoadStats, Spool, to_datetime

#: First part of every derived event id: ``derived_event_id(SOURCE, community, kind, Id)``.
SOURCE: Final = "stackexchange"

#: The dump's user ``-1`` ("Community", a background process) acts as this actor.
COMMUNITY_USER: Final = -1

#: Member id of content whose author's account was deleted and has no display name either.
DELETED_MEMBER: Final = "deleted"

#: Prefix of the placeholder, one-per-vote actor of an up/down vote (the dump has no voter id);
#: such reactions are marked ``anonymous``, so no projection takes the placeholder for a member.
ANONYMOUS_VOTER_PREFIX: Final = "anon-"

#: Appended to text cut to fit the contract's limits.
TRUNCATION_MARK: Final = "\n\n[truncated on import]"

_ID = re.compile(ID_PATTERN)
_TAG = re.compile(r"[a-z0-9][a-z0-9.+#-]*")
_TAG_BAD_CHARS = re.compile(r"[^a-z0-9.+#-]+")
_TAG_LEADING = re.compile(r"^[^a-z0-9]+")
_ANGLE_TAGS = re.compile(r"<([^<>]*)>")

# Source ranks at one instant: the merge key's second element.
_USERS, _POSTS, _HISTORY, _COMMENTS, _VOTES, _ACCEPTS = range(6)

QUESTION: Final = 1
ANSWER: Final = 2

POST_TYPES: Final = {
    1: "question",
    2: "answer",
    3: "orphaned tag wiki",
    4: "tag wiki excerpt",
    5: "tag wiki",
    6: "moderator nomination",
    7: "wiki placeholder",
    8: "privilege wiki",
}

VOTE_TYPES: Final = {
    1: "AcceptedByOriginator",
    2: "UpMod",
    3: "DownMod",
    4: "Offensive",
    5: "Favorite",
    6: "Close",
    7: "Reopen",
    8: "BountyStart",
    9: "BountyClose",
    10: "Deletion",
    11: "Undeletion",
    12: "Spam",
    15: "ModeratorReview",
    16: "ApproveEditSuggestion",
}

#: Why the vote types that map to nothing are skipped.
_VOTE_SKIPS: Final = {
    4: "offensive flag: its outcome is not in the dump (and public dumps never contain one)",
    5: "favorite (bookmark): the contract has no bookmark event",
    6: "close vote: the contract has no closure event",
    7: "reopen vote: the contract has no closure event",
    8: "bounty started: the contract has no bounty event",
    9: "bounty awarded: the contract has no bounty event",
    10: "deletion vote: only PostHistory deletions delete",
    11: "undeletion vote: the contract has no undelete event",
    12: "spam flag: its outcome is not in the dump (and public dumps never contain one)",
    15: "moderator review: no event type",
    16: "suggested edit approved: the edit itself comes from PostHistory",
}

HISTORY_TYPES: Final = {
    1: "initial title",
    2: "initial body",
    3: "initial tags",
    4: "edit title",
    5: "edit body",
    6: "edit tags",
    7: "rollback title",
    8: "rollback body",
    9: "rollback tags",
    10: "post closed",
    11: "post reopened",
    12: "post deleted",
    13: "post undeleted",
    14: "post locked",
    15: "post unlocked",
    16: "community owned",
    17: "post migrated",
    18: "question merged",
    19: "question protected",
    20: "question unprotected",
    21: "post disassociated",
    22: "question unmerged",
    24: "suggested edit applied",
    25: "post tweeted",
    31: "comment discussion moved to chat",
    33: "post notice added",
    34: "post notice removed",
    35: "post migrated away",
    36: "post migrated here",
    37: "post merge source",
    38: "post merge destination",
    50: "bumped by Community",
    52: "became hot network question",
    53: "removed from hot network questions",
    66: "created from Ask Wizard",
}

_INITIAL = frozenset({1, 2, 3})
_TITLE_EDITS = frozenset({4, 7})
_BODY_EDITS = frozenset({5, 8})
_TAG_EDITS = frozenset({6, 9})
_EDITS = _TITLE_EDITS | _BODY_EDITS | _TAG_EDITS
_DELETED, _UNDELETED = 12, 13

#: Why the history types that map to nothing are skipped (others: "no event type").
_HISTORY_SKIPS: Final = {
    10: "the contract has no closure event",
    11: "the contract has no closure event",
    14: "the contract has no lock event",
    15: "the contract has no lock event",
    16: "community wiki status: no event type",
    24: "the applied edit itself is its 4/5/6 rows (same revision)",
    25: "not an activity of the community",
}


@dataclass
class MappingReport:
    """What the mapping did with every row of the dump.

    ``rows`` counts the rows read per file. Every row ends in exactly one of: an event
    (``events``, per type; a revision of several rows makes one ``post.edited``, counted in
    ``revision_rows``), ``folded`` (another event carries its content) or ``skipped`` (not
    imported), both keyed by ``(file, reason)``. ``adjusted`` counts changes made to fit the
    contract: times moved, text cut, tags fixed or dropped, content taken from Posts.xml.
    """

    rows: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    folded: Counter[tuple[str, str]] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)
    revision_rows: int = 0
    extra_events: int = 0
    missing_files: list[str] = field(default_factory=list)

    @property
    def skipped_rows(self) -> int:
        """Rows not imported, all reasons together."""
        return sum(self.skipped.values())

    def accounted_rows(self) -> int:
        """Rows with a known outcome; equals ``sum(rows.values())`` once the mapping is done.

        ``extra_events`` (accepts taken from a question's AcceptedAnswerId) come from no row.
        """
        events = sum(self.events.values()) - self.extra_events
        multi = self.revision_rows - self.events[PostEdited.TYPE]
        return events + multi + sum(self.folded.values()) + self.skipped_rows

    def _take(self, stats: LoadStats) -> None:
        self.rows.update(stats.rows)
        self.skipped.update(stats.refused)
        self.missing_files.extend(stats.missing_files)


def check_community(community: str) -> str:
    """Return ``community`` if it is a valid community id (a subject token); raise otherwise."""
    if not isinstance(community, str) or not _ID.search(community):
        raise InvalidSetting(f"community must match {ID_PATTERN}, got {community!r}")
    return community


def iter_events(
    directory: str | Path,
    community: str = "beer",
    *,
    report: MappingReport | None = None,
    include_comments: bool = True,
    work_dir: str | Path | None = None,
) -> Generator[AnyEvent, None, None]:
    """Yield the dump's events in time order, each validated; no NATS involved.

    The dump is first copied into a temporary SQLite file under ``work_dir`` (default: the
    system's temporary directory), deleted when the iterator is exhausted or closed. Pass a
    ``report`` to learn what was skipped and why. Raises :class:`services.errors.SourceError`
    (on first use) when the directory is not a dump or a file is malformed XML.
    """
    check_community(community)
    return _events(
        Path(directory),
        community,
        report if report is not None else MappingReport(),
        include_comments,
        None if work_dir is None else Path(work_dir),
    )


def _events(
    directory: Path,
    community: str,
    report: MappingReport,
    include_comments: bool,
    work_dir: Path | None,
) -> Generator[AnyEvent, None, None]:
    with tempfile.TemporaryDirectory(prefix="agora-se-", dir=work_dir) as tmp:
        spool = Spool(Path(tmp) / "spool.sqlite3")
        try:
            stats = LoadStats()
            spool.load(directory, stats, comments=include_comments)
            report._take(stats)
            mapper = _Mapper(community, report)
            for _key, rank, item in heapq.merge(*_sources(spool), key=_key_of):
                yield from mapper.map(rank, item)
        finally:
            spool.close()


_Item = tuple[tuple[int, int, int, str], int, Any]


def _key_of(item: _Item) -> tuple[int, int, int, str]:
    return item[0]


def _sources(spool: Spool) -> list[Iterator[_Item]]:
    """One iterator per source, each sorted by the merge key (as its query's ORDER BY is)."""

    def simple(rows: Iterable[sqlite3.Row], rank: int, time: str = "t") -> Iterator[_Item]:
        for row in rows:
            yield (row[time], rank, row["id"], ""), rank, row

    def revisions() -> Iterator[_Item]:
        groups = itertools.groupby(spool.history(), key=lambda r: (r["t"], r["post"], r["guid"]))
        for (t, post, guid), rows in groups:
            yield (t, _HISTORY, post, guid), _HISTORY, list(rows)

    return [
        simple(spool.users(), _USERS),
        simple(spool.posts(), _POSTS, "te"),
        revisions(),
        simple(spool.comments(), _COMMENTS),
        simple(spool.votes(), _VOTES),
        simple(spool.unvoted_accepts(), _ACCEPTS),
    ]


# -- text and id helpers -----------------------------------------------------------------------


def member_id(user: int | None, display_name: str | None = None) -> str:
    """The member id of a dump user: ``u<Id>``; ``system`` for -1; a placeholder when absent.

    A deleted account leaves no ``UserId``, only a display name (often ``user<Id>``): the
    placeholder is ``deleted-<name>`` when the name is a valid id, ``deleted-h<hash>`` of the
    name otherwise, and ``deleted`` without a name. The same name gives the same placeholder.
    """
    if user is None:
        if not display_name:
            return DELETED_MEMBER
        candidate = f"{DELETED_MEMBER}-{display_name}"
        if _ID.search(candidate):
            return candidate
        digest = hashlib.sha1(display_name.encode("utf-8")).hexdigest()[:12]
        return f"{DELETED_MEMBER}-h{digest}"
    if user == COMMUNITY_USER:
        return SYSTEM_ACTOR
    return f"u{user}"


def parse_tags(raw: str | None) -> tuple[list[str], int, int]:
    """Parse ``<a><b>`` (or the newer ``|a|b|``) into contract tags: (tags, fixed, dropped).

    Each tag is lower-cased, accents are removed (NFKD), characters outside ``[a-z0-9.+#-]``
    become ``-``, leading characters other than a letter or digit are removed, and it is cut to
    50 characters. A tag left empty, a repeated one and any beyond the 10th are dropped.
    """
    if not raw:
        return [], 0, 0
    names = raw.strip("|").split("|") if raw.startswith("|") else _ANGLE_TAGS.findall(raw)
    tags: list[str] = []
    fixed = dropped = 0
    for name in names:
        tag = _fix_tag(name)
        if tag != name:
            fixed += 1
        if not tag or tag in tags or len(tags) >= MAX_TAGS:
            dropped += 1
            continue
        tags.append(tag)
    return tags, fixed, dropped


def _fix_tag(name: str) -> str:
    tag = name.strip().lower()
    if _TAG.fullmatch(tag) and len(tag) <= MAX_TAG_LENGTH:
        return tag
    tag = unicodedata.normalize("NFKD", tag).encode("ascii", "ignore").decode("ascii")
    tag = _TAG_LEADING.sub("", _TAG_BAD_CHARS.sub("-", tag))
    return tag[:MAX_TAG_LENGTH]


_CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
"""Characters free text may not hold (events.limits.TEXT_PATTERN), for ``str.translate``."""


def free_text(text: str | None) -> str:
    """``text`` without the control characters the contract refuses (TAB, LF, CR are kept)."""
    return (text or "").translate(_CONTROLS)


def fit_text(text: str | None, limit: int = MAX_BODY_LENGTH) -> tuple[str, bool]:
    """Free text (:func:`free_text`), cut to ``limit`` characters (with :data:`TRUNCATION_MARK`)."""
    text = free_text(text)
    if len(text) <= limit:
        return text, False
    return text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK, True


def fit_title(text: str | None) -> tuple[str | None, bool]:
    """A title as free text, cut to the contract's length; None when it is empty."""
    text = free_text(text).strip()
    if not text:
        return None, False
    if len(text) <= MAX_TITLE_LENGTH:
        return text, False
    return text[: MAX_TITLE_LENGTH - 1] + "\u2026", True


# -- the mapper --------------------------------------------------------------------------------


class _Skip(Exception):
    """A row maps to no event; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Ref:
    """An importable post as a target: its Agora ids and authors."""

    content: str
    kind: ContentKind
    author: str
    post: str
    post_author: str


def _ref(row: sqlite3.Row) -> _Ref:
    """The post a row refers to, from the ``target`` columns; raise _Skip if not imported."""
    ptype = row["ptype"]
    if ptype is None:
        raise _Skip("its post is not in the dump (deleted before the dump was made)")
    if ptype == QUESTION:
        author = member_id(row["owner"], row["owner_name"])
        return _Ref(f"q{row['post']}", "post", author, f"q{row['post']}", author)
    if ptype == ANSWER:
        if row["qtype"] != QUESTION:
            raise _Skip("its post is an answer whose question is not in the dump")
        return _Ref(
            f"a{row['post']}",
            "reply",
            member_id(row["owner"], row["owner_name"]),
            f"q{row['parent']}",
            member_id(row["qowner"], row["qowner_name"]),
        )
    name = POST_TYPES.get(ptype, "unknown post type")
    raise _Skip(f"its post is a {name} (PostTypeId {ptype}), which is not imported")


class _Mapper:
    """Maps merged rows to validated events and keeps the report."""

    def __init__(self, community: str, report: MappingReport) -> None:
        self.community = community
        self.report = report

    def _id(self, kind: str, row_id: int) -> uuid.UUID:
        return derived_event_id(SOURCE, self.community, kind, str(row_id))

    def map(self, rank: int, item: Any) -> Iterator[AnyEvent]:
        """Yield the event(s) of one merged item, recording what yields none."""
        if rank == _HISTORY:
            yield from self._revision(item)
            return
        file, build = {
            _USERS: ("Users.xml", self._user),
            _POSTS: ("Posts.xml", self._post),
            _COMMENTS: ("Comments.xml", self._comment),
            _VOTES: ("Votes.xml", self._vote),
            _ACCEPTS: ("Posts.xml", self._accept),
        }[rank]
        try:
            event = build(item)
        except _Skip as skip:
            self.report.skipped[(file, skip.reason)] += 1
            return
        checked = self._checked(event, file)
        if checked is not None:
            yield checked

    def _checked(self, event: AnyEvent, file: str) -> AnyEvent | None:
        """Validate ``event`` (cutting its body if it is over the byte limit); None if invalid."""
        for _ in range(8):
            try:
                encode(event)
            except PayloadTooLarge as error:
                body = getattr(event, "body", None)
                if not body:
                    break
                excess = error.size - MAX_EVENT_BYTES + len(TRUNCATION_MARK.encode())
                cut = body.removesuffix(TRUNCATION_MARK)
                event = msgspec.structs.replace(
                    event, body=cut[: max(0, len(cut) - excess)] + TRUNCATION_MARK
                )
                self.report.adjusted["body cut to fit the 64 KiB event limit"] += 1
                continue
            except InvalidEvent as error:
                self.report.skipped[(file, f"invalid event: {error}")] += 1
                return None
            self.report.events[event.TYPE] += 1
            return event
        self.report.skipped[(file, "invalid event: too large even without its body")] += 1
        return None

    def _body(self, text: str | None) -> str:
        body, cut = fit_text(text)
        if cut:
            self.report.adjusted[f"body cut to {MAX_BODY_LENGTH} characters"] += 1
        return body

    def _tags(self, raw: str | None) -> list[str]:
        tags, fixed, dropped = parse_tags(raw)
        if fixed:
            self.report.adjusted["tag fixed to the contract's pattern"] += fixed
        if dropped:
            self.report.adjusted["tag dropped (empty, repeated or beyond 10)"] += dropped
        return tags

    def _title(self, *candidates: str | None) -> str:
        for candidate in candidates:
            title, cut = fit_title(candidate)
            if title is not None:
                if cut:
                    self.report.adjusted[f"title cut to {MAX_TITLE_LENGTH} characters"] += 1
                return title
        self.report.adjusted["empty title replaced by '(untitled)'"] += 1
        return "(untitled)"

    # -- one method per source ------------------------------------------------------------------

    def _user(self, row: sqlite3.Row) -> AnyEvent:
        if row["id"] == COMMUNITY_USER:
            raise _Skip("the Community user (-1) is the `system` actor; it does not join")
        member = member_id(row["id"])
        return MemberJoined(
            id=self._id("user", row["id"]),
            community=self.community,
            actor=member,
            occurred_at=to_datetime(row["t"]),
            member=member,
            display_name=free_text(row["name"])[:100],
        )

    def _post(self, row: sqlite3.Row) -> AnyEvent:
        ptype = row["type"]
        author = member_id(row["owner"], row["owner_name"])
        common: dict[str, Any] = {
            "id": self._id("post", row["id"]),
            "community": self.community,
            "actor": author,
            "occurred_at": to_datetime(row["te"]),
        }
        if ptype == QUESTION:
            if row["h_title"] is None or row["h_body"] is None:
                self.report.adjusted["question content from Posts.xml (no initial revision)"] += 1
            return PostCreated(
                **common,
                post=f"q{row['id']}",
                title=self._title(row["h_title"], row["title"]),
                body=self._body(row["h_body"] if row["h_body"] is not None else row["body"]),
                tags=self._tags(row["h_tags"] if row["h_tags"] is not None else row["tags"]),
            )
        if ptype == ANSWER:
            if row["qtype"] != QUESTION:
                raise _Skip("answer whose question is not in the dump")
            if row["te"] != row["t"]:
                self.report.adjusted["answer older than its question: moved to its time"] += 1
            body = row["h_last_body"]
            if body is None:
                self.report.adjusted["answer body from Posts.xml (no revision)"] += 1
                body = row["body"]
            return ReplyCreated(
                **common,
                reply=f"a{row['id']}",
                post=f"q{row['parent']}",
                post_author=member_id(row["qowner"], row["qowner_name"]),
                parent=None,
                body=self._body(body),
            )
        name = POST_TYPES.get(ptype, "unknown post type")
        raise _Skip(f"PostTypeId {ptype} ({name}): no Agora equivalent")

    def _comment(self, row: sqlite3.Row) -> AnyEvent:
        try:
            ref = _ref(row)
        except _Skip as skip:
            raise _Skip(f"comment: {skip.reason}") from None
        if row["t"] != row["t0"]:
            self.report.adjusted["comment older than its post: moved to its time"] += 1
        return ReplyCreated(
            id=self._id("comment", row["id"]),
            community=self.community,
            actor=member_id(row["user"], row["user_name"]),
            occurred_at=to_datetime(row["t"]),
            reply=f"c{row['id']}",
            post=ref.post,
            post_author=ref.post_author,
            parent=ref.content,
            body=self._body(row["text"]),
        )

    def _vote(self, row: sqlite3.Row) -> AnyEvent:
        vtype = row["vtype"]
        name = VOTE_TYPES.get(vtype, "unknown")
        if vtype in _VOTE_SKIPS or vtype not in (1, 2, 3):
            reason = _VOTE_SKIPS.get(vtype, "unknown vote type")
            raise _Skip(f"VoteTypeId {vtype} ({name}): {reason}")
        try:
            ref = _ref(row)
        except _Skip as skip:
            raise _Skip(f"VoteTypeId {vtype} ({name}): {skip.reason}") from None
        if row["t"] != row["t0"]:
            self.report.adjusted["vote moved from 00:00 to its post's creation that day"] += 1
        common: dict[str, Any] = {
            "id": self._id("vote", row["id"]),
            "community": self.community,
            "occurred_at": to_datetime(row["t"]),
        }
        if vtype == 1:
            if ref.kind != "reply":
                raise _Skip("VoteTypeId 1 (AcceptedByOriginator): its post is not an answer")
            return AnswerAccepted(
                **common,
                actor=ref.post_author,
                post=ref.post,
                post_author=ref.post_author,
                reply=ref.content,
                reply_author=ref.author,
            )
        return ReactionAdded(
            **common,
            actor=f"{ANONYMOUS_VOTER_PREFIX}{row['id']}",
            target=ref.content,
            target_kind=ref.kind,
            target_author=ref.author,
            kind="upvote" if vtype == 2 else "downvote",
            post=ref.post if ref.kind == "reply" else None,
            anonymous=True,
        )

    def _accept(self, row: sqlite3.Row) -> AnyEvent:
        self.report.adjusted["answer.accepted from AcceptedAnswerId (no vote; answer's time)"] += 1
        self.report.extra_events += 1
        question_author = member_id(row["qowner"], row["qowner_name"])
        return AnswerAccepted(
            id=self._id("accepted", row["id"]),
            community=self.community,
            actor=question_author,
            occurred_at=to_datetime(row["t"]),
            post=f"q{row['id']}",
            post_author=question_author,
            reply=f"a{row['answer']}",
            reply_author=member_id(row["owner"], row["owner_name"]),
        )

    def _revision(self, rows: list[sqlite3.Row]) -> Iterator[AnyEvent]:
        """One revision (rows of one RevisionGUID at one time): edits make one post.edited."""
        file = "PostHistory.xml"
        edits: list[sqlite3.Row] = []
        for row in rows:
            htype = row["type"]
            name = HISTORY_TYPES.get(htype, "unknown")
            what = f"PostHistoryTypeId {htype} ({name})"
            try:
                ref = _ref(row)
            except _Skip as skip:
                self.report.skipped[(file, f"{what}: {skip.reason}")] += 1
                continue
            if htype in _INITIAL:
                self.report.folded[(file, f"{what}: carried by post.created/reply.created")] += 1
            elif htype in _EDITS and ref.kind == "reply":
                reason = f"{what} of an answer: reply.created carries its latest body"
                self.report.folded[(file, reason + " (the contract has no reply.edited)")] += 1
            elif htype in _EDITS:
                if row["text"] is None:
                    self.report.skipped[(file, f"{what}: no text")] += 1
                else:
                    edits.append(row)
            elif htype == _DELETED and row["final_delete"]:
                event = self._checked(self._deletion(row, ref), file)
                if event is not None:
                    yield event
            elif htype == _DELETED:
                reason = "reversed by a later undeletion (the contract has no undelete event)"
                self.report.skipped[(file, f"{what}: {reason}")] += 1
            elif htype == _UNDELETED:
                reason = "the contract has no undelete event; the deletion it reverses was dropped"
                self.report.skipped[(file, f"{what}: {reason}")] += 1
            else:
                reason = _HISTORY_SKIPS.get(htype, "no event type")
                self.report.skipped[(file, f"{what}: {reason}")] += 1
        if edits:
            event = self._checked(self._edit(edits), file)
            if event is not None:
                self.report.revision_rows += len(edits)
                yield event
            else:
                # One row counted by _checked; the others of the revision are skipped with it.
                self.report.skipped[(file, "row of an invalid revision")] += len(edits) - 1

    def _edit(self, rows: list[sqlite3.Row]) -> AnyEvent:
        first = min(rows, key=lambda r: r["id"])
        fields: dict[str, Any] = {}
        for row in sorted(rows, key=lambda r: r["id"]):
            if row["type"] in _TITLE_EDITS:
                fields["title"] = self._title(row["text"])
            elif row["type"] in _BODY_EDITS:
                fields["body"] = self._body(row["text"])
            else:
                fields["tags"] = self._tags(row["text"])
        if first["t"] != first["t0"]:
            self.report.adjusted["edit older than its post: moved to its time"] += 1
        return PostEdited(
            id=self._id("posthistory", first["id"]),
            community=self.community,
            actor=member_id(first["user"], first["user_name"]),
            occurred_at=to_datetime(first["t"]),
            post=f"q{first['post']}",
            author=member_id(first["owner"], first["owner_name"]),
            **fields,
        )

    def _deletion(self, row: sqlite3.Row, ref: _Ref) -> AnyEvent:
        actor = member_id(row["user"], row["user_name"])
        reason: DeleteReason = "author" if actor == ref.author else "moderator"
        if "spam" in (row["comment"] or "").lower():
            reason = "spam"
        common: dict[str, Any] = {
            "id": self._id("posthistory", row["id"]),
            "community": self.community,
            "actor": actor,
            "occurred_at": to_datetime(row["t"]),
            "author": ref.author,
            "reason": reason,
        }
        if ref.kind == "post":
            return PostDeleted(**common, post=ref.post)
        return ReplyDeleted(**common, reply=ref.content, post=ref.post)
