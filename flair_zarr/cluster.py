"""Dask for the long jobs (ingest, verify): the client in hand, a scheduler
address, or a LocalCluster of one single-threaded worker process per core;
and a progress line with throughput."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster, get_client, progress


@contextmanager
def dask_client(scheduler: str | Client | None = None) -> Iterator[Client]:
    """``scheduler``: a Client, an address (``tcp://host:8786``), or None for
    the client already in hand or else a new LocalCluster (workers = cores)."""
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    try:
        in_hand = get_client()
    except ValueError:
        in_hand = None
    if in_hand is not None:
        yield in_hand
        return
    workers = os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def compute(*collections: object, show_progress: bool = False) -> tuple:
    """``dask.compute`` on the client in hand (or dask's default scheduler);
    with ``show_progress``, a progress bar of the tasks on stdout meanwhile."""
    try:
        client = get_client()
    except ValueError:
        return dask.compute(*collections)
    futures = client.compute(list(collections))
    if show_progress:
        progress(futures)
    return tuple(client.gather(futures))


def worker_peak_memory(client: Client) -> dict[str, int]:
    """Peak resident memory (bytes) of each worker process so far."""
    import resource

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return client.run(peak)


class Progress:
    """One updating line on stderr: users and images done, images/s."""

    def __init__(self, label: str, users: int, images: int, enabled: bool = True):
        self.label, self.users, self.images, self.enabled = label, users, images, enabled
        self.done_users = self.done_images = 0
        self.began = time.perf_counter()

    def advance(self, users: int, images: int) -> None:
        self.done_users += users
        self.done_images += images
        if self.enabled:
            rate = self.done_images / max(time.perf_counter() - self.began, 1e-9)
            users_text = f"{self.done_users:,}/{self.users:,} users, " if self.users else ""
            print(f"\r{self.label}: {users_text}{self.done_images:,}/{self.images:,} images, {rate:,.0f} images/s",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)
