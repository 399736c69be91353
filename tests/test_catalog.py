"""The intake catalog at the repository root and the xarray engine behind it."""

from __future__ import annotations

from pathlib import Path

import intake
import numpy as np
import xarray as xr

import flair_zarr

CATALOG = Path(__file__).parent.parent / "catalog.yaml"


def test_every_entry_is_open_dataset(local_store, monkeypatch):
    monkeypatch.setenv("FLAIR_ZARR_URL", local_store)
    catalog = intake.from_yaml_file(str(CATALOG))
    assert set(catalog.entries) == {"flair", "flair_train", "flair_val", "flair_test"}
    whole = flair_zarr.open_dataset(local_store)
    for name in catalog.entries:
        partition = catalog.entries[name].metadata["partition"]
        expected = whole.flair.partition(partition) if partition else whole
        ds = catalog[name].read()
        xr.testing.assert_identical(ds.drop_vars("image").load(), expected.drop_vars("image").load())
        assert ds.image.chunks == expected.image.chunks and ds.labels.chunks == expected.labels.chunks
        user = ds.flair.users()[-1]
        np.testing.assert_array_equal(ds.flair.user(user).image.values, expected.flair.user(user).image.values)


def test_unset_url_is_the_demo_store(local_store, tmp_path, monkeypatch):
    monkeypatch.delenv("FLAIR_ZARR_URL", raising=False)
    (tmp_path / "demo-data").mkdir()
    (tmp_path / "demo-data" / "flair.zarr").symlink_to(local_store)
    monkeypatch.chdir(tmp_path)
    ds = intake.from_yaml_file(str(CATALOG))["flair_val"].read()
    assert ds.sizes["sample"] == flair_zarr.open_dataset(local_store).flair.partition("val").sizes["sample"] > 0


def test_catalog_metadata():
    meta = intake.from_yaml_file(str(CATALOG)).metadata
    assert "CC-BY-NC-4.0" in meta["license"] and "NeurIPS 2022" in meta["citation"]
    assert meta["federated"]["natural_id"] == "user_id"
    assert sum(p["users"] for p in meta["federated"]["partitions"].values()) == 51414


def test_engine_without_chunks_is_lazy_and_plain(local_store):
    """No chunks: lazily indexed numpy-backed variables, as any xarray engine gives."""
    ds = xr.open_dataset(local_store, engine="flair_zarr")
    assert ds.image.chunks is None
    np.testing.assert_array_equal(ds.image[5].values, flair_zarr.open_dataset(local_store).image[5].values)
