"""``Lookup``: a decision table found by binary search over its keys' sorted hashes gives
what a dictionary gives, and stays exact when keys share a hash."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mixer.steps.base import Lookup, remove_listed


def _table(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"src:{i}" for i in rng.choice(10 * n, n, replace=False)]
    return pl.DataFrame({"id": ids, "kept_id": [f"k{i}" for i in range(n)], "source": ["s"] * n})


def test_find_matches_a_dictionary() -> None:
    table = _table(5000, 1)
    look = Lookup.of(table, "id")
    asked = pl.Series([f"src:{i}" for i in range(0, 50_000, 3)] + ["", "src:-1"])
    truth = {k: v for k, v in zip(table["id"], table["kept_id"], strict=True)}
    at = look.find(asked)
    found = {k: look.table["kept_id"][int(a)] for k, a in zip(asked, at, strict=True) if a >= 0}
    assert found == {k: truth[k] for k in asked if k in truth} and len(found) > 100
    assert (look.find(pl.Series([], dtype=pl.Utf8)) == np.zeros(0)).all()
    assert (Lookup.of(table.clear(), "id").find(asked) == -1).all()


def test_keys_sharing_a_hash_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashed alike: each is still found at its own row, and an unlisted key is not."""
    monkeypatch.setattr(pl.Series, "hash", lambda self, *a, **k: pl.Series(np.full(len(self), 7, np.uint64)))
    table = _table(50, 2)
    look = Lookup.of(table, "id")
    at = look.find(table["id"].reverse())
    assert look.table["id"].gather(at).to_list() == table["id"].reverse().to_list()
    assert look.find(pl.Series(["nope"])).tolist() == [-1]


def test_remove_listed_takes_the_listed_rows_with_their_columns() -> None:
    batch = pl.DataFrame({"id": ["a", "b", "c", "d"], "source": ["x"] * 4, "n": [1, 2, 3, 4]})
    listed = Lookup.of(pl.DataFrame({"id": ["d", "b", "z"], "kept_id": ["a", "a", "a"], "kept_source": ["x"] * 3}), "id")
    kept, gone = remove_listed(batch, listed, "exact_dedup", "exact_duplicate", pl.format("duplicate of {}", "kept_id"))
    assert kept["id"].to_list() == ["a", "c"]
    assert gone["id"].to_list() == ["b", "d"] and gone["detail"].to_list() == ["duplicate of a", "duplicate of a"]
