"""ds.flair.user_totals: per-user sums, blockwise over user-aligned blocks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import flair_zarr


def test_label_histograms_equal_the_source(local_store, source_rows):
    ds = flair_zarr.open_dataset(local_store)
    totals = ds.flair.user_totals("labels")
    assert totals.chunks[0] and len(totals.chunks[0]) == ds.labels.data.numblocks[0]  # one task per block
    values = totals.values
    labels = ds.label.values.tolist()
    for user_id, row in zip(totals.user.values, values):
        expected = Counter(label for _, r in source_rows if r.user_id == user_id for label in r.labels)
        assert {labels[i]: int(n) for i, n in enumerate(row) if n} == dict(expected), user_id
    assert totals.user_partition.values.tolist() == ds.user_partition.values.tolist()


def test_partition_and_numpy_give_the_same(local_store):
    ds = flair_zarr.open_dataset(local_store)
    whole = ds.flair.user_totals("labels").values
    val = ds.flair.partition("val")
    members = ds.user_partition.values == "val"
    np.testing.assert_array_equal(val.flair.user_totals("labels").values, whole[members])
    loaded = val.load()
    np.testing.assert_array_equal(loaded.flair.user_totals("labels").values, whole[members])


def test_blocks_that_split_users_are_refused(local_store):
    ds = flair_zarr.open_dataset(local_store)
    split = ds.chunk({"sample": 5})
    assert (split.user_count.values > 5).any()
    with pytest.raises(ValueError, match="split users"):
        split.flair.user_totals("labels")
