"""The ``flair_zarr`` xarray engine: ``xr.open_dataset(url, engine="flair_zarr")``
with ``chunks={}`` gives what ``open_dataset`` gives (user-aligned dask
chunks, coordinates in two requests), so catalogs and tools that only speak xarray, such as intake's
``XArrayDatasetReader``, get the same Dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendEntrypoint

from . import format as fmt
from .reader import open_lazy


class FlairZarrBackend(BackendEntrypoint):
    description = "flair-zarr stores of FLAIR: user-aligned chunks, a labelled Dataset"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "storage_options", "partition")

    def open_dataset(self, filename_or_obj: Any, *, drop_variables: Any = None,
                     storage_options: dict[str, Any] | None = None, partition: str | None = None) -> xr.Dataset:
        """Lazy variables with user-aligned ``preferred_chunks``: pass
        ``chunks={}`` for open_dataset's dask chunks."""
        ds = open_lazy(str(filename_or_obj), storage_options or None)
        if partition is not None:
            ds = _with_blocks_of(ds.flair.partition(partition))
        return ds.drop_vars(drop_variables or [], errors="ignore")

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        return False  # a flair-zarr store is also a plain zarr store: only on request


def _with_blocks_of(subset: xr.Dataset) -> xr.Dataset:
    """A partition's preferred chunks: the store's blocks inside it (a block
    never crosses a partition)."""
    samples = subset[fmt.SAMPLE].values
    for variable in subset.data_vars.values():
        blocks = variable.encoding["preferred_chunks"][fmt.SAMPLE]
        bounds = np.cumsum((0, *blocks))
        inside = [b for b, lo in zip(blocks, bounds[:-1]) if samples.size and samples[0] <= lo < samples[-1] + 1]
        variable.encoding["preferred_chunks"] = {**variable.encoding["preferred_chunks"], fmt.SAMPLE: tuple(inside) or (0,)}
    return subset
