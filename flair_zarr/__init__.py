"""flair-zarr: FLAIR as a user-aligned Zarr v3 store, read lazily with xarray.

Importing the package switches on zarr's rectilinear chunk grids (in this
process and, through the environment, in processes it starts), so a plain
``xr.open_zarr(url)`` decodes the store too.
"""

from .format import enable_zarr_features

enable_zarr_features()

from . import accessor  # noqa: E402,F401  (registers ds.flair)
from .reader import open_dataset  # noqa: E402
from .writer import ingest  # noqa: E402
from .derived import write_aligned  # noqa: E402

__all__ = ["ingest", "open_dataset", "write_aligned"]
__version__ = "0.1.0"
