"""Federated loaders: a user id in, that user's images and multi-hot targets
out, read straight from the store (one shard object per user, plus the
user's block of labels), with concurrent cohort loads and prefetching."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr
import zarr

from . import format as fmt
from .images import IO_THREADS, decode_all, threads
from .reader import open_dataset
from .storage import process_cache_key, shared_store

LABEL_SETS = {"coarse": fmt.LABELS, "fine": fmt.FINE_GRAINED_LABELS}
_shared_clients: dict[str, FederatedFLAIR] = {}


class FederatedFLAIR:
    """One partition of FLAIR as federated clients.

    ``source`` is a store URL or a Dataset from ``open_dataset``. Targets are
    float32 multi-hot over the 17 coarse (``label_set="coarse"``) or the fine
    labels; a user gives its first ``max_images_per_user`` images in stored
    order, as pfl-research's FLAIR benchmark does.
    """

    def __init__(self, source: str | xr.Dataset, partition: str | None = "train", label_set: str = "coarse",
                 max_images_per_user: int | None = 512, storage_options: dict[str, Any] | None = None,
                 max_concurrency: int = 32):
        if label_set not in LABEL_SETS:
            raise ValueError(f"label_set must be one of {sorted(LABEL_SETS)}, not {label_set!r}")
        ds = source if isinstance(source, xr.Dataset) else open_dataset(source, storage_options)
        self.dataset = ds.flair.partition(partition) if partition else ds
        self.partition = partition
        self.label_set = label_set
        self.labels = self.dataset[LABEL_SETS[label_set]]
        self.label_names: list[str] = self.labels[self.labels.dims[1]].values.tolist()
        self.max_images_per_user = max_images_per_user
        self.max_concurrency = max_concurrency
        self.users: list[str] = self.dataset.flair.users()
        self._start = dict(zip(self.users, self.dataset[fmt.USER_START].values.tolist()))
        self.image_counts: dict[str, int] = dict(zip(self.users, self.dataset[fmt.USER_COUNT].values.tolist()))
        self._source_bytes = bool(self.dataset.attrs["image_encoding"]["source_bytes"])
        if "source" not in ds.encoding:
            raise ValueError("FederatedFLAIR reads from the store: pass its URL or a Dataset from flair_zarr.open_dataset")
        store = shared_store(ds.encoding["source"], ds.encoding.get("storage_options") or None)
        self._label_array = zarr.open_array(store, path=self.labels.name, mode="r", zarr_format=3)

    @classmethod
    def shared(cls, url: str, storage_options: dict[str, Any] | None = None, **settings: Any) -> FederatedFLAIR:
        """The instance for these arguments in this process, opened on first
        use: Dask tasks call it on the workers to read users by id without
        opening the store (two requests) in every task."""
        key = process_cache_key(url, storage_options, **settings)
        if key not in _shared_clients:
            _shared_clients[key] = cls(url, storage_options=storage_options, **settings)
        return _shared_clients[key]

    def __len__(self) -> int:
        return len(self.users)

    def num_images(self, user_id: str) -> int:
        """Images ``load_user`` gives for ``user_id`` (capped at max_images_per_user)."""
        count = self.image_counts[user_id]
        return count if self.max_images_per_user is None else min(count, self.max_images_per_user)

    def sample_cohort(self, k: int, rng: np.random.Generator | int | None = None, replace: bool = False,
                      weighted: bool = False) -> list[str]:
        """``k`` user ids, uniformly or (``weighted``) in proportion to their image counts."""
        rng = np.random.default_rng(rng)
        p = None
        if weighted:
            counts = np.array([self.num_images(u) for u in self.users], dtype=float)
            p = counts / counts.sum()
        return [self.users[i] for i in rng.choice(len(self.users), size=k, replace=replace, p=p)]

    def load_user(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [n, 256, 256, 3], targets float32 [n, labels]) of one user.

        Two requests in flight together: the user's shard object (decoded
        here, a large user's images on all cores) and its rows of labels.
        """
        if user_id not in self._start:
            raise KeyError(f"user {user_id!r} is not in partition {self.partition!r}")
        start, n = self._start[user_id], self.num_images(user_id)
        targets = threads(IO_THREADS).submit(lambda: self._label_array[start : start + n])
        images = decode_all(self.dataset.flair.encoded_images(user_id)[:n], self._source_bytes)
        return images, targets.result().astype(np.float32)

    def load_cohort(self, user_ids: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``load_user`` for each id, up to ``max_concurrency`` users in flight at once."""
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(self.load_user, user_ids))

    def cohorts(self, k: int, rounds: int, rng: np.random.Generator | int | None = None,
                weighted: bool = False) -> Iterator[tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]]:
        """``rounds`` sampled cohorts with their data; the next cohort loads
        while the caller trains on the current one."""
        rng = np.random.default_rng(rng)
        with ThreadPoolExecutor(1) as prefetcher:
            def start() -> tuple[list[str], Future[list[tuple[np.ndarray, np.ndarray]]]]:
                ids = self.sample_cohort(k, rng, weighted=weighted)
                return ids, prefetcher.submit(self.load_cohort, ids)

            if rounds <= 0:
                return
            upcoming = start()
            for round_number in range(rounds):
                ids, loading = upcoming
                if round_number + 1 < rounds:
                    upcoming = start()
                yield ids, loading.result()


def pfl_federated_dataset(source: str | xr.Dataset, partition: str = "train", use_fine_grained_labels: bool = False,
                          max_num_user_images: int = 512, numpy_to_tensor: Callable[[np.ndarray], Any] = lambda x: x,
                          shuffle: bool = True, storage_options: dict[str, Any] | None = None) -> Any:
    """A ``pfl.data.FederatedDataset`` over the store, giving what pfl-research's
    FLAIR loader (``benchmarks/dataset/flair/numpy.py``) gives from its HDF5:
    per user the first ``max_num_user_images`` images (uint8) and float32
    multi-hot targets, shuffled together with numpy's global RNG unless
    ``shuffle`` is false; users sampled at random from the sorted ids; each
    user weighted by its full image count."""
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler

    clients = FederatedFLAIR(source, partition=partition, label_set="fine" if use_fine_grained_labels else "coarse",
                             max_images_per_user=max_num_user_images, storage_options=storage_options)

    def make_dataset_fn(user_id: str) -> Dataset:
        inputs, targets = clients.load_user(user_id)
        if shuffle:
            order = np.random.permutation(len(inputs))
            inputs, targets = inputs[order], targets[order]
        return Dataset(raw_data=[numpy_to_tensor(inputs), numpy_to_tensor(targets)], train_kwargs={"eval": False},
                       eval_kwargs={"eval": True}, user_id=user_id)

    return FederatedDataset(make_dataset_fn, get_user_sampler("random", sorted(clients.users)), user_id_to_weight=dict(clients.image_counts))
