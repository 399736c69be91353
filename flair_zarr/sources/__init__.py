"""FLAIR sources: each distribution of the dataset is read by its own module
into the same two things, an index of every record (everything but the
pixels) and a stream of the records' JPEG bytes in source order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import fsspec
import numpy as np
import pyarrow as pa

from ..storage import filesystem

LABEL_RELATIONSHIP_FILE = "label_relationship.txt"


class SourceError(ValueError):
    """The source is missing a file, has the wrong schema or a bad record."""


@dataclass(frozen=True)
class SourceIndex:
    """One row per image, in source order."""

    user_id: np.ndarray  # str
    partition: np.ndarray  # str
    image_id: np.ndarray  # int64
    labels: pa.ListArray  # list<string>, coarse
    fine_grained_labels: pa.ListArray  # list<string>
    label_relationship: dict[str, str]  # fine label -> coarse label
    row_origin: list[tuple[str, int]]  # (file, first row) of each file, in row order

    def __len__(self) -> int:
        return len(self.image_id)

    def describe_row(self, row: int) -> str:
        """Name a record for error messages: image id, user, file and row."""
        starts = [start for _, start in self.row_origin]
        file_number = int(np.searchsorted(starts, row, side="right")) - 1
        name, start = self.row_origin[file_number]
        return f"image_id {self.image_id[row]} (user {self.user_id[row]}, {name} row {row - start})"


@dataclass(frozen=True)
class ImageBatch:
    """Consecutive source rows with their JPEG file bytes."""

    first_row: int
    image_id: np.ndarray
    jpeg: list[bytes]


class Source(Protocol):
    url: str
    format: str

    def read_index(self) -> SourceIndex: ...

    def iter_images(self) -> Iterator[ImageBatch]: ...


def read_label_relationship(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, str]:
    """Parse ``label_relationship.txt``: one ``fine_label -> coarse_label`` a line."""
    if not fs.exists(path):
        raise SourceError(f"{path}: missing; it maps each fine-grained label to its coarse label")
    relationship: dict[str, str] = {}
    with fs.open(path, "rt") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fine, arrow, coarse = line.strip().partition(" -> ")
            if not arrow or not fine or not coarse:
                raise SourceError(f"{path} line {number}: expected 'fine_label -> coarse_label', found {line.strip()!r}")
            if relationship.get(fine, coarse) != coarse:
                raise SourceError(f"{path} line {number}: {fine!r} has two parents, {relationship[fine]!r} and {coarse!r}")
            relationship[fine] = coarse
    if not relationship:
        raise SourceError(f"{path}: empty")
    return relationship


def open_source(url: str, storage_options: dict[str, Any] | None = None) -> Source:
    """The source at ``url``, recognised by the files it holds."""
    from .hf_parquet import HFParquetSource

    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        raise SourceError(f"{url}: no such source folder")
    if HFParquetSource.recognises(fs, path):
        return HFParquetSource(url, storage_options)
    raise SourceError(f"{url}: not a FLAIR source; expected data/*.parquet (Hugging Face apple/flair layout)")
