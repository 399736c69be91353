"""The Hugging Face anchors of the read benchmark, run by read_benchmark.py in
their own environment (``datasets<5``, ``flwr-datasets``: they pin an older
fsspec than flair-zarr's).

    python hf_anchors.py SPEC.json   ->  one JSON line of timings on stdout

SPEC: {"anchor": "hf-datasets" | "flwr-datasets", "files": [parquet URLs of the
train split], "storage_options": {...}, "users": [...], "cohort": [...],
"labels": [17 coarse names], "cache_dir": "..."}

Both decode JPEGs with imagecodecs (libjpeg-turbo), the decoder flair-zarr's
store uses, so the comparison is of storage and access, not of decoders.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

import imagecodecs
import numpy as np


def to_arrays(rows: Any, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 256, 256, 3], float32 multi-hot targets) of a datasets.Dataset slice."""
    column = {name: i for i, name in enumerate(labels)}
    images = np.stack([imagecodecs.jpeg_decode(image["bytes"]) for image in rows["image"]])
    targets = np.zeros((len(images), len(labels)), dtype=np.float32)
    for i, names in enumerate(rows["labels"]):
        targets[i, [column[n] for n in names]] = 1.0
    return images, targets


def open_anchor(spec: dict[str, Any]) -> Any:
    """A function user_id -> arrays, after whatever the anchor does first."""
    import datasets

    datasets.disable_progress_bars()
    load_options = {"data_files": {"train": spec["files"]}, "cache_dir": spec["cache_dir"]}
    if spec["storage_options"]:
        load_options["storage_options"] = spec["storage_options"]
    if spec["anchor"] == "hf-datasets":
        ds = datasets.load_dataset("parquet", split="train", **load_options)
        ds = ds.cast_column("image", datasets.Image(decode=False)) if isinstance(ds.features["image"], datasets.Image) else ds
        rows_of_user: dict[str, list[int]] = defaultdict(list)
        for row, user in enumerate(ds["user_id"]):
            rows_of_user[user].append(row)
        return lambda user: to_arrays(ds.select(rows_of_user[user]), spec["labels"])

    from flwr_datasets import FederatedDataset
    from flwr_datasets.partitioner import NaturalIdPartitioner

    partitioner = NaturalIdPartitioner(partition_by="user_id")
    fds = FederatedDataset(dataset="parquet", partitioners={"train": partitioner}, shuffle=False, **load_options)
    fds.load_partition(0)  # builds the partitioner's id -> rows map
    partition_of = partitioner._natural_id_to_partition_id  # noqa: SLF001 - flwr keeps the natural id map private

    def read(user: str) -> tuple[np.ndarray, np.ndarray]:
        rows = fds.load_partition(partition_of[user])
        if isinstance(rows.features["image"], datasets.Image):
            rows = rows.cast_column("image", datasets.Image(decode=False))
        return to_arrays(rows, spec["labels"])

    return read


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    began = time.perf_counter()
    read = open_anchor(spec)
    read(spec["users"][0])
    first_user = time.perf_counter() - began
    per_user = []
    for user in spec["users"]:
        t = time.perf_counter()
        read(user)
        per_user.append(time.perf_counter() - t)
    t = time.perf_counter()
    for user in spec["cohort"]:
        read(user)
    cohort = time.perf_counter() - t
    print(json.dumps({"first_user_s": first_user, "per_user_s": per_user, "cohort_s": cohort}))


if __name__ == "__main__":
    main()
