"""Figures for one synthetic FLAIR: ingest speed, store size against the
source JPEG bytes, open time and one user's read time, on local disk and on a
local S3 server (moto).

    python benchmarks/store_figures.py --users 2700 --workdir /tmp/flair-bench
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import flair_zarr
from flair_zarr.storage import filesystem
from flair_zarr.synth import synth
from flair_zarr.testing import local_s3


def measure(label: str, url: str, source: Path, options: dict | None) -> None:
    began = time.perf_counter()
    report = flair_zarr.ingest(str(source), url, storage_options=options, overwrite=True)
    ingest_s = time.perf_counter() - began
    fs, path = filesystem(url, options)
    store_bytes = fs.du(path)
    print(f"[{label}] {url}")
    print(f"  ingest: {report.images:,} images of {report.users:,} users in {ingest_s:.1f} s = {report.images / ingest_s:,.0f} images/s"
          f" (peak worker memory {max(report.worker_peak_memory.values()) / 2**20:,.0f} MiB)")
    print(f"  size: store {store_bytes:,} B / source JPEG {report.jpeg_bytes:,} B = {store_bytes / report.jpeg_bytes:.4f}")
    measure_reads(url, options)


def measure_reads(url: str, options: dict | None) -> None:

    opens = []
    for _ in range(3):
        began = time.perf_counter()
        ds = flair_zarr.open_dataset(url, storage_options=options)
        opens.append(time.perf_counter() - began)

    rng = np.random.default_rng(0)
    users = ds.flair.users()
    counts = ds.user_count.values
    sample = rng.choice(len(users), 50, replace=False)
    reads, images = [], 0
    for u in sample:
        began = time.perf_counter()
        pixels = ds.flair.user(users[u]).image.values
        reads.append(time.perf_counter() - began)
        images += len(pixels)
    big = int(np.argmax(counts))
    began = time.perf_counter()
    ds.flair.user(users[big]).image.values
    big_s = time.perf_counter() - began

    print(f"  open_dataset: {statistics.median(opens) * 1000:.0f} ms median of 3 ({', '.join(f'{o * 1000:.0f}' for o in opens)})")
    print(f"  one user's images, 50 random users ({images} images): median {statistics.median(reads) * 1000:.1f} ms, "
          f"max {max(reads) * 1000:.1f} ms")
    print(f"  largest user ({counts[big]} images): {big_s * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2700)
    parser.add_argument("--workdir", default="/tmp/flair-bench")
    parser.add_argument("--reads-only", metavar="STORE", help="only the read figures of an existing store")
    args = parser.parse_args()
    if args.reads_only:
        print(f"[reads] {args.reads_only}")
        measure_reads(args.reads_only, None)
        return
    work = Path(args.workdir)
    source = work / f"source-{args.users}"
    if not source.exists():
        began = time.perf_counter()
        report = synth(source, users=args.users, seed=0)
        print(f"synth: {report.images:,} images of {report.users:,} users, {report.jpeg_bytes:,} B JPEG, "
              f"{time.perf_counter() - began:.1f} s")
    measure("local disk", str(work / "store.zarr"), source, None)
    with local_s3("bench") as s3:
        measure("moto S3 on 127.0.0.1", "s3://bench/store.zarr", source, s3)


if __name__ == "__main__":
    main()
