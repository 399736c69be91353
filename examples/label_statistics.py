"""Per-user label statistics on a Dask cluster: each user's coarse-label
histogram (one task per user-aligned block, no shuffle) and how non-IID the
users are: the total variation distance of each user's label distribution to
the global one, against the same users with images dealt at random (IID).

    python examples/label_statistics.py s3://bucket/flair.zarr -o anon=true [--plot non_iid.png] [--table per_user.csv]
"""

from __future__ import annotations

import csv
import time

import numpy as np

import flair_zarr
from flair_zarr.cluster import compute, dask_client
from flair_zarr.pictures import pyplot
from flair_zarr.storage import storage_options_from

from _common import parser


def distances(histograms: np.ndarray) -> np.ndarray:
    """Total variation distance of each row's label distribution to the pooled one."""
    pooled = histograms.sum(axis=0) / histograms.sum()
    rows = histograms / np.maximum(histograms.sum(axis=1, keepdims=True), 1)
    return 0.5 * np.abs(rows - pooled).sum(axis=1)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--plot", default="non_iid.png", help="PNG of the distances and the largest users' label distributions")
    p.add_argument("--table", default="per_user.csv", help="CSV: user, partition, images, distance, label counts")
    p.add_argument("--min-images", type=int, default=10, help="users summarised in the printout have at least this many images")
    p.add_argument("--seed", type=int, default=0, help="seed of the IID baseline's shuffle")
    args = p.parse_args()

    ds = flair_zarr.open_dataset(args.url, storage_options_from(args.option))
    with dask_client(args.scheduler) as client:
        print(f"{ds.sizes['sample']:,} images of {ds.sizes['user']:,} users; label histograms per user on "
              f"{len(client.scheduler_info()['workers'])} workers, {ds.labels.data.numblocks[0]} blocks")
        began = time.perf_counter()
        per_user = ds.flair.user_totals("labels")
        (histograms,) = compute(per_user.data, show_progress=True)
        print(f"\nper-user label histograms {histograms.shape} in {time.perf_counter() - began:.2f} s")

    images = ds.user_count.values
    real = distances(histograms)
    # The IID baseline: the same users and sizes, each image's labels dealt to a random user.
    shuffled = np.random.default_rng(args.seed).permutation(ds.labels.values)
    iid = distances(np.add.reduceat(shuffled, ds.flair.user_table().start, axis=0, dtype=np.int64))

    big = images >= args.min_images
    labels_per_user = (histograms > 0).sum(axis=1)
    print(f"users with >= {args.min_images} images: {big.sum():,} of {len(images):,}")
    print(f"  total variation distance to the global label distribution: median {np.median(real[big]):.3f} "
          f"(IID baseline {np.median(iid[big]):.3f}), mean {real[big].mean():.3f} (IID {iid[big].mean():.3f})")
    print(f"  distinct coarse labels per user: median {np.median(labels_per_user[big]):g} of {histograms.shape[1]}")
    for partition in ("train", "val", "test"):
        members = big & (ds.user_partition.values == partition)
        if members.any():
            print(f"  {partition:<5}: {members.sum():,} users, median distance {np.median(real[members]):.3f}")

    with open(args.table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "partition", "images", "distance", *ds.label.values])
        for row in zip(ds.user.values, ds.user_partition.values, images, real.round(6), histograms):
            writer.writerow([*row[:4], *row[4].tolist()])
    print(f"wrote {args.table}")

    plt = pyplot()
    fig, (hist, scatter, heat) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    bins = np.linspace(0, 1, 41)
    hist.hist(real[big], bins, alpha=0.7, label="users")
    hist.hist(iid[big], bins, alpha=0.7, label="IID baseline")
    hist.set_xlabel("total variation distance to the global label distribution")
    hist.set_ylabel(f"users with >= {args.min_images} images")
    hist.legend()
    scatter.scatter(images, real, s=4, alpha=0.4, label="users")
    scatter.scatter(images, iid, s=4, alpha=0.4, label="IID baseline")
    scatter.set_xscale("log")
    scatter.set_xlabel("images per user")
    scatter.set_ylabel("distance")
    scatter.legend()
    largest = np.argsort(images)[::-1][:30]
    shares = histograms[largest] / histograms[largest].sum(axis=1, keepdims=True)
    pooled = histograms.sum(axis=0) / histograms.sum()
    heat.imshow(np.vstack([pooled, shares]), aspect="auto", cmap="viridis")
    heat.set_xticks(range(len(ds.label)), ds.label.values, rotation=90, fontsize=7)
    heat.set_yticks([0, *range(1, len(largest) + 1, 5)], ["all users", *[f"user {i}" for i in range(1, len(largest) + 1, 5)]], fontsize=7)
    heat.set_title(f"label shares: all users, then the {len(largest)} largest")
    fig.suptitle("How non-IID are FLAIR's users? (coarse labels)")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
