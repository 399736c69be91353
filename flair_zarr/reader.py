"""open_dataset: a flair-zarr store as a labelled, lazily loaded xarray Dataset
with dask chunks aligned to users."""

from __future__ import annotations

import posixpath
import warnings
from typing import Any

import numpy as np
import xarray as xr
from xarray.core import indexing

from . import format as fmt
from .images import ShardedImages
from .job import JOB_FOLDER
from .storage import filesystem, get, open_store


class NotAFlairStoreError(ValueError):
    """The URL holds no committed flair-zarr store."""


def open_dataset(url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """Open the store at ``url`` (a local path or any fsspec URL).

    Images and labels stay lazy, in dask chunks of whole users (one storage
    block of labels each); images are read one shard object per user and
    decoded directly (see images.py); coordinates and the per-user table are small and
    loaded at once from the store's coordinate index, so opening is two
    requests and lookups by user or partition cost no further one.
    A ``sample`` index (the store position) keeps user lookups valid on subsets.
    """
    lazy = open_lazy(url, storage_options)
    ds = lazy.assign({name: variable.chunk({fmt.SAMPLE: variable.encoding["preferred_chunks"][fmt.SAMPLE]})
                      for name, variable in lazy.data_vars.items()})
    return ds


def open_lazy(url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """The store as lazily indexed (not dask) variables whose
    ``preferred_chunks`` are the user-aligned blocks: what an xarray engine
    hands to ``xr.open_dataset``, which chunks by them given ``chunks={}``."""
    fmt.enable_zarr_features()
    store = open_store(url, storage_options, read_only=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, message="Consolidated metadata")
            lazy = xr.open_zarr(store, consolidated=True, zarr_format=3, chunks=None,
                                drop_variables=[*fmt.COORDINATES, fmt.LABEL, fmt.FINE_LABEL, fmt.USER])
    except (FileNotFoundError, KeyError, ValueError) as error:
        fs, path = filesystem(url, storage_options)
        if fs.exists(posixpath.join(path, JOB_FOLDER, "plan.json")):
            raise NotAFlairStoreError(f"{url}: an ingest into it has not finished (not committed); "
                                      "re-run the same ingest to resume it") from error
        raise NotAFlairStoreError(f"{url}: no committed flair-zarr store (no consolidated zarr v3 metadata: {error})") from error
    about = lazy.attrs.get("flair_zarr", {})
    if about.get("format") != fmt.FORMAT_NAME:
        raise NotAFlairStoreError(f"{url}: a zarr store, but not a flair-zarr one (root attribute flair_zarr={about!r})")
    if about.get("version") != fmt.FORMAT_VERSION:
        raise NotAFlairStoreError(f"{url}: flair-zarr format version {about.get('version')}, this library reads {fmt.FORMAT_VERSION}")

    coordinates = fmt.unpack_coordinates(get(store, fmt.COORDINATE_INDEX_KEY))
    if fmt.IMAGE in lazy:
        image = lazy[fmt.IMAGE]
        images = ShardedImages(str(url), storage_options, list(image.encoding["shards"][0]),
                               bool(lazy.attrs["image_encoding"]["source_bytes"]))
        lazy[fmt.IMAGE] = xr.Variable(image.dims, indexing.LazilyIndexedArray(images), image.attrs, image.encoding)
    # the user-aligned blocks: storage chunks of any per-sample variable but the image shards
    blocked = [v for name, v in lazy.data_vars.items() if name != fmt.IMAGE and v.dims[:1] == (fmt.SAMPLE,)]
    first = blocked[0].encoding["chunks"][0] if blocked else lazy[fmt.IMAGE].encoding["shards"][0]
    n = lazy.sizes[fmt.SAMPLE]
    # a store of one block has a regular chunk grid: an int, not a list
    blocks = tuple(first) if not isinstance(first, int) else (first,) * (n // first) + ((n % first,) if n % first else ())
    for variable in lazy.data_vars.values():
        variable.encoding["preferred_chunks"] = {**variable.encoding.get("preferred_chunks", {}), fmt.SAMPLE: blocks}
    ds = lazy.assign_coords({name: (fmt.DIMENSIONS[name], values) for name, values in coordinates.items()})
    ds = ds.assign_coords({fmt.SAMPLE: np.arange(ds.sizes[fmt.SAMPLE], dtype=np.int64)})
    ds.encoding.update(source=str(url), storage_options=storage_options or {})
    return ds
