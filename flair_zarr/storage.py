"""URLs to zarr stores: any fsspec URL or a local path, storage options passed
straight through to the filesystem (s3fs honours the standard AWS environment
such as ``AWS_ENDPOINT_URL``)."""

from __future__ import annotations

import json
from typing import Any

import fsspec
import zarr.storage
from fsspec.core import url_to_fs
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync


class StoreExistsError(FileExistsError):
    """The destination already holds data and overwrite was not asked for."""


def is_local(url: str) -> bool:
    return "://" not in str(url) or str(url).startswith("file://")


def open_store(url: str, storage_options: dict[str, Any] | None = None, read_only: bool = True) -> Store:
    """A zarr store for ``url``: LocalStore for paths, FsspecStore otherwise."""
    url = str(url)
    if is_local(url):
        if storage_options:
            raise ValueError(f"storage options {sorted(storage_options)} given for local path {url}")
        return zarr.storage.LocalStore(url.removeprefix("file://"), read_only=read_only)
    return zarr.storage.FsspecStore.from_url(url, storage_options=storage_options or {}, read_only=read_only)


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path within it for ``url``."""
    return url_to_fs(str(url), **(storage_options or {}))


def put(store: Store, key: str, data: bytes) -> None:
    """Write one object (blocking)."""
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def get(store: Store, key: str) -> bytes:
    """Read one whole object (blocking); KeyError if it is missing."""
    buffer = sync(store.get(key, prototype=default_buffer_prototype()))
    if buffer is None:
        raise KeyError(key)
    return buffer.to_bytes()


def parse_storage_option(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is read as JSON when it can
    be (``true``, ``3``, ``{"a": 1}``) and kept as a string otherwise.
    A dotted KEY (``client_kwargs.region_name``) builds a nested dict."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"storage option {item!r} is not KEY=VALUE")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, parsed


def storage_options_from(items: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_storage_option(item)
        *parents, leaf = key.split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return options
