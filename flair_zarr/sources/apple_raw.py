"""Apple's ml-flair download: ``labels_and_metadata.json`` (a list of records,
``image_id`` a string of digits), ``label_relationship.txt``, and the images
either as gzip tarballs ``small_images-NN.tar.gz`` (members
``small_images/{image_id}.jpg``) or as an extracted ``small_images/`` folder.

Gzip tarballs cannot be seeked, so each is a part read once by one task; its
images are copied into a staging blob beside the store and read back from
there by range when shards are written. The folder is read file by file.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..storage import filesystem
from . import (
    LABEL_RELATIONSHIP_FILE, BadRecord, Image, Location, SourceError, SourceIndex, Staging,
    fingerprint_files, read_label_relationship, string_lists, vocabularies,
)

METADATA_FILE = "labels_and_metadata.json"
IMAGE_FOLDER = "small_images"
PART_ROWS = 4096
FOLDER = -1  # first integer of a location read from the extracted folder
_MEMBER = re.compile(r"(\d+)\.jpg")
_FIELDS = ("user_id", "image_id", "labels", "partition", "fine_grained_labels")


class AppleRawSource:
    format = "apple-raw"
    has_jpeg = True

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = str(url)
        self._options = storage_options or {}
        self._fs, self._root = filesystem(self.url, storage_options)
        if not self._fs.exists(posixpath.join(self._root, METADATA_FILE)):
            raise SourceError(f"{self.url}: no {METADATA_FILE}")
        self.tarballs = sorted(self._fs.glob(posixpath.join(self._root, "**", "small_images-*.tar.gz")))
        self._folder = posixpath.join(self._root, IMAGE_FOLDER)
        if not self.tarballs and not self._fs.isdir(self._folder):
            raise SourceError(f"{self.url}: no small_images-NN.tar.gz tarballs and no {IMAGE_FOLDER}/ folder")

    @staticmethod
    def recognises(fs: Any, root: str) -> bool:
        return fs.exists(posixpath.join(root, METADATA_FILE))

    def fingerprint(self) -> list[Any]:
        files = [posixpath.join(self._root, METADATA_FILE), *self.tarballs]
        return fingerprint_files(self._fs, files) + ([] if self.tarballs else [[IMAGE_FOLDER, "folder"]])

    def read_index(self) -> SourceIndex:
        relationship = read_label_relationship(self._fs, posixpath.join(self._root, LABEL_RELATIONSHIP_FILE))
        coarse, fine = vocabularies(relationship)
        with self._fs.open(posixpath.join(self._root, METADATA_FILE), "rb") as f:
            records = json.load(f)
        if not isinstance(records, list):
            raise SourceError(f"{METADATA_FILE}: expected a JSON list of records, found {type(records).__name__}")
        columns: dict[str, list[Any]] = {name: [] for name in _FIELDS}
        bad = []
        for row, record in enumerate(records):
            missing = [name for name in _FIELDS if not isinstance(record, dict) or name not in record]
            if missing:
                bad.append(BadRecord(row, f"missing field(s) {', '.join(missing)}", f"{METADATA_FILE} record {row}"))
                record = {} if not isinstance(record, dict) else record
            image_id = str(record.get("image_id", ""))
            if not missing and not image_id.isdigit():
                bad.append(BadRecord(row, f"image_id {image_id!r} is not a number", f"{METADATA_FILE} record {row}"))
            columns["user_id"].append(str(record.get("user_id", "")))
            columns["partition"].append(str(record.get("partition", "")))
            columns["image_id"].append(int(image_id) if image_id.isdigit() else -1 - row)
            columns["labels"].append(list(record.get("labels") or []))
            columns["fine_grained_labels"].append(list(record.get("fine_grained_labels") or []))
        return SourceIndex(
            user_id=np.array(columns["user_id"], dtype=str),
            partition=np.array(columns["partition"], dtype=str),
            image_id=np.array(columns["image_id"], dtype=np.int64),
            labels=string_lists(columns["labels"]),
            fine_grained_labels=string_lists(columns["fine_grained_labels"]),
            coarse_vocabulary=coarse,
            fine_vocabulary=fine,
            label_relationship=relationship,
            row_origin=[(METADATA_FILE, 0)],
            bad=bad,
        )

    def parts(self, index: SourceIndex) -> list[Any]:
        if self.tarballs:
            return list(range(len(self.tarballs)))
        return [(start, min(start + PART_ROWS, len(index))) for start in range(0, len(index), PART_ROWS)]

    def scan(self, part: Any, image_ids: np.ndarray, staging: Staging) -> Iterator[tuple[int, Image, Location] | BadRecord]:
        if isinstance(part, tuple):
            yield from self._scan_folder(*part, image_ids)
        else:
            yield from self._scan_tarball(part, image_ids, staging)

    def _image_path(self, image_id: int) -> str:
        return posixpath.join(self._folder, f"{image_id}.jpg")

    def _scan_folder(self, start: int, stop: int, image_ids: np.ndarray) -> Iterator[tuple[int, Image, Location] | BadRecord]:
        rows = [r for r in range(start, stop) if image_ids[r] >= 0]
        paths = [self._image_path(int(image_ids[r])) for r in rows]
        contents = self._fs.cat(paths, on_error="return")
        for row, path in zip(rows, paths):
            data = contents.get(path)
            if isinstance(data, bytes):
                yield row, data, (FOLDER, int(image_ids[row]), 0)
            else:
                yield BadRecord(row, f"missing image file {IMAGE_FOLDER}/{image_ids[row]}.jpg")

    def _scan_tarball(self, number: int, image_ids: np.ndarray, staging: Staging) -> Iterator[tuple[int, Image, Location] | BadRecord]:
        order = np.argsort(image_ids)
        sorted_ids = image_ids[order]
        name = posixpath.basename(self.tarballs[number])
        offset = 0
        with self._fs.open(self.tarballs[number], "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar, staging.open(f"{number:05d}.bin") as out:
            for member in tar:
                if not member.isfile():
                    continue
                where = f"{name}:{member.name}"
                path = posixpath.normpath(member.name)
                if path.startswith(("/", "../")) or path == "..":
                    yield BadRecord(None, "tar member path escapes the folder", where)
                    continue
                match = _MEMBER.fullmatch(posixpath.basename(path))
                if not match or posixpath.dirname(path) != IMAGE_FOLDER:
                    yield BadRecord(None, f"not an image of the dataset ({IMAGE_FOLDER}/<image_id>.jpg)", where)
                    continue
                image_id = int(match.group(1))
                position = int(np.searchsorted(sorted_ids, image_id))
                if position == len(sorted_ids) or sorted_ids[position] != image_id:
                    yield BadRecord(None, f"image {image_id} has no record in {METADATA_FILE}", where)
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                out.write(data)
                yield int(order[position]), data, (number, offset, len(data))
                offset += len(data)

    def read(self, locations: np.ndarray, staging: Staging) -> list[Image]:
        images: list[Image | None] = [None] * len(locations)
        folder = np.flatnonzero(locations[:, 0] == FOLDER)
        if folder.size:
            paths = [self._image_path(int(i)) for i in locations[folder, 1]]
            contents = self._fs.cat(paths)
            for slot, path in zip(folder.tolist(), paths):
                images[slot] = contents[path]
        for number in np.unique(locations[locations[:, 0] != FOLDER, 0]).tolist():
            mine = np.flatnonzero(locations[:, 0] == number)
            fs, blob = staging.path(f"{number:05d}.bin")
            starts = locations[mine, 1]
            ends = starts + locations[mine, 2]
            for slot, data in zip(mine.tolist(), fs.cat_ranges([blob] * len(mine), starts.tolist(), ends.tolist())):
                images[slot] = data
        return images  # type: ignore[return-value]
