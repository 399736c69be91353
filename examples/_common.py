"""What every example takes: the store URL, its storage options, and the Dask
cluster to run on (``--scheduler ADDRESS``, else a LocalCluster)."""

from __future__ import annotations

import argparse

DEFAULT_STORE = "demo-data/flair.zarr"  # what `make demo` writes


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser headed by the example's docstring, with the common arguments."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", nargs="?", default=DEFAULT_STORE, help=f"the store: path or fsspec URL (default {DEFAULT_STORE})")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="storage option, e.g. anon=true or endpoint_url=http://127.0.0.1:9000")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (default: a LocalCluster, one worker per core)")
    return p

