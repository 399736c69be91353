"""Pictures of a store: one user's contact sheet, and the dataset's statistics."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import xarray as xr

from . import format as fmt


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def contact_sheet(ds: xr.Dataset, user_id: str, out: str | Path, max_images: int = 48) -> int:
    """A PNG of the user's first ``max_images`` images, each titled with its
    coarse labels; returns how many images it shows."""
    user = ds.flair.user(user_id).isel({fmt.SAMPLE: slice(0, max_images)})
    images, labels = user[fmt.IMAGE].values, user[fmt.LABELS].values
    names = np.asarray(ds[fmt.LABEL].values)
    columns = min(8, len(images))
    rows = math.ceil(len(images) / columns)
    plt = pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, row, image_id in zip(axes.flat, images, labels, user[fmt.IMAGE_ID].values):
        ax.imshow(image)
        ax.set_title("\n".join(textwrap.wrap(", ".join(names[row]), 30)) or "(no label)", fontsize=7)
        ax.text(0, 250, str(image_id), fontsize=5, color="white")
    count = int(ds.flair.user(user_id).sizes[fmt.SAMPLE])
    partition = str(user[fmt.PARTITION].values[0])
    fig.suptitle(f"user {user_id} ({partition}): {count} images" + (f", first {len(images)} shown" if count > len(images) else ""))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return len(images)


def statistics_figure(ds: xr.Dataset, out: str | Path) -> None:
    """A PNG of images per user (log scale), coarse label frequencies, and
    users and images per partition."""
    counts = ds[fmt.USER_COUNT].values
    label_counts = ds[fmt.LABELS].sum(fmt.SAMPLE).values
    plt = pyplot()
    fig, (per_user, labels, partitions) = plt.subplots(1, 3, figsize=(16, 4.8))
    bins = np.unique(np.logspace(0, np.log10(max(counts.max(), 2)), 30).astype(int))
    per_user.hist(counts, bins=bins)
    per_user.set_xscale("log")
    per_user.set_yscale("log")
    per_user.set_xlabel("images per user")
    per_user.set_ylabel("users")
    per_user.set_title(f"{len(counts):,} users: median {np.median(counts):g}, mean {counts.mean():.2f}, max {counts.max():,}")
    order = np.argsort(label_counts)
    labels.barh(np.asarray(ds[fmt.LABEL].values)[order], label_counts[order])
    labels.set_xlabel("images with the label")
    labels.set_title("coarse labels")
    names = list(fmt.PARTITIONS)
    users = [int((ds[fmt.USER_PARTITION].values == p).sum()) for p in names]
    images = [int(counts[ds[fmt.USER_PARTITION].values == p].sum()) for p in names]
    x = np.arange(len(names))
    partitions.bar(x - 0.2, users, 0.4, label="users")
    partitions.bar(x + 0.2, images, 0.4, label="images")
    partitions.set_xticks(x, names)
    partitions.legend()
    partitions.set_title("partitions")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
