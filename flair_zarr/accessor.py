"""The ``ds.flair`` accessor: users and partitions of a flair-zarr Dataset,
and the source JPEG bytes behind its images."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from . import format as fmt
from .shards import shard_key, split_shard
from .storage import get, shared_store


@xr.register_dataset_accessor("flair")
class FlairAccessor:
    """Lookups by user id and partition on a Dataset from ``open_dataset``
    (or a plain ``xr.open_zarr`` of the store, or any subset of either)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def _user_position(self, user_id: str) -> int:
        try:
            return int(self._ds.indexes[fmt.USER].get_loc(user_id))
        except KeyError:
            raise KeyError(f"user {user_id!r} is not in this dataset") from None

    def _user_run(self, user_id: str) -> tuple[int, int, int]:
        """(position in the user table, first sample in the store, image count)."""
        position = self._user_position(user_id)
        start = int(self._ds[fmt.USER_START].values[position])
        count = int(self._ds[fmt.USER_COUNT].values[position])
        return position, start, count

    def _samples(self, start: int, stop: int) -> xr.Dataset:
        """Store samples [start, stop): by the ``sample`` index when there is one
        (valid on subsets), by position otherwise (a whole store)."""
        if fmt.SAMPLE in self._ds.indexes:
            return self._ds.sel({fmt.SAMPLE: slice(start, stop - 1)})
        return self._ds.isel({fmt.SAMPLE: slice(start, stop)})

    def user(self, user_id: str) -> xr.Dataset:
        """That user's samples, in source order, with the user table cut to that user."""
        position, start, count = self._user_run(user_id)
        return self._samples(start, start + count).isel({fmt.USER: [position]})

    def users(self, partition: str | None = None) -> list[str]:
        """User ids in store order, optionally of one partition."""
        ids = self._ds[fmt.USER].values
        if partition is not None:
            _check_partition(partition)
            ids = ids[self._ds[fmt.USER_PARTITION].values == partition]
        return ids.tolist()

    def partition(self, name: str) -> xr.Dataset:
        """The samples and users of one partition (contiguous in the store)."""
        _check_partition(name)
        members = np.flatnonzero(self._ds[fmt.USER_PARTITION].values == name)
        if members.size == 0:
            return self._ds.isel({fmt.SAMPLE: slice(0, 0), fmt.USER: slice(0, 0)})
        starts = self._ds[fmt.USER_START].values[members]
        counts = self._ds[fmt.USER_COUNT].values[members]
        subset = self._samples(int(starts[0]), int(starts[-1] + counts[-1]))
        return subset.isel({fmt.USER: slice(int(members[0]), int(members[-1]) + 1)})

    def user_table(self) -> fmt.UserTable:
        """The users with their runs of samples counted from this Dataset's
        first sample; refuses a Dataset that is not whole users in store order."""
        count = self._ds[fmt.USER_COUNT].values.astype(np.int64)
        start = self._ds[fmt.USER_START].values.astype(np.int64)
        samples = self._ds[fmt.SAMPLE].values
        first = samples[0] if len(samples) else 0
        if count.sum() != len(samples) or not np.array_equal(samples, np.arange(first, first + len(samples))) \
                or not np.array_equal(start, first + np.concatenate(([0], np.cumsum(count)[:-1]))):
            raise ValueError("this needs whole users in store order (a store, a partition, or a run of users "
                             "from open_dataset); this Dataset's samples do not match its user table")
        return fmt.UserTable(self._ds[fmt.USER].values, self._ds[fmt.USER_PARTITION].values, start - first, count)

    def user_totals(self, name: str) -> xr.DataArray:
        """Sums of a per-sample variable over each user's samples, along
        ``user``: one task per dask block and no shuffle, since every block
        holds whole users (e.g. ``user_totals("labels")``: label histograms)."""
        variable = self._ds[name]
        if variable.dims[:1] != (fmt.SAMPLE,):
            raise ValueError(f"variable {name!r} has dims {variable.dims}; user_totals needs 'sample' first")
        firsts = np.zeros(variable.shape[0], bool)  # True at each user's first sample
        firsts[self.user_table().start] = True
        data = variable.data
        if not isinstance(data, da.Array):
            totals = _run_sums(np.asarray(data), firsts)
        else:
            edges = np.cumsum((0, *data.chunks[0]))
            if not firsts[edges[1:-1]].all():
                raise ValueError(f"the dask blocks of {name!r} split users; open the store with flair_zarr.open_dataset")
            users_per_block = tuple(int(firsts[a:b].sum()) for a, b in zip(edges[:-1], edges[1:]))
            axes = "abcdefghij"[: data.ndim]
            # Each task gets its block and that block's slice of ``firsts``: nothing of the other blocks.
            dtype = _total_dtype(data.dtype)
            totals = da.blockwise(_run_sums, axes, data, axes, da.from_array(firsts, chunks=(data.chunks[0],)), axes[0],
                                  dtype=dtype, adjust_chunks={axes[0]: users_per_block}, meta=np.empty((0,) * data.ndim, dtype))
        coords = {fmt.USER: self._ds[fmt.USER].values, fmt.USER_PARTITION: (fmt.USER, self._ds[fmt.USER_PARTITION].values),
                  **{dim: variable[dim].values for dim in variable.dims[1:] if dim in variable.coords}}
        return xr.DataArray(totals, dims=(fmt.USER, *variable.dims[1:]), coords=coords, name=name)

    def jpeg_bytes(self, user_id: str) -> list[bytes]:
        """The user's source JPEG files, byte for byte, in order."""
        if not self._ds.attrs.get("image_encoding", {}).get("source_bytes", True):
            source = self._ds.attrs.get("source", {}).get("format", "its source")
            raise ValueError(f"this store holds decoded pixels from {source}, which had no JPEG files; "
                             "there are no source JPEG bytes to return (use the image variable)")
        return self.encoded_images(user_id)

    def encoded_images(self, user_id: str) -> list[bytes]:
        """The user's images as stored (JPEG files, or lossless WebP for pixel
        sources; see ``image_encoding`` in the attributes): one request, the
        user's shard object."""
        _, start, count = self._user_run(user_id)
        shard_sizes = self._ds[fmt.IMAGE].encoding["shards"][0]
        shard_starts = np.concatenate(([0], np.cumsum(shard_sizes)))
        shard = int(np.searchsorted(shard_starts, start))
        if shard_starts[shard] != start or shard_sizes[shard] != count:
            raise ValueError(f"user {user_id!r}: samples {start}..{start + count} are not one shard of the image array")
        source = self._ds.encoding.get("source")
        if source is None:
            raise ValueError("this Dataset does not record its store URL (encoding['source']); open it with flair_zarr.open_dataset")
        store = shared_store(source, self._ds.encoding.get("storage_options") or None)
        key = shard_key(shard)
        return split_shard(get(store, key), count, key)

    def to_zarr(self, dest: str, storage_options: dict | None = None, overwrite: bool = False, progress: bool = False,
                encoding: dict[str, dict] | None = None) -> None:
        """This Dataset as a new user-aligned store (see ``write_aligned``)."""
        from .derived import write_aligned

        write_aligned(self._ds, dest, storage_options, overwrite, progress, encoding)


def _total_dtype(dtype: np.dtype) -> type:
    return np.float64 if dtype.kind == "f" else np.int64


def _run_sums(block: np.ndarray, firsts: np.ndarray) -> np.ndarray:
    """Sums along axis 0 of the runs of ``block`` that start where ``firsts`` is True."""
    runs = np.flatnonzero(firsts)
    dtype = _total_dtype(block.dtype)
    return np.add.reduceat(block, runs, axis=0, dtype=dtype) if len(runs) else np.zeros((0, *block.shape[1:]), dtype)


def _check_partition(name: str) -> None:
    if name not in fmt.PARTITIONS:
        raise ValueError(f"partition {name!r} is not one of {fmt.PARTITIONS}")
