"""Channel mean and standard deviation over the train partition: the
normalisation constants a model needs, streamed block by block on a Dask
cluster (every image decoded once, never all in memory), exact sums.

    python examples/normalisation.py s3://bucket/flair.zarr -o anon=true [--partition train] [--out normalisation.json]

With --compare-decode it also times a pass that only reads and decodes the
same images, so the two can be compared in one run.
"""

from __future__ import annotations

import json
import time

import dask.array as da
import numpy as np

import flair_zarr
from flair_zarr.cluster import compute, dask_client
from flair_zarr.storage import storage_options_from

from _common import parser


def channel_moments(block: np.ndarray) -> np.ndarray:
    """[pixel count, sum, sum of squares] per channel of a block of images
    [n, y, x, channel], shape (1, 3, channel). Exact: each float32 product
    sums at most 256 rows of values <= 255**2 (< 2**24), then float64. The
    two row buffers are reused: fresh memory costs more than the arithmetic."""
    n, height, width, channels = block.shape
    ones = np.ones(height, np.float32)
    rows = np.empty((height, width * channels), np.float32)
    squared = np.empty_like(rows)
    sums = np.zeros(width * channels)
    squares = np.zeros(width * channels)
    for image in block:
        np.copyto(rows, image.reshape(height, width * channels))
        np.multiply(rows, rows, out=squared)
        sums += ones @ rows
        squares += ones @ squared
    moments = np.stack([np.full(channels, n * height * width, np.float64),
                        sums.reshape(width, channels).sum(axis=0), squares.reshape(width, channels).sum(axis=0)])
    return moments[np.newaxis]


def per_block(images: da.Array, function) -> da.Array:
    """``function`` on every block of images, stacked: (blocks, 3, channel)."""
    return images.map_blocks(function, drop_axis=[1, 2, 3], new_axis=[1, 2], dtype=np.float64,
                             chunks=((1,) * images.numblocks[0], (3,), (images.shape[3],)))


def decoded_only(block: np.ndarray) -> np.ndarray:
    """Nothing but the read and decode that produced ``block``."""
    return np.zeros((1, 3, block.shape[3]))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--partition", default="train", choices=["train", "val", "test"])
    p.add_argument("--out", default="normalisation.json", help="JSON with the mean and std per channel")
    p.add_argument("--compare-decode", action="store_true", help="also time a read-and-decode-only pass")
    args = p.parse_args()

    ds = flair_zarr.open_dataset(args.url, storage_options_from(args.option)).flair.partition(args.partition)
    images = ds.image.data
    with dask_client(args.scheduler) as client:
        print(f"{args.partition}: {ds.sizes['sample']:,} images of {ds.sizes['user']:,} users in {images.numblocks[0]} "
              f"user-aligned blocks, on {len(client.scheduler_info()['workers'])} workers")
        began = time.perf_counter()
        (moments,) = compute(per_block(images, channel_moments).sum(axis=0), show_progress=True)
        seconds = time.perf_counter() - began
        rate = ds.sizes["sample"] / seconds
        print(f"\nmean and std: {seconds:.2f} s, {rate:,.0f} images/s")
        if args.compare_decode:
            began = time.perf_counter()
            compute(per_block(images, decoded_only).sum(axis=0), show_progress=True)
            decode = ds.sizes["sample"] / (time.perf_counter() - began)
            print(f"\nread and decode only: {decode:,.0f} images/s; mean and std ran at {rate / decode:.2f}x that")

    count, sums, squares = moments
    mean = sums / count
    std = np.sqrt(squares / count - mean**2)
    result = {"partition": args.partition, "images": ds.sizes["sample"], "pixels_per_channel": int(count[0]),
              "mean": mean.tolist(), "std": std.tolist(), "mean_unit": (mean / 255).tolist(), "std_unit": (std / 255).tolist()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"channel mean (R, G, B) {np.round(mean, 3).tolist()}, std {np.round(std, 3).tolist()}  (0-255)")
    print(f"for images scaled to [0, 1]: Normalize(mean={np.round(mean / 255, 4).tolist()}, std={np.round(std / 255, 4).tolist()})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
