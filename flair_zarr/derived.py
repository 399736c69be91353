"""write_aligned: a Dataset that follows a store's user order (new per-sample
variables: thumbnails, embeddings, statistics) written as a new store with the
same user-aligned chunking, coordinates and attributes.

xarray can read rectilinear chunk grids but not write them, so this writes
the zarr arrays itself: each dask block (whole users) is stored into exactly
one storage chunk, computed on the Dask cluster in hand, one block per task.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from . import format as fmt
from .cluster import compute
from .storage import open_store, put

ENCODING_KEYS = {"compressors", "filters", "serializer", "fill_value"}


def write_aligned(ds: xr.Dataset, dest: str, storage_options: dict[str, Any] | None = None, overwrite: bool = False,
                  progress: bool = False, encoding: dict[str, dict[str, Any]] | None = None) -> None:
    """Write ``ds`` (from ``open_dataset``, possibly one partition, with any
    variables added along ``sample``) to a new store at ``dest`` that
    ``open_dataset`` opens with the same users, coordinates and blocks.

    ``progress`` shows a progress bar of the blocks being written;
    ``encoding`` maps a variable to zarr array settings (``compressors``,
    ``filters``, ``serializer``, ``fill_value``), as in xarray's ``to_zarr``;
    the chunks are the user-aligned blocks, never set here."""
    fmt.enable_zarr_features()
    encoding = encoding or {}
    for name, variable in ds.data_vars.items():
        if variable.dims[0:1] != (fmt.SAMPLE,):
            raise ValueError(f"variable {name!r}: dims {variable.dims}; derived variables must have 'sample' first")
    for name, settings in encoding.items():
        if name not in ds.data_vars:
            raise ValueError(f"encoding names {name!r}, which is not a data variable of this Dataset")
        unknown = set(settings) - ENCODING_KEYS
        if unknown:
            raise ValueError(f"encoding of {name!r}: {sorted(unknown)} not allowed (chunks are the user-aligned blocks); "
                             f"use {sorted(ENCODING_KEYS)}")
    users = ds.flair.user_table()
    blocks = users.blocks(ds.attrs.get("flair_zarr", {}).get("block_images", fmt.BLOCK_IMAGES))
    store = open_store(dest, storage_options, read_only=False)
    try:
        group = zarr.create_group(store, zarr_format=3, overwrite=overwrite)
    except zarr.errors.ContainsGroupError:
        raise FileExistsError(f"{dest} already holds a store; pass overwrite=True to replace it") from None
    writes = []
    for name, variable in ds.data_vars.items():
        others = [[size] for size in variable.shape[1:]]
        array = group.create_array(name, shape=variable.shape, dtype=variable.dtype, chunks=[list(blocks), *others],
                                   dimension_names=variable.dims, attributes=dict(variable.attrs), **encoding.get(name, {}))
        data = variable.data if isinstance(variable.data, da.Array) else da.from_array(np.asarray(variable.data))
        writes.append(da.store(data.rechunk({0: blocks}), array, lock=False, compute=False))  # one task per block, each into its own chunk
    compute(*writes, show_progress=progress)

    coordinates = {name: np.asarray(ds[name].values) for name in (*fmt.COORDINATES, fmt.LABEL, fmt.FINE_LABEL, fmt.USER)}
    coordinates[fmt.USER_START] = users.start
    for name, values in coordinates.items():
        array = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=values.shape if values.size else None,
                                   dimension_names=fmt.DIMENSIONS[name])
        if values.size:
            array[:] = values
    put(store, fmt.COORDINATE_INDEX_KEY, fmt.pack_coordinates(coordinates))
    counts = {**ds.attrs.get("counts", {}), "images": int(users.count.sum()), "users": len(users.count),
              "partitions": users.partition_counts()}
    group.attrs.update({**ds.attrs, "counts": counts, "derived_from": ds.encoding.get("source"),
                        "coordinates": " ".join(fmt.COORDINATES)})
    with warnings.catch_warnings():  # coordinates.npz is ours, not zarr's; consolidated metadata is not in the v3 spec yet
        warnings.filterwarnings("ignore", category=zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(store)  # written last: the commit point

