"""The SQL side of the engine: generations of tables, stable views, and the batch transaction.

One call of :meth:`ProjectionStore.apply` is one transaction that (1) fences on the checkpoint --
it commits only if the checkpoint is still where this writer left it, so two writers can never
both apply a batch -- (2) sets aside undecodable events as dead letters, (3) skips event ids seen
before, (4) loads the rows the fold asked for, folds, writes the merged changes with multi-row
upserts, and (5) moves the checkpoint. A crash at any instant leaves either all of it or none.
"""

from __future__ import annotations

import enum
import hashlib
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from events.catalogue import Event
from events.codec import CODEC, Codec
from events.subjects import subject_of
from projections import swap
from projections.api import Delivered, Projection, TableNamer
from projections.backends import Backend, backend_for
from projections.backends.base import KEY_CHUNK, SeenRows
from projections.changes import Changes, Key, Row, RowChange, TableSpec, under
from projections.database import reader
from projections.errors import (
    ConflictingDuplicate,
    DatabaseError,
    ProjectionError,
    SubjectMismatch,
)
from projections.infra import (
    INFRA,
    GenerationState,
    checkpoints,
    dead_letters,
    generations,
    held,
    parked,
)

RELEASE_CHUNK = 1000
"""At most this many held events are released per transaction (the partition waits meanwhile)."""
_READ_ROUNDS = 16
"""At most this many rounds of ``Projection.reads_after`` per batch: more is a projection bug."""
_JSON = msgspec.json.Encoder()


class RawMessage(NamedTuple):
    """A message as read from the stream, before decoding (a tuple: cheap to make per message)."""

    seq: int
    subject: str
    data: bytes
    timestamp_ns: int


class FoldPolicy(enum.StrEnum):
    """What to do when a fold raises (a bug in the projection, not bad input)."""

    PAUSE = "pause"
    """Stop the partition, keep the checkpoint before the batch, show the error in status."""
    PARK = "park"
    """Set the event aside as a dead letter of kind ``fold`` and go on (its community's later
    events are folded without it: their order is broken)."""
    HOLD = "hold"
    """Set the event aside as a dead letter of kind ``fold`` and park its community: its later
    events are held back in stream order (``agora_held``) until ``agora dlq retry --community``
    or ``agora dlq skip``; the other communities go on. The default."""


class NotCaughtUp(ProjectionError):
    """A generation cannot be swapped in yet: it is behind the one serving."""


class NotBuilding(ProjectionError):
    """A build's generation was swapped in, rolled back or dropped by someone else meanwhile."""


class Fenced(ProjectionError):
    """The checkpoint moved under this writer: another worker owns the partition."""


class FoldFailed(ProjectionError):
    """The fold raised on an event and the policy is to pause."""

    def __init__(self, seq: int, error: BaseException) -> None:
        super().__init__(f"fold failed at seq {seq}: {type(error).__name__}: {error}")
        self.seq = seq
        self.error = error


@dataclass(frozen=True, slots=True)
class GenerationRow:
    """One generation of a projection as the registry records it."""

    generation: int
    version: int
    state: GenerationState
    partitions: int
    start_seq: int
    checkpoints: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """What :meth:`ProjectionStore.retry_dead_letters` did."""

    applied: list[int]
    duplicates: list[int]
    failed: dict[int, str]


@dataclass(frozen=True, slots=True)
class Parked:
    """A parked community of a partition, as a batch leaves it."""

    community: str
    first_seq: int
    held: int


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one applied batch did."""

    last_seq: int
    applied: int
    duplicates: int
    dead_letters: int
    held: int = 0
    """Events of parked communities held back by this batch."""
    parked: tuple[Parked, ...] = ()
    """The partition's parked communities after the batch (empty: none)."""
    newly_parked: tuple[str, ...] = ()
    """Communities this batch parked."""


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    """What :meth:`ProjectionStore.retry_community` (or a skip) did to a parked community."""

    community: str
    applied: list[int]
    duplicates: list[int]
    skipped: int | None
    """The poison event's sequence when it was skipped."""
    failed_seq: int | None
    """Where the community is parked now, if it failed again (None: released)."""
    error: str | None


class _UuidBytes(sa.types.TypeDecorator[UUID]):
    """A UUID as its 16 bytes: a third of the text form, so fewer B-tree pages per batch."""

    impl = sa.LargeBinary(16)
    cache_ok = True

    def process_bind_param(self, value: UUID | None, dialect: sa.Dialect) -> bytes | None:
        return None if value is None else value.bytes

    def process_result_value(self, value: bytes | None, dialect: sa.Dialect) -> UUID | None:
        return None if value is None else UUID(bytes=value)


SeenKey = tuple[str, UUID]
"""An event's identity in the seen table: its community and its id."""


def seen_key(event: Event) -> SeenKey:
    """The seen-table key of ``event``: (community, id).

    An id names one event in its community, forever. The key includes the community so that
    nothing one community's producer sends can make another community's event a "duplicate"
    (ids are chosen by producers), and so that a community's events, which one partition folds
    in stream order, decide alone which copy came first: replay gives the same answer.
    """
    return event.community, event.id


def digest(event: Event) -> int:
    """A 64-bit BLAKE2b digest of ``event``'s canonical encoding: what "the same event" means.

    Two copies with the same digest are one event sent twice; any other difference (another
    ``occurred_at``, another body) makes the later copy a conflicting duplicate.
    """
    raw = hashlib.blake2b(_JSON.encode(event), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def _seen_table(metadata: sa.MetaData, projection: str, generation: int) -> sa.Table:
    # Keyed by the id (within its community), not by (event time, id): a copy re-sent with
    # another event time must find the first one. Random ids cost B-tree locality; see
    # docs/benchmarks.md for what that costs per event.
    return sa.Table(
        f"agora_seen_{projection}__g{generation}",
        metadata,
        sa.Column("community", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.Uuid().with_variant(_UuidBytes(), "sqlite"), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )


def _spec(table: sa.Table) -> TableSpec:
    defaults: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if isinstance(default, sa.ColumnDefault) and default.is_scalar:
            defaults[column.name] = default.arg
    return TableSpec(
        table.name,
        tuple(c.name for c in table.primary_key.columns),
        tuple(c.name for c in table.columns),
        defaults,
    )


class Generation:
    """The physical tables of one generation of a projection."""

    def __init__(self, projection: Projection, generation: int) -> None:
        self.number = generation
        self.metadata = sa.MetaData()
        self.namer = TableNamer(projection.name, generation)
        self.tables = projection.define_tables(self.metadata, self.namer)
        for logical, table in self.tables.items():
            if not table.primary_key.columns:
                raise ProjectionError(f"{projection.name}.{logical} has no primary key")
            if table.name != self.namer(logical):
                raise ProjectionError(f"{projection.name}.{logical} must be named by table_name")
        self.seen = _seen_table(self.metadata, projection.name, generation)
        self.specs = {logical: _spec(table) for logical, table in self.tables.items()}


class ProjectionStore:
    """Applies batches of one projection to a SQLite or PostgreSQL database."""

    def __init__(
        self,
        engine: Engine,
        projection: Projection,
        codec: Codec = CODEC,
        copy_min_rows: int = 200,
        swap_lock_timeout: float = swap.SWAP_LOCK_TIMEOUT,
        swap_attempts: int = swap.SWAP_ATTEMPTS,
    ) -> None:
        self.engine = engine
        self.backend: Backend = backend_for(engine, copy_min_rows)
        """How this database runs the store's statements (on PostgreSQL, batches of at least
        ``copy_min_rows`` rows are written with COPY)."""
        self.swap_lock_timeout = swap_lock_timeout
        """Seconds one attempt of :meth:`activate` waits for a lock (an open reader of a view)."""
        self.swap_attempts = swap_attempts
        """Attempts of :meth:`activate` before it gives up with ``SwapBlocked``."""
        self.projection = projection
        self.codec = codec
        self._reader = reader(engine)
        self._generations: dict[int, Generation] = {}
        self._none_parked: dict[tuple[int, int], int] = {}
        """(generation, partition) -> a checkpoint at which that partition had no parked
        community. Only a batch parks one, and it moves the checkpoint: while the checkpoint is
        still there, the lookup can be skipped (a retry or skip only ever removes parkings)."""

    # -- generations ------------------------------------------------------------------------

    def generation(self, number: int) -> Generation:
        """The table set of generation ``number`` (defined, not necessarily created)."""
        gen = self._generations.get(number)
        if gen is None:
            gen = self._generations[number] = Generation(self.projection, number)
        return gen

    def ensure(self, number: int, partitions: int = 1, start_seq: int = 1) -> Generation:
        """Create generation ``number``'s tables and checkpoints if missing (idempotent)."""
        gen = self.generation(number)
        name = self.projection.name
        try:
            with self.engine.begin() as conn:
                INFRA.create_all(conn)
                gen.metadata.create_all(conn)
                exists = conn.execute(
                    sa.select(generations.c.state).where(
                        generations.c.projection == name, generations.c.generation == number
                    )
                ).first()
                if exists is None:
                    conn.execute(
                        generations.insert().values(
                            projection=name,
                            generation=number,
                            version=self.projection.version,
                            state=GenerationState.BUILDING,
                            partitions=partitions,
                            start_seq=start_seq,
                        )
                    )
                    conn.execute(
                        checkpoints.insert(),
                        [
                            {
                                "projection": name,
                                "generation": number,
                                "partition": p,
                                "version": self.projection.version,
                                "last_seq": start_seq - 1,
                                "events": 0,
                                "duplicates": 0,
                                "dead_letters": 0,
                            }
                            for p in range(partitions)
                        ],
                    )
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot create tables of {name} g{number}: {error}") from error
        return gen

    def check_layout(self, number: int) -> None:
        """Refuse a generation whose tables an older Agora made; bring the engine's tables up.

        Since seen rows are keyed by (community, id) with a content digest, a generation whose
        seen table is keyed by (event time, id) cannot tell a conflicting copy from a new event:
        it must be rebuilt, not folded on. The dead letters' ``kind`` column is widened in place.
        """
        gen = self.generation(number)
        try:
            with self.engine.begin() as conn:
                self.backend.upgrade_infra(conn)
                inspector = sa.inspect(conn)
                if not inspector.has_table(gen.seen.name):
                    return
                columns = {c["name"] for c in inspector.get_columns(gen.seen.name)}
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot inspect {gen.seen.name}: {error}") from error
        if "digest" not in columns:
            raise ProjectionError(
                f"{self.projection.name} g{number} was built by an older Agora (its seen table "
                f"has no content digest): rebuild it with `agora rebuild {self.projection.name}`"
            )

    def checkpoint(self, number: int, partition: int = 0) -> int:
        """The last stream sequence applied by a partition of a generation."""
        with self._reader.connect() as conn:
            value = conn.execute(
                sa.select(checkpoints.c.last_seq).where(
                    checkpoints.c.projection == self.projection.name,
                    checkpoints.c.generation == number,
                    checkpoints.c.partition == partition,
                )
            ).scalar()
        if value is None:
            raise ProjectionError(f"{self.projection.name} g{number} p{partition} does not exist")
        return int(value)

    def generations(self) -> list[GenerationRow]:
        """Every generation of this projection, oldest first, with its checkpoints."""
        name = self.projection.name
        with self._reader.connect() as conn:
            if not sa.inspect(conn).has_table(generations.name):
                return []
            rows = conn.execute(
                sa.select(generations)
                .where(generations.c.projection == name)
                .order_by(generations.c.generation)
            ).all()
            points = conn.execute(
                sa.select(checkpoints.c.generation, checkpoints.c.last_seq)
                .where(checkpoints.c.projection == name)
                .order_by(checkpoints.c.generation, checkpoints.c.partition)
            ).all()
        by_gen: dict[int, list[int]] = {}
        for gen_number, last_seq in points:
            by_gen.setdefault(gen_number, []).append(int(last_seq))
        return [
            GenerationRow(
                r.generation,
                r.version,
                GenerationState(r.state),
                r.partitions,
                r.start_seq,
                tuple(by_gen.get(r.generation, [])),
            )
            for r in rows
        ]

    def active(self) -> int | None:
        """The generation the stable names point at, if any."""
        for row in self.generations():
            if row.state is GenerationState.ACTIVE:
                return row.generation
        return None

    def next_generation(self) -> int:
        """The number a new generation gets."""
        rows = self.generations()
        return rows[-1].generation + 1 if rows else 1

    def activate(
        self, number: int, *, require_caught_up: bool = True, only_building: bool = False
    ) -> None:
        """Point the stable names at generation ``number``, atomically, in one transaction.

        The previously active generation becomes ``retired`` (kept for rollback until dropped).
        With ``require_caught_up``, refuse while ``number`` is behind the active generation.
        With ``only_building``, refuse (:class:`NotBuilding`) unless ``number`` is still
        ``building``: a build must not undo a swap or a rollback made meanwhile; and refuse
        (:class:`NotCaughtUp`) while a community of ``number`` is parked.

        An open reader of a stable name holds the swap off (on PostgreSQL): each attempt waits
        at most ``swap_lock_timeout`` seconds, then it is retried (:mod:`projections.swap`);
        after ``swap_attempts`` it raises :class:`~projections.swap.SwapBlocked`.
        """
        name = self.projection.name
        try:
            swap.retry_on_lock_timeout(
                lambda: self._activate(number, require_caught_up, only_building),
                lock_timeout=self.swap_lock_timeout,
                attempts=self.swap_attempts,
                what=f"cannot activate {name} g{number}",
            )
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot activate {name} g{number}: {error}") from error

    def _activate(self, number: int, require_caught_up: bool, only_building: bool) -> None:
        gen = self.generation(number)
        name = self.projection.name
        with self.engine.begin() as conn:
            swap.limit_lock_wait(conn, self.swap_lock_timeout)
            rows = conn.execute(
                sa.select(generations.c.generation, generations.c.state)
                .where(generations.c.projection == name)
                .with_for_update()
            ).all()
            states = {r.generation: r.state for r in rows}
            if states.get(number) in (None, GenerationState.DROPPED):
                raise ProjectionError(f"{name} has no generation {number} to activate")
            if only_building and states[number] != GenerationState.BUILDING:
                raise NotBuilding(f"{name} g{number} is {states[number]}, not building")
            if only_building:
                self._refuse_parked(conn, number)
            current = next((g for g, st in states.items() if st == GenerationState.ACTIVE), None)
            # The views before the checkpoints: while the swap waits for a reader of a stable
            # name, it must not hold the checkpoint locks the live workers need for each batch.
            preparer = conn.dialect.identifier_preparer
            for logical, table in gen.tables.items():
                view = preparer.quote(logical)
                conn.execute(sa.text(f"DROP VIEW IF EXISTS {view}"))
                conn.execute(
                    sa.text(f"CREATE VIEW {view} AS SELECT * FROM {preparer.quote(table.name)}")
                )
            if require_caught_up and current is not None and current != number:
                mine = self._checkpoints(conn, number)
                theirs = self._checkpoints(conn, current)
                if mine and theirs and min(mine) < max(theirs):
                    raise NotCaughtUp(
                        f"{name} g{number} is at {min(mine)}, g{current} at {max(theirs)}"
                    )
            if current is not None and current != number:
                conn.execute(
                    generations.update()
                    .where(generations.c.projection == name, generations.c.generation == current)
                    .values(state=GenerationState.RETIRED)
                )
            conn.execute(
                generations.update()
                .where(generations.c.projection == name, generations.c.generation == number)
                .values(state=GenerationState.ACTIVE)
            )

    def _refuse_parked(self, conn: Connection, number: int) -> None:
        """A build is not swapped in while a community of it is parked (its figures stop)."""
        first = conn.execute(
            sa.select(parked.c.community, parked.c.first_seq)
            .where((parked.c.projection == self.projection.name) & (parked.c.generation == number))
            .order_by(parked.c.first_seq)
            .limit(1)
        ).first()
        if first is not None:
            raise NotCaughtUp(
                f"{self.projection.name} g{number} has a parked community: {first.community} "
                f"at seq {first.first_seq}"
            )

    def _checkpoints(self, conn: Connection, number: int) -> list[int]:
        rows = conn.execute(
            sa.select(checkpoints.c.last_seq)
            .where(
                checkpoints.c.projection == self.projection.name,
                checkpoints.c.generation == number,
            )
            .with_for_update()
        ).all()
        return [int(r[0]) for r in rows]

    def drop(self, number: int) -> None:
        """Drop a generation's tables; the active one cannot be dropped.

        A worker still building the generation ends by itself (see the runner and
        :func:`projections.lifecycle.build`).
        """
        gen = self.generation(number)
        name = self.projection.name
        try:
            self._drop(gen, name, number)
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot drop {name} g{number}: {error}") from error

    def _drop(self, gen: Generation, name: str, number: int) -> None:
        with self.engine.begin() as conn:
            state = conn.execute(
                sa.select(generations.c.state).where(
                    generations.c.projection == name, generations.c.generation == number
                )
            ).scalar()
            if state is None:
                raise ProjectionError(f"{name} has no generation {number}")
            if state == GenerationState.ACTIVE:
                raise ProjectionError(f"{name} g{number} is active: activate another first")
            gen.metadata.drop_all(conn)
            for table in (held, parked):
                conn.execute(
                    table.delete().where(
                        (table.c.projection == name) & (table.c.generation == number)
                    )
                )
            conn.execute(
                generations.update()
                .where(generations.c.projection == name, generations.c.generation == number)
                .values(state=GenerationState.DROPPED)
            )

    # -- the batch transaction --------------------------------------------------------------

    def apply(
        self,
        number: int,
        partition: int,
        expected_last_seq: int,
        messages: Sequence[RawMessage],
        policy: FoldPolicy = FoldPolicy.HOLD,
        through_seq: int | None = None,
    ) -> BatchOutcome:
        """Apply ``messages`` (in stream order, after ``expected_last_seq``) in one transaction.

        ``through_seq`` moves the checkpoint past the last message, over sequences this partition
        does not fold (another partition's communities); it defaults to the last message's.
        """
        if messages and through_seq is not None and through_seq < messages[-1].seq:
            raise ValueError(f"through_seq {through_seq} is before the last message's sequence")
        # Messages at or before the checkpoint are applied already: never fold them twice.
        messages = [m for m in messages if m.seq > expected_last_seq]
        last = through_seq if through_seq is not None else messages[-1].seq if messages else None
        if last is None or last <= expected_last_seq:
            return BatchOutcome(expected_last_seq, 0, 0, 0)
        gen = self.generation(number)
        try:
            with self.engine.begin() as conn:
                return self._apply(conn, gen, partition, expected_last_seq, messages, policy, last)
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"batch of {self.projection.name} failed: {error}") from error

    def _apply(
        self,
        conn: Connection,
        gen: Generation,
        partition: int,
        expected: int,
        messages: Sequence[RawMessage],
        policy: FoldPolicy,
        new_last: int,
    ) -> BatchOutcome:
        name = self.projection.name
        where = (
            (checkpoints.c.projection == name)
            & (checkpoints.c.generation == gen.number)
            & (checkpoints.c.partition == partition)
        )
        current = conn.execute(sa.select(checkpoints.c.last_seq).where(where).with_for_update())
        last = current.scalar()
        if last != expected:
            raise Fenced(
                f"{name} g{gen.number} p{partition}: checkpoint is {last}, expected {expected}"
            )

        letters: list[dict[str, Any]] = []
        decoded: list[Delivered] = []
        for message in messages:
            try:
                event = self.codec.decode(message.data)
            except Exception as error:  # InvalidEvent, or anything else the decoder raises
                letters.append(self._letter(gen, partition, message, "invalid", error))
                continue
            mismatch = _subject_mismatch(message.subject, event)
            if mismatch is not None:
                letters.append(self._letter(gen, partition, message, "subject_mismatch", mismatch))
                continue
            decoded.append(Delivered(message.seq, event))

        # Events of parked communities wait behind their poison event, in order (not seen yet).
        waiting = self._parked_now(conn, gen, partition, int(last))
        holding: list[Delivered] = []
        if waiting:
            decoded, holding = _split_held(decoded, waiting)

        # Recorded before the fold, in the same transaction: parked events count as seen too (a
        # later copy of one is a duplicate; retry_dead_letters finds it by its sequence), and a
        # paused batch rolls the record back with everything else.
        fresh, duplicates, conflicts = self._record_seen(conn, gen, decoded)
        if conflicts:
            by_seq = {m.seq: m for m in messages}
            for seq, conflict in conflicts:
                letters.append(
                    self._letter(gen, partition, by_seq[seq], "conflicting_duplicate", conflict)
                )
        parked: list[tuple[int, BaseException]] = []
        later: list[Delivered] = []
        if fresh:
            try:
                # A savepoint: if the fold or its writes fail half-way, nothing of it remains.
                with conn.begin_nested():
                    self._fold_and_write(conn, gen, fresh)
            except Exception as error:
                if not _projection_fault(error):
                    raise
                if policy is FoldPolicy.HOLD:
                    parked, later = self._fold_in_order(conn, gen, fresh)
                else:
                    parked = self._fold_one_by_one(conn, gen, fresh)
                if policy is FoldPolicy.PAUSE:
                    seq, cause = parked[0] if parked else (fresh[0].seq, error)
                    raise FoldFailed(seq, cause) from error
                by_seq = {m.seq: m for m in messages}
                for seq, exc in parked:
                    letters.append(self._letter(gen, partition, by_seq[seq], "fold", exc))
        if letters:
            conn.execute(dead_letters.insert(), letters)
        state: tuple[Parked, ...] = ()
        if waiting or later or (parked and policy is FoldPolicy.HOLD):
            poison = parked if policy is FoldPolicy.HOLD else []
            state = self._park_and_hold(
                conn, gen, partition, messages, waiting, poison, fresh, holding + later
            )
        if state:  # forget any "none parked" noted by an attempt at this batch that rolled back
            self._none_parked.pop((gen.number, partition), None)
        else:
            self._none_parked[(gen.number, partition)] = new_last
        conn.execute(
            checkpoints.update()
            .where(where)
            .values(
                last_seq=new_last,
                events=checkpoints.c.events + len(messages),
                duplicates=checkpoints.c.duplicates + duplicates,
                dead_letters=checkpoints.c.dead_letters + len(letters),
            )
        )
        newly = tuple(sorted({c.community for c in state} - set(waiting)))
        applied = len(fresh) - len(parked) - len(later)
        return BatchOutcome(
            new_last, applied, duplicates, len(letters), len(holding) + len(later), state, newly
        )

    def retry_dead_letters(self, number: int, seqs: Sequence[int] | None = None) -> RetryOutcome:
        """Re-apply parked events (after a fix), in stream order; remove those applied.

        The poison event of a parked community is released with :meth:`retry_community` (its
        held events follow it, in order); letters of kind ``skipped`` are retried only when
        named in ``seqs``.

        A letter that still fails stays, with its new error; one whose event id was applied in
        the meantime is removed as a duplicate. Each letter is retried in its own transaction,
        which first locks its partition's checkpoint, so a running worker and a retry never
        interleave their reads and writes.
        """
        gen = self.generation(number)
        name = self.projection.name
        where = (dead_letters.c.projection == name) & (dead_letters.c.generation == number)
        if seqs is not None:
            where = where & dead_letters.c.seq.in_(list(seqs))
        else:  # skipped letters only when named
            where = where & (dead_letters.c.kind != "skipped")
        applied: list[int] = []
        duplicates: list[int] = []
        failed: dict[int, str] = {}
        try:
            with self._reader.connect() as conn:
                found = conn.execute(
                    sa.select(dead_letters.c.seq, dead_letters.c.partition)
                    .where(where)
                    .order_by(dead_letters.c.seq)
                ).all()
            with self._reader.connect() as conn:
                blocking = {
                    int(r.first_seq): r.community
                    for r in conn.execute(
                        sa.select(parked.c.first_seq, parked.c.community).where(
                            (parked.c.projection == name) & (parked.c.generation == number)
                        )
                    )
                }
            for seq, partition in found:
                if seq in blocking:  # a parked community's poison event: release it in order
                    release = self.retry_community(number, blocking[seq])
                    applied += [s for s in release.applied if s == seq]
                    if release.failed_seq is not None and release.error is not None:
                        failed[release.failed_seq] = release.error
                    continue
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.select(checkpoints.c.last_seq)
                        .where(
                            checkpoints.c.projection == name,
                            checkpoints.c.generation == number,
                            checkpoints.c.partition == partition,
                        )
                        .with_for_update()
                    ).all()
                    key = where & (dead_letters.c.seq == seq)
                    letter = conn.execute(sa.select(dead_letters).where(key)).first()
                    if letter is None:  # retried meanwhile by someone else
                        continue
                    outcome, error = _retry_one(self, conn, gen, letter)
                    if outcome == "failed":
                        assert error is not None
                        conn.execute(
                            dead_letters.update()
                            .where(key)
                            .values(error_class=type(error).__name__, error_message=str(error))
                        )
                        failed[int(seq)] = f"{type(error).__name__}: {error}"
                        continue
                    conn.execute(dead_letters.delete().where(key))
                    conn.execute(
                        checkpoints.update()
                        .where(
                            checkpoints.c.projection == name,
                            checkpoints.c.generation == number,
                            checkpoints.c.partition == partition,
                        )
                        .values(dead_letters=checkpoints.c.dead_letters - 1)
                    )
                    (applied if outcome == "applied" else duplicates).append(int(seq))
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"retrying dead letters of {name} g{number}: {error}") from error
        return RetryOutcome(applied, duplicates, failed)

    def parked_communities(self, number: int) -> list[str]:
        """The communities of generation ``number`` that are parked, by name."""
        try:
            with self._reader.connect() as conn:
                if not sa.inspect(conn).has_table(parked.name):
                    return []
                rows = conn.execute(
                    sa.select(parked.c.community)
                    .where(
                        (parked.c.projection == self.projection.name)
                        & (parked.c.generation == number)
                    )
                    .order_by(parked.c.community)
                ).all()
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot read parked communities: {error}") from error
        return [r[0] for r in rows]

    def retry_community(
        self, number: int, community: str, *, skip_reason: str | None = None
    ) -> ReleaseOutcome:
        """Replay a parked community from its poison event, in stream order, after a fix.

        The poison event is retried first (with ``skip_reason``, it is skipped instead: its dead
        letter stays, of kind ``skipped``, with the reason), then the held events, oldest first,
        with the batch path's duplicate rules. Each transaction first locks the partition's
        checkpoint (as a batch does), so a running worker and the release never interleave, and
        releases at most :data:`RELEASE_CHUNK` events: a crash loses nothing and applies nothing
        twice. An event that fails again parks the community at that event, with its new error
        (a held one becomes a dead letter); when none is left, the community is released.
        """
        gen = self.generation(number)
        applied: list[int] = []
        duplicates: list[int] = []
        skipped: int | None = None
        first = True
        try:
            while True:
                with self.engine.begin() as conn:
                    step, more = self._release_step(conn, gen, community, skip_reason, first)
                first = False
                if step.skipped is not None:
                    skipped = step.skipped
                applied += step.applied
                duplicates += step.duplicates
                if not more:
                    return ReleaseOutcome(
                        community, applied, duplicates, skipped, step.failed_seq, step.error
                    )
        except sa.exc.SQLAlchemyError as error:
            name = self.projection.name
            raise DatabaseError(f"releasing {community} of {name} g{number}: {error}") from error

    def _release_step(
        self,
        conn: Connection,
        gen: Generation,
        community: str,
        skip_reason: str | None,
        first: bool,
    ) -> tuple[ReleaseOutcome, bool]:
        """One transaction of :meth:`retry_community`; and whether held events remain."""
        name = self.projection.name
        key = (
            (parked.c.projection == name)
            & (parked.c.generation == gen.number)
            & (parked.c.community == community)
        )
        row = conn.execute(sa.select(parked).where(key)).first()
        if row is None:
            if first:
                raise ProjectionError(f"{community} is not parked in {name} g{gen.number}")
            return ReleaseOutcome(community, [], [], None, None, None), False
        point = (
            (checkpoints.c.projection == name)
            & (checkpoints.c.generation == gen.number)
            & (checkpoints.c.partition == row.partition)
        )
        conn.execute(sa.select(checkpoints.c.last_seq).where(point).with_for_update()).all()
        row = conn.execute(sa.select(parked).where(key)).first()  # as of the lock
        if row is None:
            return ReleaseOutcome(community, [], [], None, None, None), False
        applied: list[int] = []
        duplicates: list[int] = []
        skipped: int | None = None
        letter_key = (
            (dead_letters.c.projection == name)
            & (dead_letters.c.generation == gen.number)
            & (dead_letters.c.seq == row.first_seq)
        )
        letter = conn.execute(sa.select(dead_letters).where(letter_key)).first()
        if letter is not None and letter.kind == "fold":
            if skip_reason is not None:
                conn.execute(
                    dead_letters.update()
                    .where(letter_key)
                    .values(
                        kind="skipped",
                        error_message=f"skipped: {skip_reason} (was: {letter.error_message})",
                    )
                )
                skipped = int(letter.seq)
            else:
                outcome, error = _retry_one(self, conn, gen, letter)
                if outcome == "failed":
                    assert error is not None
                    values = {"error_class": type(error).__name__, "error_message": str(error)}
                    conn.execute(dead_letters.update().where(letter_key).values(**values))
                    conn.execute(parked.update().where(key).values(**values))
                    text = f"{type(error).__name__}: {error}"
                    return ReleaseOutcome(community, [], [], None, int(letter.seq), text), False
                conn.execute(dead_letters.delete().where(letter_key))
                conn.execute(
                    checkpoints.update()
                    .where(point)
                    .values(dead_letters=checkpoints.c.dead_letters - 1)
                )
                (applied if outcome == "applied" else duplicates).append(int(letter.seq))
        waiting = conn.execute(
            sa.select(held)
            .where(
                (held.c.projection == name)
                & (held.c.generation == gen.number)
                & (held.c.community == community)
            )
            .order_by(held.c.seq)
            .limit(RELEASE_CHUNK + 1)
        ).all()
        failed: tuple[int, str] | None = None
        done: list[int] = []
        set_aside = 0
        for event in waiting[:RELEASE_CHUNK]:
            outcome, error = _retry_one(self, conn, gen, event)
            if outcome == "failed":
                assert error is not None
                message = RawMessage(
                    int(event.seq),
                    event.subject,
                    bytes(event.raw),
                    _time_ns(event.first_seen),
                )
                conflict = isinstance(error, ConflictingDuplicate)
                aside = self._letter(
                    gen,
                    int(row.partition),
                    message,
                    "conflicting_duplicate" if conflict else "fold",
                    error,
                )
                aside["first_seen"] = event.first_seen  # as stored, not converted twice
                conn.execute(dead_letters.insert(), [aside])
                done.append(int(event.seq))
                if conflict:  # as the batch path: set aside, and go on
                    set_aside += 1
                    continue
                failed = (int(event.seq), f"{type(error).__name__}: {error}")
                decoded = self.codec.decode(message.data)
                conn.execute(
                    parked.update()
                    .where(key)
                    .values(
                        first_seq=event.seq,
                        error_class=type(error).__name__,
                        error_message=str(error),
                        since=event.first_seen,
                        occurred_at=decoded.occurred_at,
                    )
                )
                break
            done.append(int(event.seq))
            (applied if outcome == "applied" else duplicates).append(int(event.seq))
        if done:
            conn.execute(
                held.delete().where(
                    (held.c.projection == name)
                    & (held.c.generation == gen.number)
                    & held.c.seq.in_(done)
                )
            )
        conn.execute(
            checkpoints.update()
            .where(point)
            .values(
                duplicates=checkpoints.c.duplicates
                + sum(1 for s in duplicates if s != row.first_seq),
                dead_letters=checkpoints.c.dead_letters + (1 if failed else 0) + set_aside,
            )
        )
        if failed is not None:
            conn.execute(parked.update().where(key).values(held=parked.c.held - len(done)))
            return ReleaseOutcome(community, applied, duplicates, skipped, *failed), False
        if len(waiting) > RELEASE_CHUNK:
            conn.execute(parked.update().where(key).values(held=parked.c.held - len(done)))
            return ReleaseOutcome(community, applied, duplicates, skipped, None, None), True
        conn.execute(parked.delete().where(key))
        return ReleaseOutcome(community, applied, duplicates, skipped, None, None), False

    def _letter(
        self,
        gen: Generation,
        partition: int,
        message: RawMessage,
        kind: str,
        error: BaseException,
    ) -> dict[str, Any]:
        return {
            "projection": self.projection.name,
            "generation": gen.number,
            "seq": message.seq,
            "partition": partition,
            "subject": message.subject,
            "raw": message.data,
            "kind": kind,
            "error_class": type(error).__name__,
            "error_message": str(error),
            "first_seen": _stream_time(message),
        }

    def _record_seen(
        self, conn: Connection, gen: Generation, decoded: list[Delivered]
    ) -> tuple[list[Delivered], int, list[tuple[int, ConflictingDuplicate]]]:
        """Record each event as seen at its sequence; sort the batch by what was seen before.

        Returns the fresh events (to fold), the number of duplicates (copies of an applied
        event, ignored) and the conflicting duplicates (an applied id with other content: set
        aside, with the sequence of the copy that was applied). One statement that ignores keys
        already present does the common case: when it inserts every key, all are fresh.
        """
        groups: dict[SeenKey, list[tuple[Delivered, int]]] = {}
        for d in decoded:
            groups.setdefault(seen_key(d.event), []).append((d, digest(d.event)))
        if not groups:
            return [], 0, []
        rows = [(key, *members[0]) for key, members in groups.items()]
        recorded = SeenRows(
            [k[0] for k, _, _ in rows],
            [k[1] for k, _, _ in rows],
            [d.seq for _, d, _ in rows],
            [h for _, _, h in rows],
        )
        inserted = self.backend.insert_seen(conn, gen.seen, recorded)
        if inserted == len(groups) and len(groups) == len(decoded):
            return [d for _, d, _ in rows], 0, []
        earlier = self._seen_elsewhere(conn, gen, rows) if inserted < len(groups) else {}
        fresh: list[Delivered] = []
        duplicates = 0
        conflicts: list[tuple[int, ConflictingDuplicate]] = []
        for key, members in groups.items():
            winner = earlier.get(key)
            if winner is None:  # the batch's first copy is the event
                fresh.append(members[0][0])
                winner, members = (members[0][0].seq, members[0][1]), members[1:]
            for d, h in members:
                if h == winner[1]:
                    duplicates += 1
                else:
                    conflicts.append((d.seq, _conflict(key, winner[0], d.seq)))
        return fresh, duplicates, conflicts

    def _seen_elsewhere(
        self, conn: Connection, gen: Generation, rows: Sequence[tuple[SeenKey, Delivered, int]]
    ) -> dict[SeenKey, tuple[int, int]]:
        """The keys of ``rows`` the seen table holds at another sequence: (seq, digest) there."""
        ours = {key: d.seq for key, d, _ in rows}
        keys = list(ours)
        earlier: dict[SeenKey, tuple[int, int]] = {}
        seen = gen.seen.c
        for start in range(0, len(keys), KEY_CHUNK):
            chunk = keys[start : start + KEY_CHUNK]
            found = conn.execute(
                sa.select(seen.community, seen.event_id, seen.seq, seen.digest).where(
                    sa.tuple_(seen.community, seen.event_id).in_(chunk)
                )
            )
            for community, event_id, seq, hashed in found:
                if seq != ours[(community, event_id)]:
                    earlier[(community, event_id)] = (int(seq), int(hashed))
        return earlier

    def _fold_and_write(self, conn: Connection, gen: Generation, batch: list[Delivered]) -> None:
        loaded: dict[str, dict[Key, Row | None]] = {}
        whole: dict[str, set[Key]] = {}
        self._load(conn, gen, self.projection.reads(batch), loaded, whole)
        for _ in range(_READ_ROUNDS):
            missing: dict[str, list[Key]] = {}
            for table, keys in self.projection.reads_after(batch, loaded).items():
                have = loaded.get(table, {})
                prefixes = whole.get(table)
                new = [k for k in keys if k not in have and not under(k, prefixes)]
                if new:
                    missing[table] = new
            if not missing:
                break
            self._load(conn, gen, missing, loaded, whole)
        else:
            raise ProjectionError(
                f"{self.projection.name}.reads_after still names new rows after "
                f"{_READ_ROUNDS} rounds"
            )
        changes = Changes(gen.specs, loaded, whole)
        self.projection.fold(batch, changes)
        self._write(conn, gen, changes)

    def _fold_one_by_one(
        self, conn: Connection, gen: Generation, batch: list[Delivered]
    ) -> list[tuple[int, BaseException]]:
        """Fold event by event, parking each one the fold raises on."""
        parked: list[tuple[int, BaseException]] = []
        for delivered in batch:
            try:
                with conn.begin_nested():
                    self._fold_and_write(conn, gen, [delivered])
            except Exception as error:
                if not _projection_fault(error):
                    raise
                parked.append((delivered.seq, error))
        return parked

    def _fold_in_order(
        self, conn: Connection, gen: Generation, batch: list[Delivered]
    ) -> tuple[list[tuple[int, BaseException]], list[Delivered]]:
        """Fold ``batch`` keeping each community's order: (poison events, events held back).

        The first event the fold raises on (found one event at a time) parks its community; that
        community's later events are held, and the rest of the batch is folded again as a whole.
        """
        poison: list[tuple[int, BaseException]] = []
        holding: list[Delivered] = []
        stopped: set[str] = set()
        pending = batch
        while pending:
            go = [d for d in pending if d.event.community not in stopped]
            holding.extend(d for d in pending if d.event.community in stopped)
            pending = []
            try:
                with conn.begin_nested():
                    self._fold_and_write(conn, gen, go)
                break
            except Exception as error:
                if not _projection_fault(error):
                    raise
            for i, delivered in enumerate(go):
                try:
                    with conn.begin_nested():
                        self._fold_and_write(conn, gen, [delivered])
                except Exception as error:
                    if not _projection_fault(error):
                        raise
                    poison.append((delivered.seq, error))
                    stopped.add(delivered.event.community)
                    pending = go[i + 1 :]
                    break
        holding.sort(key=operator.attrgetter("seq"))
        return poison, holding

    def _parked_now(
        self, conn: Connection, gen: Generation, partition: int, last: int
    ) -> dict[str, Parked]:
        """The partition's parked communities: none (no query) if none since ``last``."""
        if self._none_parked.get((gen.number, partition)) == last:
            return {}
        rows = self.backend.parked_rows(conn, self.projection.name, gen.number, partition)
        return {c: Parked(c, first, n) for c, first, n in rows}

    def _park_and_hold(
        self,
        conn: Connection,
        gen: Generation,
        partition: int,
        messages: Sequence[RawMessage],
        waiting: Mapping[str, Parked],
        poison: list[tuple[int, BaseException]],
        fresh: list[Delivered],
        holding: list[Delivered],
    ) -> tuple[Parked, ...]:
        """Park the communities of ``poison`` events, store ``holding``; the parked after that."""
        by_seq = {m.seq: m for m in messages}
        events = {d.seq: d.event for d in fresh}
        state = dict(waiting)
        rows: list[dict[str, Any]] = []
        for seq, error in poison:
            event = events[seq]
            rows.append(
                {
                    "projection": self.projection.name,
                    "generation": gen.number,
                    "community": event.community,
                    "partition": partition,
                    "first_seq": seq,
                    "error_class": type(error).__name__,
                    "error_message": str(error),
                    "since": _stream_time(by_seq[seq]),
                    "occurred_at": event.occurred_at,
                    "held": 0,
                }
            )
            state[event.community] = Parked(event.community, seq, 0)
        if rows:
            conn.execute(parked.insert(), rows)
        if holding:
            holding = sorted(holding, key=operator.attrgetter("seq"))
            conn.execute(
                held.insert(),
                [
                    {
                        "projection": self.projection.name,
                        "generation": gen.number,
                        "seq": d.seq,
                        "partition": partition,
                        "community": d.event.community,
                        "subject": by_seq[d.seq].subject,
                        "raw": by_seq[d.seq].data,
                        "first_seen": _stream_time(by_seq[d.seq]),
                    }
                    for d in holding
                ],
            )
            added: dict[str, int] = {}
            for d in holding:
                added[d.event.community] = added.get(d.event.community, 0) + 1
            conn.execute(
                parked.update()
                .where(
                    (parked.c.projection == self.projection.name)
                    & (parked.c.generation == gen.number)
                    & (parked.c.community == sa.bindparam("b_community"))
                )
                .values(held=parked.c.held + sa.bindparam("b_added")),
                [{"b_community": c, "b_added": n} for c, n in added.items()],
            )
            for community, n in added.items():
                p = state[community]
                state[community] = Parked(community, p.first_seq, p.held + n)
        return tuple(state[c] for c in sorted(state))

    def _load(
        self,
        conn: Connection,
        gen: Generation,
        wanted: Mapping[str, Iterable[Key]],
        loaded: dict[str, dict[Key, Row | None]],
        whole: dict[str, set[Key]],
    ) -> None:
        """Load the rows ``wanted`` names into ``loaded`` (None: no such row).

        A key with fewer values than the table's key is a prefix: every row under it is loaded,
        and the prefix is added to ``whole`` (a row under it that was not found does not exist).
        """
        for logical, keys in wanted.items():
            table = gen.tables[logical]
            spec = gen.specs[logical]
            rows = loaded.setdefault(logical, {})
            full: list[Key] = []
            prefixes: dict[int, list[Key]] = {}
            for key in dict.fromkeys(keys):
                if len(key) == len(spec.key):
                    full.append(key)
                    rows.setdefault(key, None)
                elif 0 < len(key) < len(spec.key):
                    prefixes.setdefault(len(key), []).append(key)
                else:
                    raise ProjectionError(
                        f"{self.projection.name}.{logical}: {key!r} does not fit its key {spec.key}"
                    )
            for values in self.backend.select_keys(conn, table, spec.key, full):
                rows[tuple(values[k] for k in spec.key)] = values
            for size, group in prefixes.items():
                for values in self.backend.select_keys(conn, table, spec.key[:size], group):
                    rows[tuple(values[k] for k in spec.key)] = values
                whole.setdefault(logical, set()).update(group)

    def _write(self, conn: Connection, gen: Generation, changes: Changes) -> None:
        for logical, table in gen.tables.items():
            spec = gen.specs[logical]
            deletes: list[Key] = []
            shapes: dict[tuple[frozenset[str], ...], list[dict[str, Any]]] = {}
            for change in changes.row_changes(logical):
                if change.deleted:
                    deletes.append(change.key)
                if change.upserts:
                    shapes.setdefault(change.shape(), []).append(_params(spec, change))
            if deletes:
                condition = sa.and_(*(table.c[k] == sa.bindparam(f"k_{k}") for k in spec.key))
                conn.execute(
                    table.delete().where(condition),
                    [{f"k_{k}": v for k, v in zip(spec.key, key, strict=True)} for key in deletes],
                )
            for shape, params in shapes.items():
                self.backend.upsert(conn, table, spec, shape, params)
            self.backend.insert(conn, table, spec, changes.inserts(logical))


def _params(spec: TableSpec, change: RowChange) -> dict[str, Any]:
    params: dict[str, Any] = dict(zip(spec.key, change.key, strict=True))
    for column, delta in change.add.items():
        params[column] = spec.start(column) + delta
    params.update(change.put)
    params.update(change.least)
    params.update(change.greatest)
    return params


def _time_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a stored timestamp (aware: see UtcDateTime)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _stream_time(message: RawMessage) -> datetime:
    """A message's stream timestamp: fixed when it was stored, the same on every replay."""
    return datetime.fromtimestamp(message.timestamp_ns / 1e9, UTC)


def _split_held(
    decoded: list[Delivered], waiting: Mapping[str, Parked]
) -> tuple[list[Delivered], list[Delivered]]:
    """(events to fold, events of parked communities to hold back), each in stream order."""
    go: list[Delivered] = []
    hold: list[Delivered] = []
    for d in decoded:
        (hold if d.event.community in waiting else go).append(d)
    return go, hold


def _projection_fault(error: Exception) -> bool:
    """Whether ``error`` is the projection's fault (its fold, or rows the database refuses).

    Such an error recurs on every replay, so the fold policy (pause or park) applies to it. Any
    other database error (a lost connection, a lock timeout, a deadlock) is transient: the batch
    is rolled back and retried from the checkpoint.
    """
    if not isinstance(error, sa.exc.SQLAlchemyError):
        return True
    if isinstance(error, sa.exc.DataError | sa.exc.IntegrityError | sa.exc.CompileError):
        return True
    return isinstance(error, sa.exc.StatementError) and not isinstance(error, sa.exc.DBAPIError)


def _subject_mismatch(subject: str, event: Event) -> SubjectMismatch | None:
    """The error if ``subject`` is not the one ``event`` must be published on, else None."""
    expected = subject_of(event)
    if subject == expected:
        return None
    return SubjectMismatch(
        f"subject {subject!r} does not match the event: "
        f"a {event.TYPE} of community {event.community!r} belongs on {expected!r}"
    )


def _conflict(key: SeenKey, first: int, seq: int) -> ConflictingDuplicate:
    community, event_id = key
    return ConflictingDuplicate(
        f"event {event_id} of community {community!r} was applied at seq {first}; "
        f"the copy at seq {seq} has other content and is set aside"
    )


def _retry_one(
    store: ProjectionStore, conn: Connection, gen: Generation, letter: Any
) -> tuple[str, Exception | None]:
    """Re-apply one dead letter inside ``conn``; return (outcome, error)."""
    try:
        event = store.codec.decode(letter.raw)
    except Exception as error:
        return "failed", error
    mismatch = _subject_mismatch(letter.subject, event)
    if mismatch is not None:
        return "failed", mismatch
    delivered = Delivered(int(letter.seq), event)
    key, hashed = seen_key(event), digest(event)
    seen_at = conn.execute(
        sa.select(gen.seen.c.seq, gen.seen.c.digest).where(
            (gen.seen.c.community == key[0]) & (gen.seen.c.event_id == key[1])
        )
    ).first()
    if seen_at is not None and int(seen_at.seq) != delivered.seq:
        if int(seen_at.digest) != hashed:
            return "failed", _conflict(key, int(seen_at.seq), delivered.seq)
        return "duplicate", None  # another copy of the event was applied
    try:
        with conn.begin_nested():
            store._fold_and_write(conn, gen, [delivered])
    except Exception as error:
        if not _projection_fault(error):
            raise
        return "failed", error
    if seen_at is None:  # an invalid letter that decodes now: it was never recorded as seen
        conn.execute(
            gen.seen.insert(),
            [{"community": key[0], "event_id": key[1], "seq": delivered.seq, "digest": hashed}],
        )
    return "applied", None
