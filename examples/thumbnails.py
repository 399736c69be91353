"""A derived store: 64x64 thumbnails of every image (4x4 box averages),
computed block by block on a Dask cluster and written with
``flair_zarr.write_aligned``, so the new store keeps the user-aligned chunks,
the coordinates and the labels of the source.

    python examples/thumbnails.py s3://bucket/flair.zarr s3://bucket/thumbnails.zarr -o anon=true [--partition train]
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from zarr.codecs import BloscCodec

import flair_zarr
from flair_zarr.cluster import dask_client
from flair_zarr.storage import storage_options_from

from _common import parser

FACTOR = 4  # 256 / 4 = 64 pixels a side
# Bit-shuffled zstd level 1: 0.77x the raw size of 2,000 synthetic thumbnails at about the speed of zarr's
# default zstd, which gave 0.99x (level 5: 0.72x, but 3x the time, as much as decoding the images).
ENCODING = {"thumbnail": {"compressors": BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")}}


def shrink(images: np.ndarray) -> np.ndarray:
    """[n, 256, 256, 3] -> [n, 64, 64, 3]: each output pixel the rounded mean
    of a 4x4 box (Pillow's ``reduce``, 10x faster here than numpy's mean)."""
    return np.stack([np.asarray(Image.fromarray(image).reduce(FACTOR)) for image in images]) if len(images) else \
        np.zeros((0, images.shape[1] // FACTOR, images.shape[2] // FACTOR, images.shape[3]), np.uint8)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("dest", help="the new store: path or fsspec URL (same storage options)")
    p.add_argument("--partition", choices=["train", "val", "test"], help="only this partition (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at DEST")
    args = p.parse_args()
    options = storage_options_from(args.option)

    ds = flair_zarr.open_dataset(args.url, options)
    if args.partition:
        ds = ds.flair.partition(args.partition)
    images = ds.image.data  # dask, one block of whole users per chunk; map_blocks keeps those chunks
    side = images.shape[1] // FACTOR
    thumbnails = images.map_blocks(shrink, chunks=(images.chunks[0], (side,), (side,), images.chunks[3]), dtype=np.uint8)
    derived = ds.drop_vars("image").assign(thumbnail=(("sample", "ty", "tx", "channel"), thumbnails,
                                                      {"description": f"{FACTOR}x{FACTOR} box mean of image"}))
    with dask_client(args.scheduler) as client:
        print(f"{ds.sizes['sample']:,} images of {ds.sizes['user']:,} users -> {args.dest} "
              f"({ds.image.data.numblocks[0]} blocks on {len(client.scheduler_info()['workers'])} workers)")
        began = time.perf_counter()
        derived.flair.to_zarr(args.dest, options, overwrite=args.overwrite, progress=True, encoding=ENCODING)
        seconds = time.perf_counter() - began
    print(f"\nwrote {ds.sizes['sample']:,} thumbnails in {seconds:.1f} s ({ds.sizes['sample'] / seconds:,.0f} images/s)")

    again = flair_zarr.open_dataset(args.dest, options)
    aligned = again.thumbnail.chunks[0] == ds.image.chunks[0]
    print(f"reopened: {dict(again.thumbnail.sizes)}, {len(again.thumbnail.chunks[0])} user-aligned blocks "
          f"({'the same as' if aligned else 'NOT the same as'} the source's), variables {sorted(again.data_vars)}")
    user_id = again.flair.users()[0]
    user = again.flair.user(user_id)
    print(f"user {user_id}: {user.sizes['sample']} thumbnails {tuple(user.thumbnail.shape)}, "
          f"mean pixel {np.round(user.thumbnail.values.mean(axis=(0, 1, 2)), 1).tolist()}")
    if not aligned:
        raise SystemExit("the derived store lost the user-aligned blocks")


if __name__ == "__main__":
    main()
