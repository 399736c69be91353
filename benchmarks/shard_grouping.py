"""How many users per shard object? One user per shard against users packed
into shards of about ``--pack`` images, on a local S3 server (moto): time to
write the image objects, and per-user read time and S3 requests.

    python benchmarks/shard_grouping.py --store /tmp/flair-bench/store.zarr --pack 64
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import imagecodecs.zarr
import numpy as np
import zarr

import flair_zarr
from flair_zarr.shards import build_shard
from flair_zarr.storage import open_store, put
from flair_zarr.testing import local_s3


class RequestCounter(logging.Handler):
    """Counts the request lines the moto server logs."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += '"' in record.getMessage()


def pack(counts: np.ndarray, target: int) -> list[list[int]]:
    groups, current, size = [], [], 0
    for user, n in enumerate(counts.tolist()):
        if current and size + n > target:
            groups.append(current)
            current, size = [], 0
        current.append(user)
        size += n
    return groups + [current]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, help="an existing local flair-zarr store to take users and JPEGs from")
    parser.add_argument("--pack", type=int, default=64)
    parser.add_argument("--users", type=int, default=1000, help="users to write (the first N)")
    args = parser.parse_args()

    ds = flair_zarr.open_dataset(args.store)
    users = ds.flair.users()[: args.users]
    counts = ds.user_count.values[: args.users]
    jpegs = [ds.flair.jpeg_bytes(u) for u in users]
    layouts = {"one user per shard": [[u] for u in range(len(users))], f"packed to ~{args.pack} images": pack(counts, args.pack)}
    rng = np.random.default_rng(0)
    probe = rng.choice(len(users), 100, replace=False)

    with local_s3("shards") as s3:
        counter = RequestCounter()
        log = logging.getLogger("werkzeug")
        log.addHandler(counter)
        for name, groups in layouts.items():
            url = f"s3://shards/{len(groups)}.zarr"
            sizes = [int(counts[g].sum()) for g in groups]
            group = zarr.open_group(url, mode="w", storage_options=s3, zarr_format=3)
            group.create_array("image", shape=(int(counts.sum()), 256, 256, 3), dtype="uint8", shards=[sizes, [256], [256], [3]],
                               chunks=(1, 256, 256, 3), serializer=imagecodecs.zarr.Jpeg(), compressors=None)
            store = open_store(url, s3, read_only=False)
            began = time.perf_counter()
            for i, g in enumerate(groups):
                put(store, f"image/c/{i}/0/0/0", build_shard([j for u in g for j in jpegs[u]]))
            write_s = time.perf_counter() - began

            array = zarr.open_array(url, path="image", mode="r", storage_options=s3)
            starts = np.concatenate(([0], np.cumsum(counts)))
            times, requests = [], []
            log.setLevel(logging.INFO)
            for u in probe:
                counter.count = 0
                began = time.perf_counter()
                array[starts[u] : starts[u + 1]]
                times.append(time.perf_counter() - began)
                requests.append(counter.count)
            log.setLevel(logging.ERROR)
            print(f"{name}: {len(groups):,} objects for {len(users):,} users ({int(counts.sum()):,} images); "
                  f"sequential PUTs {write_s:.1f} s; one user read: median {statistics.median(times) * 1000:.1f} ms, "
                  f"requests per user median {statistics.median(requests):g}, max {max(requests)}")


if __name__ == "__main__":
    main()
