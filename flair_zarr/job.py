"""The bookkeeping of an ingest in progress, kept under ``_ingest/`` in the
destination: the plan it was started with, one marker per finished task, and
staging space. A re-run with the same plan resumes from the markers; the
folder is deleted once the store is committed."""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import fsspec

from .sources import Staging
from .storage import StoreExistsError, filesystem

JOB_FOLDER = "_ingest"
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
ROOT_METADATA = "zarr.json"  # written once, at commit


@dataclass
class IngestJob:
    url: str
    storage_options: dict[str, Any] | None
    fs: fsspec.AbstractFileSystem
    root: str
    committed: bool = False

    @classmethod
    def prepare(cls, url: str, storage_options: dict[str, Any] | None, plan: dict[str, Any], overwrite: bool) -> IngestJob:
        """Start, resume or refuse: a committed store or another ingest's
        leftovers are only replaced with ``overwrite``."""
        fs, root = filesystem(url, storage_options)
        job = cls(url, storage_options, fs, root)
        if fs.exists(root) and fs.ls(root, detail=False):
            stored = job._read(posixpath.join(JOB_FOLDER, "plan.json"))
            committed = fs.exists(posixpath.join(root, ROOT_METADATA))
            if overwrite:
                fs.rm(root, recursive=True)
                fs.invalidate_cache()
            elif stored == plan:
                job.committed = committed
                return job
            elif stored is not None:
                raise StoreExistsError(f"{url} holds an unfinished ingest started with other arguments or another source; "
                                       "pass overwrite=True (--overwrite) to start over")
            else:
                raise StoreExistsError(f"{url} already exists and is not empty; pass overwrite=True (--overwrite) to replace it")
        job._write(posixpath.join(JOB_FOLDER, "plan.json"), plan)
        return job

    @property
    def staging(self) -> Staging:
        return Staging(posixpath.join(self.url, JOB_FOLDER, "staging"), self.storage_options)

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, key)

    def _read(self, key: str) -> Any:
        try:
            with self.fs.open(self._path(key), "rb") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):  # absent, or cut short by a kill
            return None

    def _write(self, key: str, value: Any) -> None:
        path = self._path(key)
        if "file" in self.fs.protocol:
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.fs.pipe_file(path, json.dumps(value).encode())

    def marker(self, kind: str, number: int) -> Any:
        """The result a finished task recorded, or None."""
        return self._read(posixpath.join(JOB_FOLDER, kind, f"{number:06d}.json"))

    def mark(self, kind: str, number: int, result: Any) -> None:
        self._write(posixpath.join(JOB_FOLDER, kind, f"{number:06d}.json"), result)

    def remove_interrupted_writes(self) -> None:
        """Delete the temporary files of local writes cut short by a kill
        (zarr's LocalStore writes ``key.<uuid hex>.partial`` and renames it);
        object stores never show a partial object."""
        if "file" not in self.fs.protocol:
            return
        for path in self.fs.find(self.root):
            if _PARTIAL.search(path):
                self.fs.rm_file(path)

    def finish(self) -> None:
        """Delete the bookkeeping of a committed store."""
        path = self._path(JOB_FOLDER)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
