"""The Hugging Face ``apple/flair`` layout: ``data/{split}-NNNNN-of-NNNNN.parquet``
and ``label_relationship.txt``, read from any fsspec URL.

The index pass projects the small columns only; the image pass streams record
batches of the ``image`` column, so memory stays bounded by one batch.
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
from . import LABEL_RELATIONSHIP_FILE, ImageBatch, SourceError, SourceIndex, read_label_relationship

FORMAT = "hf-parquet"
BATCH_ROWS = 256

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
    format = FORMAT

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = str(url)
        self._fs, self._root = filesystem(self.url, storage_options)
        paths = self._fs.glob(posixpath.join(self._root, "data", "*.parquet"))
        if not paths:
            raise SourceError(f"{self.url}: no parquet files under data/")
        self.files = sorted(paths, key=lambda p: _split_rank(posixpath.basename(p)))
        for path in self.files:
            self._check_schema(path)

    @staticmethod
    def recognises(fs: Any, root: str) -> bool:
        return fs.isdir(posixpath.join(root, "data"))

    def _open(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(self._fs.open(path, "rb"))

    def _check_schema(self, path: str) -> None:
        schema = self._open(path).schema_arrow
        for column, allowed in SCHEMA.items():
            if column not in schema.names:
                raise SourceError(f"{path}: missing column {column!r}")
            found = schema.field(column).type
            if not any(found.equals(t) for t in allowed):
                raise SourceError(f"{path}: column {column!r} has type {found}, expected {allowed[0]}")

    def read_index(self) -> SourceIndex:
        relationship = read_label_relationship(self._fs, posixpath.join(self._root, LABEL_RELATIONSHIP_FILE))
        tables, origins, rows = [], [], 0
        for path in self.files:
            table = self._open(path).read(columns=INDEX_COLUMNS)
            origins.append((posixpath.basename(path), rows))
            rows += table.num_rows
            tables.append(table)
        table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
        return SourceIndex(
            user_id=np.asarray(table["user_id"].to_numpy(zero_copy_only=False), dtype=str),
            partition=np.asarray(table["partition"].to_numpy(zero_copy_only=False), dtype=str),
            image_id=table["image_id"].to_numpy().astype(np.int64),
            labels=table["labels"].combine_chunks(),
            fine_grained_labels=table["fine_grained_labels"].combine_chunks(),
            label_relationship=relationship,
            row_origin=origins,
        )

    def iter_images(self) -> Iterator[ImageBatch]:
        row = 0
        for path in self.files:
            for batch in self._open(path).iter_batches(batch_size=BATCH_ROWS, columns=["image_id", "image"]):
                jpegs = batch.column("image").field("bytes").to_pylist()
                yield ImageBatch(first_row=row, image_id=batch.column("image_id").to_numpy(), jpeg=jpegs)
                row += batch.num_rows
