"""The ``ds.flair`` accessor: users and partitions of a flair-zarr Dataset,
and the source JPEG bytes behind its images."""

from __future__ import annotations

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


    def to_zarr(self, dest: str, storage_options: dict | None = None, overwrite: bool = False) -> None:
        """This Dataset as a new user-aligned store (see ``write_aligned``)."""
        from .derived import write_aligned

        write_aligned(self._ds, dest, storage_options, overwrite)


def _check_partition(name: str) -> None:
    if name not in fmt.PARTITIONS:
        raise ValueError(f"partition {name!r} is not one of {fmt.PARTITIONS}")
