"""The five Dask examples in examples/, run as a user runs them: against a
store on the moto S3 server, on the test session's Dask cluster through
``--scheduler``, each result checked against the source."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import flair_zarr

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def s3_store(source, s3) -> str:
    url = "s3://flair/examples.zarr"
    flair_zarr.ingest(str(source), url, storage_options=s3, block_images=64)
    return url


@pytest.fixture(scope="module")
def run(s3, dask_cluster, tmp_path_factory):
    """Runs an example with the S3 server's storage options and the session's scheduler; returns its stdout."""
    options = [f"-o{key}={value}" for key, value in s3.items()]
    cwd = tmp_path_factory.mktemp("examples")

    def run_example(script: str, *args: str) -> str:
        result = subprocess.run([sys.executable, str(EXAMPLES / script), *args, *options, "--scheduler", dask_cluster.scheduler.address],
                                capture_output=True, text=True, timeout=600, cwd=cwd)
        assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    return run_example


def assert_png(path: Path) -> None:
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width > 100 and picture.height > 100


def test_quickstart_browses_one_user(run, s3_store, local_store, tmp_path):
    out = run("quickstart.py", s3_store, "--sheet", str(tmp_path / "user.png"))
    train = flair_zarr.open_dataset(local_store).flair.partition("train")
    sizes = train.user_count.values
    expected = str(train.user.values[np.argmax(np.where(sizes <= 48, sizes, 0))])
    assert f"user {expected} (train): {sizes[train.flair.users().index(expected)]} images" in out
    assert "partitions: train" in out
    assert_png(tmp_path / "user.png")


def test_label_statistics_match_the_source(run, s3_store, source_rows, tmp_path):
    out = run("label_statistics.py", s3_store, "--plot", str(tmp_path / "non_iid.png"), "--table", str(tmp_path / "per_user.csv"))
    assert "IID baseline" in out
    expected: dict[str, Counter] = {}
    for _, record in source_rows:
        expected.setdefault(record.user_id, Counter()).update(record.labels)
    with open(tmp_path / "per_user.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["user_id"] for r in rows} == set(expected)
    for row in rows:
        counts = {k: int(v) for k, v in row.items() if k not in ("user_id", "partition", "images", "distance")}
        assert {k: v for k, v in counts.items() if v} == dict(expected[row["user_id"]]), row["user_id"]
        assert int(row["images"]) == sum(1 for _, r in source_rows if r.user_id == row["user_id"])
        assert 0 <= float(row["distance"]) <= 1
    assert_png(tmp_path / "non_iid.png")


def test_normalisation_equals_numpy(run, s3_store, local_store, tmp_path):
    out = run("normalisation.py", s3_store, "--out", str(tmp_path / "norm.json"), "--compare-decode")
    assert "read and decode only" in out
    result = json.loads((tmp_path / "norm.json").read_text())
    pixels = flair_zarr.open_dataset(local_store).flair.partition("train").image.values.reshape(-1, 3).astype(np.float64)
    assert result["images"] * 256 * 256 == len(pixels) == result["pixels_per_channel"]
    np.testing.assert_allclose(result["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result["std"], pixels.std(axis=0), rtol=1e-9)


def test_thumbnail_store_is_user_aligned(run, s3_store, s3, local_store):
    dest = "s3://flair/thumbnails.zarr"
    run("thumbnails.py", s3_store, dest)
    thumbs = flair_zarr.open_dataset(dest, s3)
    source = flair_zarr.open_dataset(local_store)
    assert thumbs.thumbnail.chunks[0] == source.image.chunks[0]
    assert thumbs.thumbnail.shape == (source.sizes["sample"], 64, 64, 3)
    for name in ("user_id", "image_id", "partition", "labels"):
        np.testing.assert_array_equal(thumbs[name].values, source[name].values)
    images = source.image.values
    expected = np.stack([np.asarray(Image.fromarray(image).reduce(4)) for image in images])
    np.testing.assert_array_equal(thumbs.thumbnail.values, expected)


def test_fedavg_loss_falls(run, s3_store, tmp_path):
    out = run("fedavg.py", s3_store, "--rounds", "4", "--cohort", "8", "--history", str(tmp_path / "history.json"))
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2, 3, 4]
    assert history[0]["train_loss"] == pytest.approx(math.log(2))  # the model starts at zero
    assert history[-1]["validation_loss"] < history[0]["validation_loss"] < math.log(2)
    assert "round 4:" in out
