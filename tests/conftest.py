"""Shared fixtures: one small synthetic FLAIR source, a local store made from
it, and a moto S3 server on loopback."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import flair_zarr
from flair_zarr.synth import synth
from flair_zarr.testing import local_s3

SOURCE_USERS = 40


@dataclass(frozen=True)
class SourceRecord:
    user_id: str
    partition: str
    labels: list[str]
    fine_grained_labels: list[str]
    jpeg: bytes


def read_source(root: Path) -> list[tuple[int, SourceRecord]]:
    """(image_id, record) for every row in file order, read with pyarrow alone."""
    rows = []
    for path in sorted((root / "data").glob("*.parquet")):
        for r in pq.read_table(path).to_pylist():
            rows.append((r["image_id"], SourceRecord(r["user_id"], r["partition"], r["labels"], r["fine_grained_labels"], r["image"]["bytes"])))
    return rows


def pillow_pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


@pytest.fixture(scope="session", autouse=True)
def dask_cluster():
    """One LocalCluster for the whole run: ingest and verify use the client in hand."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source") / "flair"
    synth(root, users=SOURCE_USERS, seed=3, workers=1)
    return root


@pytest.fixture(scope="session")
def sources(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same synthetic FLAIR (seed, users) in every public form."""
    import tarfile

    out = {"hf-parquet": source}
    for layout in ("apple-raw", "pfl-hdf5"):
        out[layout] = tmp_path_factory.mktemp(layout) / "flair"
        synth(out[layout], users=SOURCE_USERS, seed=3, workers=1, layout=layout)
    extracted = tmp_path_factory.mktemp("apple-extracted") / "flair"
    extracted.mkdir()
    for name in ("labels_and_metadata.json", "label_relationship.txt"):
        (extracted / name).write_bytes((out["apple-raw"] / name).read_bytes())
    for tarball in sorted((out["apple-raw"] / "images" / "small").glob("*.tar.gz")):
        with tarfile.open(tarball) as tar:
            tar.extractall(extracted, filter="data")
    out["apple-extracted"] = extracted
    return out


@pytest.fixture(scope="session")
def source_rows(source: Path) -> list[tuple[int, SourceRecord]]:
    return read_source(source)


@pytest.fixture(scope="session")
def local_store(source: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    dest = str(tmp_path_factory.mktemp("stores") / "flair.zarr")
    flair_zarr.ingest(str(source), dest, block_images=64)
    return dest


@pytest.fixture(scope="session")
def s3():
    """Storage options for a moto S3 server on 127.0.0.1 with bucket ``flair``."""
    with local_s3("flair") as options:
        yield options
