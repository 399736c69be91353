"""Quick start: open a flair-zarr store (from S3 or anywhere fsspec reaches)
and browse one user, reading only that user's objects.

    python examples/quickstart.py s3://bucket/flair.zarr -o anon=true [--user ID] [--sheet user.png]
"""

from __future__ import annotations

import time

import numpy as np

import flair_zarr
from flair_zarr.cluster import dask_client
from flair_zarr.pictures import contact_sheet
from flair_zarr.storage import storage_options_from

from _common import parser


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--user", help="user id (default: the train user with the most images, up to 48)")
    p.add_argument("--sheet", default="user.png", help="contact sheet of the user's images (PNG)")
    args = p.parse_args()

    began = time.perf_counter()
    ds = flair_zarr.open_dataset(args.url, storage_options_from(args.option))
    print(f"opened {args.url} in {time.perf_counter() - began:.2f} s (consolidated metadata + coordinates.npz):\n{ds}\n")
    counts = ds.attrs["counts"]["partitions"]
    print("partitions: " + ", ".join(f"{name} {c['users']:,} users / {c['images']:,} images" for name, c in counts.items()))

    user_id = args.user
    if user_id is None:
        train = ds.flair.partition("train")
        sizes = train.user_count.values
        user_id = str(train.user.values[np.argmax(np.where(sizes <= 48, sizes, 0))])

    with dask_client(args.scheduler):  # the user's dask chunk is read and decoded on a worker
        began = time.perf_counter()
        user = ds.flair.user(user_id).load()
        seconds = time.perf_counter() - began
    print(f"\nuser {user_id} ({user.partition.values[0]}): {user.sizes['sample']} images {tuple(user.image.shape)} "
          f"read and decoded in {seconds * 1000:.0f} ms")
    names = ds.label.values
    for image_id, row in zip(user.image_id.values[:10], user.labels.values[:10]):
        print(f"  image {image_id}: {', '.join(names[row]) or '(no label)'}")
    if user.sizes["sample"] > 10:
        print(f"  ... {user.sizes['sample'] - 10} more")
    print(f"  mean pixel (R, G, B): {np.round(user.image.values.mean(axis=(0, 1, 2)), 1).tolist()}")
    shown = contact_sheet(user, user_id, args.sheet)  # from the loaded user: no second read
    print(f"wrote {args.sheet}: contact sheet of {shown} images with their coarse labels")


if __name__ == "__main__":
    main()
