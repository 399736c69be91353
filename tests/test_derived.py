"""write_aligned / ds.flair.to_zarr: derived stores keep the users' alignment."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import flair_zarr
from flair_zarr import format as fmt


def _with_thumbnails(ds: xr.Dataset) -> xr.Dataset:
    thumbnail = ds[fmt.IMAGE].coarsen(y=4, x=4).mean().astype(np.uint8).rename(y="ty", x="tx")
    return ds.drop_vars(fmt.IMAGE).assign(thumbnail=thumbnail)


def _same(back: xr.Dataset, derived: xr.Dataset) -> None:
    np.testing.assert_array_equal(back.thumbnail.values, derived.thumbnail.values)
    assert back.thumbnail.chunks[0] == back[fmt.LABELS].chunks[0] == derived[fmt.LABELS].chunks[0]
    renumbered = (fmt.SAMPLE, fmt.USER_START)  # samples and user runs count from 0 in the new store
    plain = derived.drop_vars("thumbnail").load()
    xr.testing.assert_equal(back.drop_vars(["thumbnail", *renumbered]).load(), plain.drop_vars(list(renumbered)))
    np.testing.assert_array_equal(back[fmt.USER_START].values, derived[fmt.USER_START].values - derived[fmt.SAMPLE].values[0])


def test_round_trip_keeps_alignment_coordinates_and_values(local_store, tmp_path):
    derived = _with_thumbnails(flair_zarr.open_dataset(local_store))
    flair_zarr.write_aligned(derived, str(tmp_path / "thumbs.zarr"))
    back = flair_zarr.open_dataset(str(tmp_path / "thumbs.zarr"))
    _same(back, derived)
    assert back.attrs["derived_from"] == local_store and back.attrs["counts"]["images"] == derived.sizes["sample"]
    user = back.flair.users()[5]
    np.testing.assert_array_equal(back.flair.user(user).thumbnail.values, derived.flair.user(user).thumbnail.values)


def test_a_partition_is_renumbered_and_refuses_overwrite(local_store, tmp_path):
    val = _with_thumbnails(flair_zarr.open_dataset(local_store).flair.partition("val"))
    dest = str(tmp_path / "val.zarr")
    val.flair.to_zarr(dest)
    back = flair_zarr.open_dataset(dest)
    _same(back, val)
    assert back[fmt.USER_START].values[0] == 0 and back.flair.users() == val.flair.users()
    with pytest.raises(FileExistsError, match="already holds a store"):
        val.flair.to_zarr(dest)
    val.flair.to_zarr(dest, overwrite=True)


def test_refuses_samples_that_are_not_whole_users(local_store, tmp_path):
    ds = flair_zarr.open_dataset(local_store).drop_vars(fmt.IMAGE)
    with pytest.raises(ValueError, match="whole users in store order"):
        flair_zarr.write_aligned(ds.isel(sample=slice(1, 30)), str(tmp_path / "bad.zarr"))


def test_round_trip_on_s3(local_store, s3):
    derived = _with_thumbnails(flair_zarr.open_dataset(local_store).flair.partition("test"))
    flair_zarr.write_aligned(derived, "s3://flair/derived.zarr", storage_options=s3)
    _same(flair_zarr.open_dataset("s3://flair/derived.zarr", storage_options=s3), derived)


def test_encoding_sets_codecs_but_not_chunks(local_store, tmp_path):
    import zarr
    from zarr.codecs import BloscCodec

    derived = _with_thumbnails(flair_zarr.open_dataset(local_store).flair.partition("val"))
    dest = str(tmp_path / "blosc.zarr")
    derived.flair.to_zarr(dest, encoding={"thumbnail": {"compressors": BloscCodec(cname="lz4", shuffle="bitshuffle")}})
    codecs = zarr.open_array(dest, path="thumbnail", mode="r").metadata.to_dict()["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "blosc"] and codecs[1]["configuration"]["cname"] == "lz4"
    _same(flair_zarr.open_dataset(dest), derived)
    with pytest.raises(ValueError, match=r"\['chunks'\] not allowed"):
        derived.flair.to_zarr(str(tmp_path / "chunked.zarr"), encoding={"thumbnail": {"chunks": (10, 64, 64, 3)}})
    with pytest.raises(ValueError, match="'image', which is not a data variable"):
        derived.flair.to_zarr(str(tmp_path / "missing.zarr"), encoding={"image": {}})
    assert not (tmp_path / "chunked.zarr").exists() and not (tmp_path / "missing.zarr").exists()  # refused before writing
