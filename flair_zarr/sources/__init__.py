"""FLAIR sources: each public distribution of the dataset is read by its own
module into the same things, so the writer never needs to know which it is:

- an index of every record (everything but the pixels), one row per record;
- parts to scan: units of the source that one task reads through once,
  yielding each record's image with a *location* (three integers saying where
  it can be read again) or a bad record with its reason;
- ``read``: the images at a list of locations, for the tasks that write shards.

Images are JPEG file bytes where the source has them, or decoded pixels
(``has_jpeg`` false) for the pfl-research HDF5 form.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..storage import filesystem

LABEL_RELATIONSHIP_FILE = "label_relationship.txt"
FORMATS = ("hf-parquet", "apple-raw", "pfl-hdf5")

Location = tuple[int, int, int]
Image = bytes | np.ndarray


class SourceError(ValueError):
    """The source is missing a file, has the wrong schema or bad records."""


@dataclass(frozen=True)
class BadRecord:
    """A record (``row`` in the index) or a source entry that is not a record
    (``row`` None, e.g. a tar member) that cannot be ingested, and why."""

    row: int | None
    reason: str
    where: str = ""


@dataclass(frozen=True)
class SourceIndex:
    """One row per record, in source order."""

    user_id: np.ndarray  # str
    partition: np.ndarray  # str
    image_id: np.ndarray  # int64
    labels: pa.ListArray  # list<string>, coarse
    fine_grained_labels: pa.ListArray  # list<string>
    coarse_vocabulary: list[str]  # sorted
    fine_vocabulary: list[str]  # sorted
    label_relationship: dict[str, str]  # fine label -> coarse label; empty if the source has none
    row_origin: list[tuple[str, int]]  # (file, first row) of each file, in row order
    bad: list[BadRecord] = field(default_factory=list)  # records the source could not index
    locations: np.ndarray | None = None  # (n, 3) int64, for sources read without a scan

    def __len__(self) -> int:
        return len(self.image_id)

    def where(self, row: int) -> str:
        starts = [start for _, start in self.row_origin]
        file_number = int(np.searchsorted(starts, row, side="right")) - 1
        name, start = self.row_origin[file_number]
        return f"{name} record {row - start}"


@dataclass(frozen=True)
class Staging:
    """Scratch space beside the store for sources that must be copied before
    they can be read by range (gzip tarballs). Without a ``url`` nothing is
    kept (a scan made only to check the source)."""

    url: str | None
    storage_options: dict[str, Any] | None = None

    def open(self, name: str) -> Any:
        """A binary file to write ``name`` into (a sink when nothing is kept)."""
        if self.url is None:
            return _Sink()
        fs, path = self.path(name)
        return fs.open(path, "wb")

    def path(self, name: str) -> tuple[fsspec.AbstractFileSystem, str]:
        if self.url is None:
            raise ValueError("this scan keeps no staged copies")
        fs, root = filesystem(self.url, self.storage_options)
        if "file" in fs.protocol:
            fs.makedirs(root, exist_ok=True)
        return fs, posixpath.join(root, name)


class _Sink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class Source(Protocol):
    url: str
    format: str
    has_jpeg: bool

    def fingerprint(self) -> list[Any]: ...

    def read_index(self) -> SourceIndex: ...

    def parts(self, index: SourceIndex) -> list[Any]: ...

    def scan(self, part: Any, image_ids: np.ndarray, staging: Staging) -> Iterator[tuple[int, Image, Location] | BadRecord]: ...

    def read(self, locations: np.ndarray, staging: Staging) -> list[Image]: ...


@dataclass(frozen=True)
class LabelEntries:
    """The labels of some records as (sample, column) pairs of a multi-hot
    matrix, sorted by sample: built once, cut into dense rows per block or user."""

    samples: np.ndarray
    columns: np.ndarray  # -1 for a label outside the vocabulary
    width: int

    @classmethod
    def of(cls, lists: pa.ListArray, vocabulary: list[str], rows: np.ndarray) -> LabelEntries:
        """Entries of the records at ``rows``; sample i is ``rows[i]``."""
        taken = lists.take(pa.array(rows))
        columns = pc.index_in(pc.list_flatten(taken), value_set=pa.array(vocabulary, pa.string()))
        return cls(pc.list_parent_indices(taken).to_numpy(), columns.fill_null(-1).to_numpy(), len(vocabulary))

    def dense(self, start: int, stop: int) -> np.ndarray:
        """Multi-hot rows of samples [start, stop)."""
        lo, hi = np.searchsorted(self.samples, [start, stop])
        samples, columns = self.samples[lo:hi], self.columns[lo:hi]
        known = columns >= 0
        rows = np.zeros((stop - start, self.width), dtype=bool)
        rows[samples[known] - start, columns[known]] = True
        return rows


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


def vocabularies(relationship: dict[str, str]) -> tuple[list[str], list[str]]:
    """Sorted coarse and fine vocabularies of a label relationship."""
    return sorted(set(relationship.values())), sorted(relationship)


def string_lists(values: list[list[str]]) -> pa.ListArray:
    return pa.array(values, type=pa.list_(pa.string()))


def fingerprint_files(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[Any]:
    """Names and sizes of a source's files: what a resumed ingest must find unchanged."""
    return [[posixpath.basename(p), int(fs.size(p))] for p in sorted(paths)]


def open_source(url: str, storage_options: dict[str, Any] | None = None, source_format: str | None = None) -> Source:
    """The source at ``url``: the given format, or the one its files show."""
    from .apple_raw import AppleRawSource
    from .hf_parquet import HFParquetSource
    from .pfl_hdf5 import PflHDF5Source

    classes = {cls.format: cls for cls in (HFParquetSource, AppleRawSource, PflHDF5Source)}
    if source_format is not None:
        if source_format not in classes:
            raise SourceError(f"unknown source format {source_format!r}; one of {FORMATS}")
        return classes[source_format](url, storage_options)
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        raise SourceError(f"{url}: no such source")
    for cls in classes.values():
        if cls.recognises(fs, path):
            return cls(url, storage_options)
    raise SourceError(
        f"{url}: not a FLAIR source; expected data/*.parquet (Hugging Face apple/flair), "
        "labels_and_metadata.json (Apple ml-flair download) or an HDF5 file (pfl-research)"
    )
