"""Changes: what a fold records, merged per row, and read back by the fold itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.changes import Changes, RowChange, TableSpec

SPECS = {
    "counts": TableSpec(
        "counts__g1",
        ("community", "member"),
        ("community", "member", "events", "score", "first_seq", "last_seq", "name"),
        {"events": 0, "score": 100},
    ),
    "ledger": TableSpec("ledger__g1", ("seq",), ("seq", "note")),
}
K = ("c1", "m1")


def one(changes: Changes, table: str = "counts") -> RowChange:
    rows = list(changes.row_changes(table))
    assert len(rows) == 1
    return rows[0]


def test_adds_to_one_row_collapse_into_one_change() -> None:
    changes = Changes(SPECS)
    for _ in range(1000):
        changes.add("counts", K, events=1)
    changes.add("counts", ("c1", "m2"), events=2)
    rows = list(changes.row_changes("counts"))
    assert [(r.key, r.add) for r in rows] == [(K, {"events": 1000}), (("c1", "m2"), {"events": 2})]
    assert len(changes) == 2


def test_put_overrides_earlier_add_least_and_greatest() -> None:
    changes = Changes(SPECS)
    changes.add("counts", K, events=5)
    changes.least("counts", K, first_seq=3)
    changes.greatest("counts", K, last_seq=9)
    changes.put("counts", K, events=7, first_seq=10, last_seq=1)
    change = one(changes)
    assert change.put == {"events": 7, "first_seq": 10, "last_seq": 1}
    assert change.add == change.least == change.greatest == {}


def test_add_least_greatest_after_put_apply_to_the_value_put() -> None:
    changes = Changes(SPECS)
    changes.put("counts", K, events=7, first_seq=10, last_seq=1, name=None)
    changes.add("counts", K, events=3)
    changes.least("counts", K, first_seq=4)
    changes.least("counts", K, first_seq=6)
    changes.greatest("counts", K, last_seq=8)
    change = one(changes)
    assert change.put == {"events": 10, "first_seq": 4, "last_seq": 8, "name": None}
    assert change.add == change.least == change.greatest == {}


def test_add_after_put_of_none_starts_from_the_default() -> None:
    changes = Changes(SPECS, {"counts": {K: None}})
    changes.put("counts", K, score=None)
    changes.add("counts", K, score=1)
    assert one(changes).put == {"score": 101}
    assert changes.get("counts", K) == {
        "community": "c1",
        "member": "m1",
        "events": 0,
        "score": 101,
        "first_seq": None,
        "last_seq": None,
        "name": None,
    }


def test_least_and_greatest_keep_the_extremes_and_ignore_none() -> None:
    changes = Changes(SPECS)
    for seq in (5, 3, None, 8, 4):
        changes.least("counts", K, first_seq=seq)
        changes.greatest("counts", K, last_seq=seq)
    change = one(changes)
    assert change.least == {"first_seq": 3}
    assert change.greatest == {"last_seq": 8}


@pytest.mark.parametrize(
    ("first", "second"),
    [("add", "least"), ("add", "greatest"), ("least", "add"), ("greatest", "least")],
)
def test_mixing_counter_and_extreme_on_one_column_is_refused(first: str, second: str) -> None:
    changes = Changes(SPECS)
    getattr(changes, first)("counts", K, events=1)
    with pytest.raises(ValueError, match="cannot"):
        getattr(changes, second)("counts", K, events=2)


def test_delete_then_add_starts_from_a_blank_row() -> None:
    loaded: dict[str, Any] = {
        "counts": {
            K: {
                "community": "c1",
                "member": "m1",
                "events": 41,
                "score": 7,
                "first_seq": 1,
                "last_seq": 2,
                "name": "Ada",
            }
        }
    }
    changes = Changes(SPECS, loaded)
    changes.add("counts", K, events=1, score=2)
    changes.delete("counts", K)
    assert changes.get("counts", K) is None
    changes.add("counts", K, events=1, score=2)
    change = one(changes)
    assert change.deleted and change.add == {"events": 1, "score": 2} and change.upserts
    assert changes.get("counts", K) == {
        "community": "c1",
        "member": "m1",
        "events": 1,
        "score": 102,  # a blank row starts from the column default
        "first_seq": None,
        "last_seq": None,
        "name": None,
    }


def test_delete_alone_is_not_an_upsert() -> None:
    changes = Changes(SPECS)
    changes.delete("counts", K)
    change = one(changes)
    assert change.deleted and not change.upserts
    # A row this batch deleted can be read without having been requested: it is gone.
    assert changes.get("counts", K) is None


def test_get_reads_the_loaded_row_with_this_batchs_changes() -> None:
    row = {
        "community": "c1",
        "member": "m1",
        "events": 10,
        "score": None,
        "first_seq": 5,
        "last_seq": 9,
        "name": "Ada",
    }
    changes = Changes(SPECS, {"counts": {K: row, ("c1", "m2"): None}})
    assert changes.get("counts", K) == row
    assert changes.get("counts", ("c1", "m2")) is None
    changes.add("counts", K, events=2, score=1)
    changes.least("counts", K, first_seq=7)
    changes.greatest("counts", K, last_seq=12)
    changes.put("counts", K, name="Grace")
    assert changes.get("counts", K) == {
        **row,
        "events": 12,
        "score": 101,  # a NULL counter starts from the default, as the upsert's coalesce does
        "first_seq": 5,
        "last_seq": 12,
        "name": "Grace",
    }
    assert row["events"] == 10, "the loaded row must not be modified"
    changes.add("counts", ("c1", "m2"), events=1)
    got = changes.get("counts", ("c1", "m2"))
    assert got is not None and got["events"] == 1 and got["score"] == 100


def test_get_of_an_unrequested_row_raises_key_error() -> None:
    changes = Changes(SPECS, {"counts": {K: None}})
    with pytest.raises(KeyError, match="not requested"):
        changes.get("counts", ("c1", "m9"))
    changes.add("counts", ("c1", "m9"), events=1)
    with pytest.raises(KeyError, match="not requested"):
        changes.get("counts", ("c1", "m9"))
    with pytest.raises(KeyError):
        changes.get("ledger", (1,))


def test_inserts_are_kept_in_order_and_counted() -> None:
    changes = Changes(SPECS)
    changes.insert("ledger", {"seq": 2, "note": "b"})
    changes.insert("ledger", {"seq": 1, "note": "a"})
    assert changes.inserts("ledger") == [{"seq": 2, "note": "b"}, {"seq": 1, "note": "a"}]
    assert list(changes.row_changes("ledger")) == []
    assert len(changes) == 2


def test_shape_groups_rows_by_the_columns_they_touch() -> None:
    changes = Changes(SPECS)
    changes.add("counts", ("c1", "a"), events=1)
    changes.add("counts", ("c1", "b"), events=3)
    changes.put("counts", ("c1", "c"), name="x")
    shapes = [r.shape() for r in changes.row_changes("counts")]
    assert shapes[0] == shapes[1] != shapes[2]


_KEYS = [K, ("c1", "m2")]
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "put", "least", "greatest", "delete", "get"]),
        st.sampled_from(_KEYS),
        st.sampled_from(["events", "score", "first_seq", "last_seq"]),
        st.one_of(st.none(), st.integers(-5, 5)),
    ),
    max_size=30,
)


@given(ops=_OPS, stored=st.booleans())
def test_get_between_changes_equals_a_row_built_from_the_merged_changes(
    ops: list[tuple[str, Any, str, int | None]], stored: bool
) -> None:
    """``get`` keeps its rows up to date as changes arrive; they equal rows built afresh."""
    loaded = {
        "counts": {
            K: {
                "community": "c1",
                "member": "m1",
                "events": 3,
                "score": 7,
                "first_seq": 2,
                "last_seq": 9,
                "name": "x",
            }
            if stored
            else None,
            ("c1", "m2"): None,
        }
    }

    def replay(prefix: list[tuple[str, Any, str, int | None]]) -> Changes:
        changes = Changes(SPECS, loaded)
        for op, key, column, value in prefix:
            apply(changes, op, key, column, value)
        return changes

    def apply(changes: Changes, op: str, key: Any, column: str, value: int | None) -> None:
        try:
            if op == "add":
                changes.add("counts", key, **{column: 0 if value is None else value})
            elif op in ("put", "least", "greatest"):
                getattr(changes, op)("counts", key, **{column: value})
            elif op == "delete":
                changes.delete("counts", key)
            else:
                changes.get("counts", key)
        except ValueError:
            pass  # mixing a counter with a min/max is refused, and changes nothing

    live = Changes(SPECS, loaded)
    done: list[tuple[str, Any, str, int | None]] = []
    for step in ops:
        apply(live, *step)
        done.append(step)
        fresh = replay([s for s in done if s[0] != "get"])
        for key in _KEYS:
            assert live.get("counts", key) == fresh.get("counts", key)


def test_rows_under_a_prefix_loaded_whole_are_known_and_listed() -> None:
    """c1 was loaded whole (two rows), c2 was not: a c1 row not loaded does not exist."""
    loaded = {
        "counts": {
            ("c1", "m2"): {"community": "c1", "member": "m2", "events": 2},
            ("c1", "m1"): {"community": "c1", "member": "m1", "events": 1},
        }
    }
    changes = Changes(SPECS, loaded, {"counts": {("c1",)}})
    assert changes.get("counts", ("c1", "m9")) is None  # under c1: absent, not unrequested
    with pytest.raises(KeyError, match="was not requested"):
        changes.get("counts", ("c2", "m1"))
    assert changes.keys_under("counts", ("c1",)) == [("c1", "m1"), ("c1", "m2")]  # sorted
    changes.add("counts", ("c1", "m0"), events=1)  # a row this batch creates under c1
    changes.delete("counts", ("c1", "m2"))
    changes.add("counts", ("c1", "m3"), events=1)
    changes.delete("counts", ("c1", "m3"))  # created and deleted again: gone
    assert changes.keys_under("counts", ("c1",)) == [("c1", "m0"), ("c1", "m1")]
    with pytest.raises(KeyError, match="not requested whole"):
        changes.keys_under("counts", ("c2",))
