"""URLs to zarr stores: any fsspec URL or a local path, storage options passed
straight through to the filesystem (s3fs honours the standard AWS environment
such as ``AWS_ENDPOINT_URL``)."""

from __future__ import annotations

import json
import os
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


# s3fs storage option -> obstore S3Store setting
_OBSTORE_S3 = {"key": "access_key_id", "secret": "secret_access_key", "token": "session_token", "endpoint_url": "endpoint"}


def open_store(url: str, storage_options: dict[str, Any] | None = None, read_only: bool = True) -> Store:
    """A zarr store for ``url``: LocalStore for paths, obstore for ``s3://``
    (one GET per object read, where s3fs sends a HEAD first), FsspecStore
    for every other URL or for S3 options only s3fs knows."""
    url = str(url)
    if is_local(url):
        if storage_options:
            raise ValueError(f"storage options {sorted(storage_options)} given for local path {url}")
        return zarr.storage.LocalStore(url.removeprefix("file://"), read_only=read_only)
    if url.startswith("s3://"):
        store = _obstore_s3(url, storage_options or {}, read_only)
        if store is not None:
            return store
    return zarr.storage.FsspecStore.from_url(url, storage_options=storage_options or {}, read_only=read_only)


def process_cache_key(url: str, storage_options: dict[str, Any] | None = None, **settings: Any) -> str:
    """A key for objects kept once per process, URL, options and settings
    (the process id, so that a forked worker does not reuse its parent's)."""
    return json.dumps([os.getpid(), str(url), storage_options or {}, settings], sort_keys=True, default=str)


_shared: dict[str, Store] = {}


def shared_store(url: str, storage_options: dict[str, Any] | None = None) -> Store:
    """A read-only store for ``url``, one per process and URL: per-user reads
    reuse its connections instead of opening new ones (a new S3 client per
    read costs a connection set-up each time)."""
    key = process_cache_key(url, storage_options)
    if key not in _shared:
        _shared[key] = open_store(url, storage_options, read_only=True)
    return _shared[key]


def _obstore_s3(url: str, options: dict[str, Any], read_only: bool) -> Store | None:
    """The obstore S3 store for ``url`` with s3fs-style ``options`` (and the
    standard AWS environment, which obstore reads itself); None if an option
    has no obstore equivalent."""
    from obstore.store import S3Store

    config: dict[str, Any] = {}
    for key, value in options.items():
        if key in _OBSTORE_S3:
            config[_OBSTORE_S3[key]] = value
        elif key == "anon":
            config["skip_signature"] = bool(value)
        elif key == "client_kwargs" and set(value) <= {"region_name"}:
            config["region"] = value["region_name"]
        else:
            return None
    endpoint = config.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_options = {"allow_http": True} if endpoint and endpoint.startswith("http://") else {}
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    s3 = S3Store(bucket, prefix=prefix.strip("/") or None, client_options=client_options, **config)
    return zarr.storage.ObjectStore(s3, read_only=read_only)


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
