"""PyTorch datasets over a flair-zarr store (the ``flair-zarr[torch]`` extra).

``UserDataset`` is one federated client: a map-style dataset of one user's
images, read in one request on first access. ``CentralDataset`` is a whole
partition for centralised training: an iterable dataset that hands each
DataLoader worker its own users, so workers read different users' shards in
parallel and every shard is read once per epoch.

Both pickle without their open store, so DataLoader workers may be started with
``multiprocessing_context="spawn"`` (safe beside Dask's and the object store's
threads) as well as by fork.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .fl import FederatedFLAIR

Sample = tuple[torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor], Any]


class _StoreClients:
    """A FederatedFLAIR opened once per process: DataLoader workers open their
    own (an object-store client does not survive a fork), nothing is pickled
    but the arguments."""

    def __init__(self, source: str | xr.Dataset, **options: Any):
        self._source, self._options = source, options
        self._clients: FederatedFLAIR | None = None
        self._pid = -1

    @property
    def clients(self) -> FederatedFLAIR:
        if self._clients is None or self._pid != os.getpid():
            self._clients, self._pid = FederatedFLAIR(self._source, **self._options), os.getpid()
        return self._clients

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clients": None, "_pid": -1}


def to_tensors(images: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [n, 256, 256, 3] and float32 targets as tensors, images channels first ([n, 3, 256, 256])."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), torch.from_numpy(targets)


class UserDataset(Dataset[Sample]):
    """One user's images (uint8, channels first) and float32 multi-hot targets.

    ``source`` and the keyword options are those of ``FederatedFLAIR``; the
    user's data is read on first access, in one request for the images.
    """

    def __init__(self, source: str | xr.Dataset, user_id: str, transform: Transform | None = None, **options: Any):
        self._store = _StoreClients(source, **options)
        self.user_id = user_id
        self.transform = transform
        self._length = self._store.clients.num_images(user_id)
        self._data: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Sample:
        if self._data is None:
            self._data = to_tensors(*self._store.clients.load_user(self.user_id))
        images, targets = self._data
        image = images[index]
        return (self.transform(image) if self.transform else image), targets[index]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


class CentralDataset(IterableDataset[Sample]):
    """Every sample of a partition, user by user.

    Each epoch the users are shuffled (``seed`` + epoch) and dealt to the
    DataLoader workers in turn; a worker reads its users one shard at a time
    and yields their samples shuffled within the user. Call ``set_epoch``
    between epochs for a new order, as with a DistributedSampler.
    """

    def __init__(self, source: str | xr.Dataset, transform: Transform | None = None, shuffle: bool = True,
                 seed: int = 0, **options: Any):
        options.setdefault("max_images_per_user", None)
        self._store = _StoreClients(source, **options)
        clients = self._store.clients
        self.users = list(clients.users)
        self._length = sum(clients.num_images(u) for u in self.users)
        self.transform, self.shuffle, self.seed, self.epoch = transform, shuffle, seed, 0

    def __len__(self) -> int:
        return self._length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Sample]:
        rng = np.random.default_rng((self.seed, self.epoch))
        users = [self.users[i] for i in rng.permutation(len(self.users))] if self.shuffle else self.users
        worker = get_worker_info()
        if worker is not None:
            users = users[worker.id :: worker.num_workers]
        clients = self._store.clients
        for user_id in users:
            images, targets = to_tensors(*clients.load_user(user_id))
            order = rng.permutation(len(images)) if self.shuffle else range(len(images))
            for i in order:
                yield (self.transform(images[i]) if self.transform else images[i]), targets[i]
