"""pfl-research's federated HDF5 (``benchmarks/dataset/flair/download_preprocess.py``):
``/{partition}/{user_id}/images`` uint8 [n, 256, 256, 3] (Pillow-decoded
pixels), ``image_ids`` (bytes), sparse labels ``labels_row``/``labels_col``
and ``fine_grained_labels_row``/``fine_grained_labels_col``, and
``/metadata/label_mapping``, ``/metadata/fine_grained_label_mapping`` (JSON
label -> index).

The file holds decoded pixels, not JPEG files. It has no fine -> coarse map: a
``label_relationship.txt`` beside it is used when present.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..format import IMAGE_SHAPE
from ..storage import filesystem
from . import (
    LABEL_RELATIONSHIP_FILE, BadRecord, Image, Location, SourceError, SourceIndex, Staging,
    fingerprint_files, read_label_relationship, string_lists,
)

SUFFIXES = (".hdf5", ".h5")
PARTITION_ALIASES = {"validation": "val"}
BLOCK_SIZE = 4 * 2**20


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PflHDF5Source:
    format = "pfl-hdf5"
    has_jpeg = False

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = str(url)
        self._fs, path = filesystem(self.url, storage_options)
        if self._fs.isdir(path):
            found = sorted(p for p in self._fs.ls(path, detail=False) if p.endswith(SUFFIXES))
            if len(found) != 1:
                raise SourceError(f"{self.url}: expected one HDF5 file ({'/'.join(SUFFIXES)}), found {len(found)}")
            path = found[0]
        self.path = path
        self._groups: list[str] = []  # HDF5 group of each user, in index order

    @staticmethod
    def recognises(fs: Any, root: str) -> bool:
        if fs.isfile(root):
            return root.endswith(SUFFIXES)
        return any(p.endswith(SUFFIXES) for p in fs.ls(root, detail=False))

    def _open(self) -> h5py.File:
        # HDF5 jumps between metadata and data: keep the blocks it read (a
        # readahead cache refetches on every backward seek, 60x slower on S3).
        return h5py.File(self._fs.open(self.path, "rb", cache_type="blockcache", block_size=BLOCK_SIZE), "r")

    def fingerprint(self) -> list[Any]:
        return fingerprint_files(self._fs, [self.path])

    def read_index(self) -> SourceIndex:
        name = posixpath.basename(self.path)
        relationship_path = posixpath.join(posixpath.dirname(self.path), LABEL_RELATIONSHIP_FILE)
        relationship = read_label_relationship(self._fs, relationship_path) if self._fs.exists(relationship_path) else {}
        columns: dict[str, list[Any]] = {k: [] for k in ("user_id", "partition", "image_id", "labels", "fine")}
        locations, bad, groups = [], [], []
        with self._open() as h5:
            if "metadata" not in h5:
                raise SourceError(f"{name}: no /metadata group with the label mappings")
            mappings = []
            for key in ("label_mapping", "fine_grained_label_mapping"):
                if key not in h5["metadata"]:
                    raise SourceError(f"{name}: missing /metadata/{key}")
                mapping = json.loads(_decode(h5["metadata"][key][()]))
                mappings.append([label for label, _ in sorted(mapping.items(), key=lambda item: item[1])])
            coarse, fine = mappings
            for partition in sorted(k for k in h5 if k != "metadata"):
                for user_id in sorted(h5[partition]):
                    group = h5[partition][user_id]
                    where = f"{name}:/{partition}/{user_id}"
                    user_number = len(groups)
                    groups.append(f"/{partition}/{user_id}")
                    missing = [k for k in ("images", "image_ids", "labels_row", "labels_col", "fine_grained_labels_row", "fine_grained_labels_col") if k not in group]
                    ids = [_decode(i) for i in group["image_ids"][()]] if "image_ids" in group else []
                    images = group.get("images")
                    shape_ok = images is not None and images.dtype == np.uint8 and images.shape[1:] == IMAGE_SHAPE and images.shape[0] == len(ids)
                    coarse_lists: list[list[str]] = [[] for _ in ids]
                    fine_lists: list[list[str]] = [[] for _ in ids]
                    if not missing:
                        for lists, vocabulary, prefix in ((coarse_lists, coarse, "labels"), (fine_lists, fine, "fine_grained_labels")):
                            for r, c in zip(group[f"{prefix}_row"][()].tolist(), group[f"{prefix}_col"][()].tolist()):
                                if r < len(lists):
                                    lists[r].append(vocabulary[c] if c < len(vocabulary) else f"<index {c}>")
                    for position, image_id in enumerate(ids):
                        row = len(columns["image_id"])
                        columns["user_id"].append(user_id)
                        columns["partition"].append(PARTITION_ALIASES.get(partition, partition))
                        columns["image_id"].append(int(image_id) if image_id.isdigit() else -1 - row)
                        columns["labels"].append(sorted(coarse_lists[position]))
                        columns["fine"].append(sorted(fine_lists[position]))
                        locations.append((user_number, position, 0))
                        if missing:
                            bad.append(BadRecord(row, f"user group lacks {', '.join(missing)}", where))
                        elif not shape_ok:
                            found = "none" if images is None else f"{images.dtype} {list(images.shape)}"
                            bad.append(BadRecord(row, f"images dataset is {found}, expected uint8 [{len(ids)}, 256, 256, 3]", where))
                        elif not image_id.isdigit():
                            bad.append(BadRecord(row, f"image_id {image_id!r} is not a number", where))
        self._groups = groups
        return SourceIndex(
            user_id=np.array(columns["user_id"], dtype=str),
            partition=np.array(columns["partition"], dtype=str),
            image_id=np.array(columns["image_id"], dtype=np.int64),
            labels=string_lists(columns["labels"]),
            fine_grained_labels=string_lists(columns["fine"]),
            coarse_vocabulary=sorted(coarse),
            fine_vocabulary=sorted(fine),
            label_relationship=relationship,
            row_origin=[(name, 0)],
            bad=bad,
            locations=np.array(locations, dtype=np.int64).reshape(-1, 3),
        )

    def parts(self, index: SourceIndex) -> list[Any]:
        return []  # pixels need no scan: shapes and dtypes were checked with the index

    def scan(self, part: Any, image_ids: np.ndarray, staging: Staging) -> Iterator[tuple[int, Image, Location] | BadRecord]:
        raise NotImplementedError("pfl-hdf5 sources are read without a scan")

    def read(self, locations: np.ndarray, staging: Staging) -> list[Image]:
        images: list[Image | None] = [None] * len(locations)
        with self._open() as h5:
            for user in np.unique(locations[:, 0]).tolist():
                mine = np.flatnonzero(locations[:, 0] == user)
                pixels = h5[self._groups[user]]["images"][()]
                for slot, position in zip(mine.tolist(), locations[mine, 1].tolist()):
                    images[slot] = pixels[position]
        return images  # type: ignore[return-value]
