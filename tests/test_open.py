"""Opening: a plain xr.open_zarr after import flair_zarr, and stores that are not ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import zarr

import flair_zarr
from flair_zarr.reader import NotAFlairStoreError


def test_plain_open_zarr_in_a_fresh_process(local_store):
    """Only ``import flair_zarr``: no config or env var set by hand."""
    script = f"""
import json, numpy as np, xarray as xr
import flair_zarr
ds = xr.open_zarr({local_store!r})
first = ds.image.isel(sample=0).values
print(json.dumps({{"coords": sorted(ds.coords), "shape": list(first.shape), "mean": float(first.mean())}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARR_")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = flair_zarr.open_dataset(local_store).image.isel(sample=0).values
    assert result["shape"] == [256, 256, 3]
    assert result["mean"] == pytest.approx(float(expected.mean()))
    assert {"user_id", "partition", "image_id", "user", "label", "fine_label"} <= set(result["coords"])


def test_open_dataset_coordinates_equal_the_plain_open_zarr_ones(local_store):
    """open_dataset takes them from the coordinate index, xr.open_zarr from the arrays."""
    import xarray as xr

    ds = flair_zarr.open_dataset(local_store)
    plain = xr.open_zarr(local_store)
    for name in plain.coords:
        assert ds[name].dims == plain[name].dims, name
        assert ds[name].dtype == plain[name].dtype, name
        assert (ds[name].values == plain[name].values).all(), name
        assert type(ds[name].data).__name__ == "ndarray", f"{name} should be loaded, not lazy"
    assert set(plain.coords) <= set(ds.coords)


def test_open_refuses_an_empty_folder(tmp_path):
    with pytest.raises(NotAFlairStoreError, match="no committed flair-zarr store"):
        flair_zarr.open_dataset(str(tmp_path))


def test_open_refuses_a_foreign_zarr_store(tmp_path):
    group = zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
    group.attrs["title"] = "something else"
    zarr.consolidate_metadata(str(tmp_path / "other.zarr"))
    with pytest.raises(NotAFlairStoreError, match="not a flair-zarr one"):
        flair_zarr.open_dataset(str(tmp_path / "other.zarr"))
