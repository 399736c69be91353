"""The README's demo: synthetic FLAIR -> a flair-zarr store on a local S3
server -> opened lazily from S3 with xarray -> one user's data.

    python examples/demo.py [--workdir demo-data] [--users 300]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import intake
import numpy as np
import xarray as xr

import flair_zarr
from flair_zarr.synth import synth
from flair_zarr.testing import local_s3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo-data")
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()

    source = Path(args.workdir) / f"flair-synthetic-{args.users}"
    if not source.exists():
        report = synth(source, users=args.users, seed=0)
        print(f"synthetic FLAIR: {report.images:,} images of {report.users:,} users, "
              f"{report.jpeg_bytes / 1e6:.1f} MB of JPEG in {report.files} parquet files at {source}")

    with local_s3("flair") as s3:
        print(f"local S3 server (moto) at {s3['endpoint_url']}")
        url = "s3://flair/flair.zarr"
        began = time.perf_counter()
        ingested = flair_zarr.ingest(str(source), url, storage_options=s3)
        print(f"ingested into {url}: {ingested.images:,} images in {time.perf_counter() - began:.1f} s")

        began = time.perf_counter()
        ds = flair_zarr.open_dataset(url, storage_options=s3)
        print(f"\nflair_zarr.open_dataset({url!r}) in {time.perf_counter() - began:.2f} s:\n{ds}\n")

        user_id = ds.flair.users("train")[0]
        began = time.perf_counter()
        user = ds.flair.user(user_id).load()
        seconds = time.perf_counter() - began
        coarse = ds.label.values[user.labels.values.any(axis=0)]
        print(f"user {user_id} ({user.partition.values[0]}): {user.sizes['sample']} images "
              f"{tuple(user.image.shape)}, read and decoded in {seconds * 1000:.0f} ms")
        print(f"  image ids: {user.image_id.values[:5].tolist()}{' ...' if user.sizes['sample'] > 5 else ''}")
        print(f"  coarse labels present: {', '.join(coarse)}")
        print(f"  mean pixel (R, G, B): {np.round(user.image.values.mean(axis=(0, 1, 2)), 1).tolist()}")
        print(f"  first JPEG kept verbatim: {len(ds.flair.jpeg_bytes(user_id)[0]):,} bytes")

        plain = xr.open_zarr(url, storage_options=s3)
        print(f"\nplain xr.open_zarr({url!r}) after `import flair_zarr`: image {plain.image.dtype} {dict(plain.image.sizes)}, "
              f"first image mean {float(plain.image.isel(sample=0).mean()):.1f}")
    print("local S3 server stopped")

    # A local copy for the repository's catalog.yaml (its default store); a re-run keeps it.
    local = Path(args.workdir) / "flair.zarr"
    if not (local / "zarr.json").exists():
        flair_zarr.ingest(str(source), str(local))
    os.environ["FLAIR_ZARR_URL"] = str(local.resolve())  # what the catalog opens (unset: demo-data/flair.zarr)
    train = intake.from_yaml_file(str(Path(__file__).parent.parent / "catalog.yaml"))["flair_train"].read()
    print(f"\nintake catalog.yaml ['flair_train'] with FLAIR_ZARR_URL={local.resolve()}: "
          f"{train.sizes['sample']:,} images of {len(train.flair.users()):,} users")
    print(f"\nnext, on this store: python examples/quickstart.py {local} (also label_statistics.py, normalisation.py, "
          "thumbnails.py DEST, fedavg.py; see the README)")


if __name__ == "__main__":
    main()
