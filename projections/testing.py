"""The projection test kit: the properties every projection must have, checked on a real database.

A projection gets these checks by being registered: the test suite runs every registered
projection through :func:`check_projection` with generated histories. A projection's own test
calls it too, with histories that reach its corners, and adds what only that projection means
(an oracle, its invariants)::

    from projections.testing import check_projection

    def test_my_projection_passes_the_kit(tmp_path):
        check_projection(MyProjection, history, f"sqlite:///{tmp_path / 'kit.db'}")

Each check takes a factory of the projection (a fresh instance per batch, as after a restart or
a takeover: state kept on the instance between batches is a read the engine cannot see), a
history of valid events, and an engine on a SQLite or PostgreSQL database (``check_projection``
takes the URL of an empty one); it applies the history through the real
:class:`~projections.store.ProjectionStore`, in new generations side by side in that database,
and raises :class:`KitFailure` saying what differs. The fold policy is
``pause``: a fold that raises on a valid event fails the check. The checks:

* :func:`check_batching` -- results independent of batch size and of batch boundaries, and of
  partitioning by community: one batch, one event per batch, the given sizes and several
  partitions leave byte-identical tables;
* :func:`check_replay_equals_live` -- a generation rebuilt from the stream (catch-up batches)
  holds exactly what the live one does, and swapping it in changes nothing the stable names show;
* :func:`check_redelivery` -- applying twice equals once: an applied batch delivered again is
  fenced (or skipped) and the same events published again later change nothing;
* reads declared -- in every run above, the fold may read (``Changes.get``, ``peek``,
  ``keys_under``) only the rows it named in ``reads``/``reads_after``; an undeclared read fails
  the check even when the fold catches the ``KeyError``;
* :func:`check_columns_documented` -- every column has a ``comment=`` (its meaning and unit,
  rendered into docs/tables.md) and the class a docstring.

The kit imports nothing but ``projections``, ``events`` and SQLAlchemy: generating histories
(Hypothesis, the simulator) is the caller's business.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, cast

import sqlalchemy as sa

from events.catalogue import Event
from events.codec import CODEC
from events.subjects import subject_of
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key, Row
from projections.database import create_engine, reader
from projections.errors import ProjectionError
from projections.infra import dead_letters
from projections.partitions import community_of_subject, partition_of
from projections.store import Fenced, FoldFailed, FoldPolicy, ProjectionStore, RawMessage

Factory = Callable[[], Projection]
"""What makes a fresh instance of the projection under test (its class, or a registry factory)."""

Tables = dict[str, list[str]]
"""A generation's tables by logical name: each row as the repr of its values, in key order."""

T_NS = 1_770_000_000_000_000_000
"""Stream timestamp of the messages :func:`messages_of` makes (plus a millisecond per sequence)."""


class KitFailure(ProjectionError, AssertionError):
    """A projection does not have a property the kit checks; the message says what differs."""


def messages_of(events: Sequence[Event], first_seq: int = 1) -> list[RawMessage]:
    """``events`` as the stream holds them: encoded, on their subjects, at sequences from 1."""
    return [
        RawMessage(seq, subject_of(e), CODEC.encode(e), T_NS + seq * 1_000_000)
        for seq, e in enumerate(events, start=first_seq)
    ]


def check_projection(
    factory: Factory,
    events: Sequence[Event],
    url: str,
    *,
    sizes: Sequence[int] = (3,),
    partitions: int = 3,
) -> None:
    """Run every check of the kit on ``events``, in the empty database at ``url``.

    ``sizes`` are the batch sizes of the live runs, used in turn; ``partitions`` the number of
    partitions of the partitioned run.
    """
    check_columns_documented(factory())
    if not events:
        return
    engine = create_engine(url)
    try:
        check_batching(factory, events, engine, sizes=sizes, partitions=partitions)
        check_replay_equals_live(factory, events, engine, sizes=sizes)
        check_redelivery(factory, events, engine, sizes=sizes)
    finally:
        engine.dispose()


# -- the checks ---------------------------------------------------------------------------------


def check_batching(
    factory: Factory,
    events: Sequence[Event],
    engine: sa.Engine,
    *,
    sizes: Sequence[int] = (3,),
    partitions: int = 3,
) -> None:
    """One batch, one event per batch, ``sizes`` and ``partitions`` partitions: equal tables."""
    messages = messages_of(events)
    runner = _Runner(factory, engine)
    whole = runner.feed(messages, itertools.repeat(len(messages)))
    expected = runner.tables(whole)
    runs: list[tuple[str, int]] = [
        ("one event per batch", runner.feed(messages, itertools.repeat(1))),
        (f"batches of {list(sizes)}", runner.feed(messages, itertools.cycle(sizes))),
    ]
    if partitions > 1:
        split = runner.feed(messages, itertools.cycle(sizes), partitions=partitions)
        runs.append((f"{partitions} partitions by community", split))
    for label, number in runs:
        _same(runner.name, expected, runner.tables(number), "one batch", label)


def check_replay_equals_live(
    factory: Factory, events: Sequence[Event], engine: sa.Engine, *, sizes: Sequence[int] = (3,)
) -> None:
    """A generation rebuilt from the stream equals the live one, before and after the swap.

    The live generation is fed in ``sizes`` batches and serves the stable names; the rebuild is
    fed in catch-up batches (500) and swapped in as ``agora rebuild`` does.
    """
    messages = messages_of(events)
    runner = _Runner(factory, engine)
    live = runner.feed(messages, itertools.cycle(sizes))
    runner.store().activate(live)
    shown = runner.views()
    rebuilt = runner.feed(messages, itertools.repeat(500))
    _same(runner.name, runner.tables(live), runner.tables(rebuilt), "live", "replayed")
    runner.store().activate(rebuilt, only_building=True)
    _same(runner.name, shown, runner.views(), "stable names before the swap", "after it")


def check_redelivery(
    factory: Factory, events: Sequence[Event], engine: sa.Engine, *, sizes: Sequence[int] = (3,)
) -> None:
    """Applying twice equals applying once.

    An applied batch delivered again from where it started is refused (``Fenced``); delivered
    again after the checkpoint moved past it, it is skipped; the whole history published again
    later (same events, new sequences: after the stream's duplicate window) changes nothing.
    """
    messages = messages_of(events)
    runner = _Runner(factory, engine)
    cuts: list[tuple[int, list[RawMessage]]] = []
    number = runner.feed(messages, itertools.cycle(sizes), cuts=cuts)
    expected = runner.tables(number)
    checkpoint = messages[-1].seq
    for start, batch in _some(cuts):
        store = runner.store()
        try:
            store.apply(number, 0, start, batch, FoldPolicy.PAUSE)
        except Fenced:
            pass
        else:
            raise KitFailure(
                f"{runner.name}: re-applying the batch after seq {start} was not fenced"
            )
        outcome = store.apply(number, 0, checkpoint, batch, FoldPolicy.PAUSE)
        if outcome.applied or outcome.last_seq != checkpoint:
            raise KitFailure(f"{runner.name}: a batch at or before the checkpoint was re-folded")
        _same(runner.name, expected, runner.tables(number), "applied once", "batch redelivered")
    again = messages_of(events, first_seq=checkpoint + 1)
    runner.feed(again, itertools.cycle(sizes), number=number)
    _same(runner.name, expected, runner.tables(number), "applied once", "published twice")


def check_columns_documented(projection: Projection) -> None:
    """Every column of every table has a ``comment=``; the projection class has a docstring.

    The comments are the "Meaning and unit" of docs/tables.md, the class docstring's first
    paragraph the projection's description there.
    """
    name = projection.name
    missing = [
        f"{logical}.{column.name}"
        for logical, table in projection.define_tables(sa.MetaData(), TableNamer(name, 1)).items()
        for column in table.columns
        if not (column.comment or "").strip()
    ]
    if missing:
        raise KitFailure(
            f"{name}: columns without a comment= (their meaning and unit): {', '.join(missing)}"
        )
    if not (type(projection).__doc__ or "").strip():
        raise KitFailure(f"{name}: {type(projection).__name__} has no docstring")


# -- running a projection -----------------------------------------------------------------------


class _Runner:
    """Feeds histories to new generations of one projection, a fresh instance per batch."""

    def __init__(self, factory: Factory, engine: sa.Engine) -> None:
        self.factory = factory
        self.engine = engine
        self.name = factory().name
        self._store = ProjectionStore(engine, _watched(factory()))

    def store(self) -> ProjectionStore:
        """The store, holding a fresh, watched instance of the projection.

        One store for all batches keeps its compiled statements; the instance it folds with is
        new each time.
        """
        self._store.projection = _watched(self.factory())
        return self._store

    def feed(
        self,
        messages: Sequence[RawMessage],
        sizes: Iterator[int],
        *,
        partitions: int = 1,
        number: int | None = None,
        cuts: list[tuple[int, list[RawMessage]]] | None = None,
    ) -> int:
        """Apply ``messages`` to generation ``number`` (default: a new one); return its number.

        Each partition folds its communities' messages, in batches of the next of ``sizes``
        messages of the stream, and moves its checkpoint over the others' (as a worker does).
        """
        if number is None:
            first = self.store()
            number = first.next_generation()
            first.ensure(number, partitions)
        for partition in range(partitions):
            checkpoint = self.store().checkpoint(number, partition)
            while True:
                window = [m for m in messages if m.seq > checkpoint][: next(sizes)]
                if not window:
                    break
                mine = [m for m in window if _partition(m, partitions) == partition]
                if cuts is not None and mine:
                    cuts.append((checkpoint, mine))
                checkpoint = self._apply(number, partition, checkpoint, mine, window[-1].seq)
        self._no_dead_letters(number)
        return number

    def _apply(
        self, number: int, partition: int, checkpoint: int, batch: list[RawMessage], through: int
    ) -> int:
        store = self.store()
        watched = cast(_Watched, store.projection)
        try:
            outcome = store.apply(number, partition, checkpoint, batch, FoldPolicy.PAUSE, through)
        except FoldFailed as failed:
            raise KitFailure(
                f"{self.name}: the fold raised at seq {failed.seq}: {failed}"
                + _undeclared(watched.undeclared)
            ) from failed
        if watched.undeclared:
            raise KitFailure(
                f"{self.name}: the fold read rows it did not declare in reads/reads_after"
                + _undeclared(watched.undeclared)
            )
        return outcome.last_seq

    def _no_dead_letters(self, number: int) -> None:
        with reader(self.engine).connect() as conn:
            letters = conn.execute(
                sa.select(dead_letters.c.seq, dead_letters.c.kind, dead_letters.c.error_message)
                .where(
                    (dead_letters.c.projection == self.name) & (dead_letters.c.generation == number)
                )
                .order_by(dead_letters.c.seq)
                .limit(3)
            ).all()
        if letters:
            raise KitFailure(f"{self.name}: valid events were set aside: {letters}")

    def tables(self, number: int) -> Tables:
        """Every row of generation ``number``'s tables, typed as the columns read them."""
        out: Tables = {}
        with reader(self.engine).connect() as conn:
            for logical, table in self.store().generation(number).tables.items():
                key = list(table.primary_key.columns)
                rows = conn.execute(sa.select(table).order_by(*key)).all()
                out[logical] = [repr(tuple(_plain(v) for v in row)) for row in rows]
        return out

    def views(self) -> Tables:
        """Every row as read through the stable names (the views over the active generation)."""
        out: Tables = {}
        with reader(self.engine).connect() as conn:
            preparer = conn.dialect.identifier_preparer
            for logical in self.store().generation(1).tables:
                rows = conn.execute(sa.text(f"SELECT * FROM {preparer.quote(logical)}")).all()
                out[logical] = sorted(repr(tuple(_plain(v) for v in row)) for row in rows)
        return out


class _Watched(Projection):
    """A projection under watch: the rows its fold reads must be those it declared."""

    name: ClassVar[str] = "watched"
    version: ClassVar[int] = 0

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.undeclared: list[str] = []

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """The watched projection's tables."""
        return self.inner.define_tables(metadata, table_name)

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        """The rows the watched projection declares first."""
        return self.inner.reads(batch)

    def reads_after(
        self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
    ) -> Mapping[str, Iterable[Key]]:
        """The rows the watched projection declares next."""
        return self.inner.reads_after(batch, loaded)

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """Fold with ``changes`` reporting every read of a row that was not declared."""
        for method in ("get", "peek", "keys_under"):
            setattr(changes, method, self._recording(getattr(changes, method)))
        self.inner.fold(batch, changes)

    def _recording(self, read: Callable[[str, Key], Any]) -> Callable[[str, Key], Any]:
        def recorded(table: str, key: Key) -> Any:
            try:
                return read(table, key)
            except KeyError:
                self.undeclared.append(f"{table}{key!r}")
                raise

        return recorded


def _watched(projection: Projection) -> _Watched:
    """``projection`` under watch, with its name and version (the store's tables use them)."""
    kind = type(
        f"Watched{type(projection).__name__}",
        (_Watched,),
        {"name": projection.name, "version": projection.version},
    )
    return cast(_Watched, kind(projection))


def _undeclared(reads: Sequence[str]) -> str:
    if not reads:
        return ""
    shown = ", ".join(dict.fromkeys(reads[:5]))
    return f" (undeclared reads: {shown}{', ...' if len(reads) > 5 else ''})"


def _partition(message: RawMessage, partitions: int) -> int:
    return partition_of(community_of_subject(message.subject), partitions)


def _some(cuts: Sequence[tuple[int, list[RawMessage]]]) -> list[tuple[int, list[RawMessage]]]:
    """The first, a middle and the last batch: redelivering every one would only cost time."""
    if len(cuts) <= 3:
        return list(cuts)
    return [cuts[0], cuts[len(cuts) // 2], cuts[-1]]


def _same(name: str, expected: Tables, found: Tables, what: str, other: str) -> None:
    if found == expected:
        return
    for logical in expected:
        want, got = expected[logical], found.get(logical, [])
        if want != got:
            only_want = [r for r in want if r not in set(got)][:3]
            only_got = [r for r in got if r not in set(want)][:3]
            raise KitFailure(
                f"{name}.{logical} differs between {what} and {other}: "
                f"{len(want)} rows vs {len(got)}; only in {what}: {only_want}; "
                f"only in {other}: {only_got}"
            )
    raise KitFailure(f"{name}: tables differ between {what} and {other}")


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value
