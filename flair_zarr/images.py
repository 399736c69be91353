"""The ``image`` variable of ``open_dataset``: whole user shards fetched
concurrently (one request each) and their images decoded directly.

zarr's sharding codec reads the same objects, but through a per-chunk async
pipeline: measured on a 393-image user, 0.82 s through zarr against 7 ms to
fetch the shard and 0.20 s to decode its JPEGs. This backend array keeps the
bytes and the decoder (libjpeg-turbo through imagecodecs, or lossless WebP)
and drops the per-chunk overhead; a plain ``xr.open_zarr`` still reads the
store through zarr.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from xarray.backends import BackendArray
from xarray.core import indexing

from . import format as fmt
from .shards import shard_key, split_shard
from .storage import get, shared_store

IO_THREADS = 64
# From this many images on, decoding is spread over all cores (imagecodecs
# releases the GIL); fewer are decoded in the calling thread, where
# concurrent callers (cohort loads, Dask threads) already fill the cores.
PARALLEL_DECODE_IMAGES = 64
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def threads(size: int) -> ThreadPoolExecutor:
    """This process's pool of ``size`` threads (a forked worker starts its own)."""
    key = (os.getpid(), size)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(size, thread_name_prefix=f"flair-{size}")
    return _pools[key]


def decode_all(chunks: list[bytes], source_bytes: bool) -> np.ndarray:
    """uint8 [n, 256, 256, 3] of stored images, decoded straight into the
    result; many images are split into one contiguous run per core (a task
    per image would cost more in thread hand-offs than it saves)."""
    out = np.empty((len(chunks), *fmt.IMAGE_SHAPE), dtype=np.uint8)

    def decode_run(run: range) -> None:
        for i in run:
            fmt.decode_image(chunks[i], source_bytes, out=out[i])

    cores = os.cpu_count() or 1
    if len(chunks) >= PARALLEL_DECODE_IMAGES and cores > 1:
        bounds = np.linspace(0, len(chunks), cores + 1).astype(int)
        list(threads(cores).map(decode_run, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    else:
        decode_run(range(len(chunks)))
    return out


class ShardedImages(BackendArray):
    """uint8 [sample, y, x, channel] over one shard object per user."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None, shard_counts: list[int], source_bytes: bool):
        self.url, self.storage_options, self.source_bytes = url, storage_options, source_bytes
        self.counts = np.asarray(shard_counts, dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)))
        self.shape = (int(self.starts[-1]), *fmt.IMAGE_SHAPE)
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        samples = np.arange(self.shape[0])[key[0]]
        picked = np.atleast_1d(samples)
        if picked.size == 0:
            return np.zeros((0, *fmt.IMAGE_SHAPE), np.uint8)[(slice(None), *key[1:])]
        first, last = np.searchsorted(self.starts, [picked.min(), picked.max()], side="right") - 1
        users = range(int(first), int(last) + 1)
        store = shared_store(self.url, self.storage_options)
        shards = threads(IO_THREADS).map(partial(self._chunks, store), users)
        stored = {int(self.starts[u]) + i: chunk for u, chunks in zip(users, shards) for i, chunk in enumerate(chunks)}
        images = decode_all([stored[int(s)] for s in picked], self.source_bytes)
        if np.ndim(samples) == 0:
            images = images[0]
        return images[(slice(None), *key[1:])] if np.ndim(samples) else images[key[1:]]

    def _chunks(self, store: Any, user: int) -> list[bytes]:
        key = shard_key(user)
        return split_shard(get(store, key), int(self.counts[user]), key)
