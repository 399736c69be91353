"""The intake datatype of the repository's catalog.yaml: intake's Zarr, with
the catalog's default URL, since intake's ``{env(...)}`` has no fallback."""

from __future__ import annotations

import os

from intake.readers.datatypes import Zarr

URL_ENV = "FLAIR_ZARR_URL"
# What `make demo` writes, relative to the working directory.
DEMO_STORE = "demo-data/flair.zarr"


class FlairStore(Zarr):
    """A flair-zarr store: ``url``, else $FLAIR_ZARR_URL, else the demo's store."""

    def __init__(self, url: str | None = None, storage_options: dict | None = None, root: str = "",
                 metadata: dict | None = None):
        super().__init__(url or os.environ.get(URL_ENV) or DEMO_STORE, storage_options, root, metadata)
