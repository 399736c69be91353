"""The Hugging Face ``apple/flair`` layout: ``data/{split}-NNNNN-of-NNNNN.parquet``
and ``label_relationship.txt``, from any fsspec URL (local, ``s3://``,
``hf://datasets/apple/flair`` through huggingface_hub, ``https://``).

The index reads the small columns only. Scans and reads fetch whole row
groups of the ``image`` column, so a task holds at most its own row groups.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..format import PARTITIONS
from ..storage import filesystem
from . import (
    LABEL_RELATIONSHIP_FILE, BadRecord, Image, Location, SourceError, SourceIndex, Staging,
    fingerprint_files, read_label_relationship, vocabularies,
)

PART_ROWS = 4096

_STRING = (pa.string(), pa.large_string())
_STRING_LIST = tuple(f(t) for f in (pa.list_, pa.large_list) for t in _STRING)
SCHEMA = {
    "user_id": _STRING,
    "image_id": (pa.int64(),),
    "labels": _STRING_LIST,
    "partition": _STRING,
    "fine_grained_labels": _STRING_LIST,
    "image": tuple(
        pa.struct([("bytes", b), ("path", s)]) for b in (pa.binary(), pa.large_binary()) for s in _STRING
    ),
}
INDEX_COLUMNS = ["user_id", "image_id", "partition", "labels", "fine_grained_labels"]


def _split_rank(name: str) -> tuple[int, str]:
    split = name.split("-", 1)[0]
    return (PARTITIONS.index(split) if split in PARTITIONS else len(PARTITIONS), name)


class HFParquetSource:
    format = "hf-parquet"
    has_jpeg = True

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = str(url)
        self._fs, self._root = filesystem(self.url, storage_options)
        paths = self._fs.glob(posixpath.join(self._root, "data", "*.parquet"))
        if not paths:
            raise SourceError(f"{self.url}: no parquet files under data/")
        self.files = sorted(paths, key=lambda p: _split_rank(posixpath.basename(p)))
        # First row of each row group, per file, from the footers.
        self._group_starts: list[np.ndarray] = []
        for path in self.files:
            metadata = self._check_schema(path)
            sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
            self._group_starts.append(np.concatenate(([0], np.cumsum(sizes))).astype(np.int64))

    @staticmethod
    def recognises(fs: Any, root: str) -> bool:
        return fs.isdir(posixpath.join(root, "data"))

    def _open(self, file_number: int) -> pq.ParquetFile:
        return pq.ParquetFile(self._fs.open(self.files[file_number], "rb"))

    def _check_schema(self, path: str) -> pq.FileMetaData:
        parquet = pq.ParquetFile(self._fs.open(path, "rb"))
        schema = parquet.schema_arrow
        for column, allowed in SCHEMA.items():
            if column not in schema.names:
                raise SourceError(f"{path}: missing column {column!r}")
            found = schema.field(column).type
            if not any(found.equals(t) for t in allowed):
                raise SourceError(f"{path}: column {column!r} has type {found}, expected {allowed[0]}")
        return parquet.metadata

    def fingerprint(self) -> list[Any]:
        return fingerprint_files(self._fs, self.files)

    def read_index(self) -> SourceIndex:
        relationship = read_label_relationship(self._fs, posixpath.join(self._root, LABEL_RELATIONSHIP_FILE))
        coarse, fine = vocabularies(relationship)
        tables, origins, rows = [], [], 0
        for number, path in enumerate(self.files):
            table = self._open(number).read(columns=INDEX_COLUMNS)
            origins.append((posixpath.basename(path), rows))
            rows += table.num_rows
            tables.append(table)
        table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
        return SourceIndex(
            user_id=np.asarray(table["user_id"].to_numpy(zero_copy_only=False), dtype=str),
            partition=np.asarray(table["partition"].to_numpy(zero_copy_only=False), dtype=str),
            image_id=table["image_id"].to_numpy().astype(np.int64),
            labels=table["labels"].combine_chunks().cast(pa.list_(pa.string())),
            fine_grained_labels=table["fine_grained_labels"].combine_chunks().cast(pa.list_(pa.string())),
            coarse_vocabulary=coarse,
            fine_vocabulary=fine,
            label_relationship=relationship,
            row_origin=origins,
        )

    def parts(self, index: SourceIndex) -> list[tuple[int, list[int], int]]:
        """(file number, row groups, first row in the index) of about PART_ROWS rows each."""
        parts = []
        for number, starts in enumerate(self._group_starts):
            first_row = index.row_origin[number][1]
            groups: list[int] = []
            for group in range(len(starts) - 1):
                groups.append(group)
                if starts[group + 1] - starts[groups[0]] >= PART_ROWS:
                    parts.append((number, groups, first_row + int(starts[groups[0]])))
                    groups = []
            if groups:
                parts.append((number, groups, first_row + int(starts[groups[0]])))
        return parts

    def scan(self, part: tuple[int, list[int], int], image_ids: np.ndarray, staging: Staging) -> Iterator[tuple[int, Image, Location] | BadRecord]:
        number, groups, first_row = part
        table = self._open(number).read_row_groups(groups, columns=["image_id", "image"])
        in_file = int(self._group_starts[number][groups[0]])
        ids = table["image_id"].to_numpy()
        if not np.array_equal(ids, image_ids[first_row : first_row + len(ids)]):
            raise SourceError(f"{self.files[number]}: image ids changed since the index was read")
        for offset, jpeg in enumerate(table["image"].combine_chunks().field("bytes").to_pylist()):
            row = first_row + offset
            if jpeg is None:
                yield BadRecord(row, "no image bytes")
            else:
                yield row, jpeg, (number, in_file + offset, 0)

    def read(self, locations: np.ndarray, staging: Staging) -> list[Image]:
        images: list[Image | None] = [None] * len(locations)
        for number in np.unique(locations[:, 0]).tolist():
            mine = np.flatnonzero(locations[:, 0] == number)
            rows = locations[mine, 1]
            starts = self._group_starts[number]
            groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
            column = self._open(number).read_row_groups(groups.tolist(), columns=["image"])["image"]
            jpegs = column.combine_chunks().field("bytes")
            # Position of each wanted row within the concatenated row groups.
            group_offsets = np.concatenate(([0], np.cumsum(starts[groups + 1] - starts[groups])))
            group_of_row = np.searchsorted(groups, np.searchsorted(starts, rows, side="right") - 1)
            positions = group_offsets[group_of_row] + rows - starts[groups[group_of_row]]
            for slot, position in zip(mine.tolist(), positions.tolist()):
                images[slot] = jpegs[position].as_py()
        return images  # type: ignore[return-value]
