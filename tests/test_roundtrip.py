"""A synthetic source through a local store: every pixel, byte, label and id
comes back, in the promised order and chunking."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import flair_zarr
from flair_zarr import format as fmt

from .conftest import pillow_pixels


@pytest.fixture(scope="module")
def ds(local_store: str) -> xr.Dataset:
    return flair_zarr.open_dataset(local_store)


def test_counts_and_dimensions(ds, source_rows):
    assert ds.sizes[fmt.SAMPLE] == len(source_rows)
    assert ds.sizes[fmt.LABEL] == 17 and ds.sizes[fmt.FINE_LABEL] == 1628
    assert (ds.sizes[fmt.Y], ds.sizes[fmt.X], ds.sizes[fmt.CHANNEL]) == (256, 256, 3)
    assert ds.attrs["counts"]["images"] == len(source_rows)
    assert ds.attrs["counts"]["users"] == len({r.user_id for _, r in source_rows}) == ds.sizes[fmt.USER]
    assert ds[fmt.IMAGE].dtype == np.uint8 and ds[fmt.LABELS].dtype == bool


def test_pixels_equal_pillow_decode_of_source(ds, source_rows):
    by_id = dict(source_rows)
    images = ds[fmt.IMAGE].values
    for sample, image_id in enumerate(ds[fmt.IMAGE_ID].values.tolist()):
        np.testing.assert_array_equal(images[sample], pillow_pixels(by_id[image_id].jpeg), err_msg=f"image_id {image_id}")


def test_jpeg_bytes_are_the_source_files(ds, source_rows):
    by_id = dict(source_rows)
    for user in ds.flair.users():
        ids = ds.flair.user(user)[fmt.IMAGE_ID].values.tolist()
        assert ds.flair.jpeg_bytes(user) == [by_id[i].jpeg for i in ids]


def test_labels_and_ids_equal_source(ds, source_rows):
    by_id = dict(source_rows)
    coarse, fine = ds[fmt.LABEL].values, ds[fmt.FINE_LABEL].values
    labels, fine_labels = ds[fmt.LABELS].values, ds[fmt.FINE_GRAINED_LABELS].values
    for sample, image_id in enumerate(ds[fmt.IMAGE_ID].values.tolist()):
        record = by_id[image_id]
        assert sorted(coarse[labels[sample]]) == sorted(record.labels)
        assert sorted(fine[fine_labels[sample]]) == sorted(record.fine_grained_labels)
        assert ds[fmt.USER_ID].values[sample] == record.user_id
        assert ds[fmt.PARTITION].values[sample] == record.partition


def test_label_vocabularies_sorted_with_parents(ds, source):
    assert list(ds[fmt.LABEL].values) == sorted(ds[fmt.LABEL].values)
    assert list(ds[fmt.FINE_LABEL].values) == sorted(ds[fmt.FINE_LABEL].values)
    pairs = dict(line.split(" -> ") for line in (source / "label_relationship.txt").read_text().splitlines())
    assert dict(zip(ds[fmt.FINE_LABEL].values, ds[fmt.FINE_LABEL_PARENT].values)) == pairs
    assert ds.attrs["label_relationship"] == pairs


def test_image_ids_above_2_31_kept_exactly(ds, source_rows):
    ids = ds[fmt.IMAGE_ID].values
    assert ids.dtype == np.int64
    assert (ids > 2**31).sum() > len(ids) // 2
    assert sorted(ids.tolist()) == sorted(i for i, _ in source_rows)


def test_order_partition_then_user_then_source(ds, source_rows):
    partitions = ds[fmt.USER_PARTITION].values.tolist()
    assert partitions == sorted(partitions, key=fmt.PARTITIONS.index)
    for name in fmt.PARTITIONS:
        users = ds.flair.users(name)
        assert users == sorted(users)
    source_order = {}
    for image_id, record in source_rows:
        source_order.setdefault(record.user_id, []).append(image_id)
    for user in ds.flair.users():
        assert ds.flair.user(user)[fmt.IMAGE_ID].values.tolist() == source_order[user]


def test_storage_and_dask_chunks_are_user_aligned(ds, local_store):
    import zarr

    starts = ds[fmt.USER_START].values
    counts = ds[fmt.USER_COUNT].values
    boundaries = set((starts + counts).tolist()) | {0}
    image = zarr.open_array(local_store, path=fmt.IMAGE, mode="r")
    assert tuple(ds[fmt.IMAGE].encoding["shards"][0]) == tuple(counts.tolist())
    assert image.metadata.chunk_grid.chunk_shapes[0] == tuple(counts.tolist())
    for name in fmt.DATA_VARIABLES:
        edges = np.cumsum(ds[name].chunks[0])
        assert set(edges.tolist()) <= boundaries, name
        assert max(ds[name].chunks[0]) <= max(64, counts.max())
    assert len(ds[fmt.IMAGE].chunks[0]) > 1  # several blocks at block_images=64


def test_user_and_partition_selection(ds):
    user = ds.flair.users("val")[0]
    one = ds.flair.user(user)
    assert set(one[fmt.USER_ID].values.tolist()) == {user}
    assert one.sizes[fmt.SAMPLE] == int(ds[fmt.USER_COUNT].sel(user=user))
    val = ds.flair.partition("val")
    assert set(val[fmt.PARTITION].values.tolist()) == {"val"}
    assert val.flair.users() == ds.flair.users("val")
    # lookups keep working on the subset, by store position
    np.testing.assert_array_equal(val.flair.user(user)[fmt.IMAGE].values, one[fmt.IMAGE].values)
    assert val.flair.jpeg_bytes(user) == ds.flair.jpeg_bytes(user)
    with pytest.raises(KeyError, match="not in this dataset"):
        val.flair.user(ds.flair.users("train")[0])
    with pytest.raises(ValueError, match="partition 'dev'"):
        ds.flair.partition("dev")


def test_image_reads_equal_zarr_for_any_selection(ds, local_store):
    """open_dataset's image backend (shards decoded directly) against zarr's own read of the same store."""
    plain = xr.open_zarr(local_store)
    last = ds.sizes["sample"] - 1
    for selection in ({"sample": 5}, {"sample": slice(3, 70)}, {"sample": [1, 5, 40], "x": slice(0, 3)},
                      {"sample": slice(10, 10)}, {"sample": last, "y": 7}, {"sample": slice(60, 200, 7), "channel": 1}):
        np.testing.assert_array_equal(ds.image.isel(selection).values, plain.image.isel(selection).values)
