"""The same round trip through a moto S3 server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import s3fs

import flair_zarr
from flair_zarr import format as fmt
from flair_zarr.cli import main
from flair_zarr.storage import StoreExistsError

from .conftest import pillow_pixels


@pytest.fixture(scope="module")
def s3_store(source, s3) -> str:
    url = "s3://flair/roundtrip.zarr"
    flair_zarr.ingest(str(source), url, storage_options=s3, block_images=64)
    return url


def test_s3_round_trip_pixels_and_bytes(s3_store, s3, source_rows):
    ds = flair_zarr.open_dataset(s3_store, storage_options=s3)
    by_id = dict(source_rows)
    assert ds.sizes[fmt.SAMPLE] == len(source_rows)
    images = ds[fmt.IMAGE].values
    for sample, image_id in enumerate(ds[fmt.IMAGE_ID].values.tolist()):
        np.testing.assert_array_equal(images[sample], pillow_pixels(by_id[image_id].jpeg))
    for user in ds.flair.users():
        ids = ds.flair.user(user)[fmt.IMAGE_ID].values.tolist()
        assert ds.flair.jpeg_bytes(user) == [by_id[i].jpeg for i in ids]


def test_s3_store_matches_local_store(s3_store, s3, local_store):
    remote = flair_zarr.open_dataset(s3_store, storage_options=s3)
    local = flair_zarr.open_dataset(local_store)
    user = local.flair.users("test")[-1]
    np.testing.assert_array_equal(remote.flair.user(user)[fmt.IMAGE].values, local.flair.user(user)[fmt.IMAGE].values)
    np.testing.assert_array_equal(remote[fmt.FINE_GRAINED_LABELS].values, local[fmt.FINE_GRAINED_LABELS].values)
    assert remote[fmt.IMAGE].chunks == local[fmt.IMAGE].chunks


def test_s3_refuses_to_overwrite(s3_store, s3, source):
    with pytest.raises(StoreExistsError):
        flair_zarr.ingest(str(source), s3_store, storage_options=s3)


def test_source_read_from_s3(source, s3, local_store):
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(source), "flair/source", recursive=True)
    flair_zarr.ingest("s3://flair/source", "s3://flair/from-s3.zarr", storage_options=s3, source_storage_options=s3, block_images=64)
    remote = flair_zarr.open_dataset("s3://flair/from-s3.zarr", storage_options=s3)
    local = flair_zarr.open_dataset(local_store)
    np.testing.assert_array_equal(remote[fmt.IMAGE_ID].values, local[fmt.IMAGE_ID].values)
    user = local.flair.users()[0]
    assert remote.flair.jpeg_bytes(user) == local.flair.jpeg_bytes(user)


def test_cli_honours_aws_environment(source, s3):
    """The standard AWS variables, in a fresh process whose Dask workers inherit them."""
    env = {**os.environ, "AWS_ENDPOINT_URL": s3["endpoint_url"], "AWS_ACCESS_KEY_ID": s3["key"],
           "AWS_SECRET_ACCESS_KEY": s3["secret"], "AWS_DEFAULT_REGION": "us-east-1"}
    cli = [sys.executable, "-m", "flair_zarr.cli"]
    subprocess.run([*cli, "ingest", str(source), "s3://flair/cli-env.zarr"], env=env, check=True, capture_output=True)
    out = subprocess.run([*cli, "info", "s3://flair/cli-env.zarr"], env=env, check=True, capture_output=True, text=True).stdout
    assert "users 40" in out and "one per user" in out


def test_cli_storage_options(source, s3, capsys):
    options = [f"-o=endpoint_url={s3['endpoint_url']}", f"-o=key={s3['key']}", f"-o=secret={s3['secret']}"]
    assert main(["ingest", str(source), "s3://flair/cli-opts.zarr", *options]) == 0
    assert main(["info", "s3://flair/cli-opts.zarr", *options]) == 0
    assert "images" in capsys.readouterr().out
    assert main(["ingest", str(source), "s3://flair/cli-opts.zarr", *options]) == 1
    assert main(["ingest", str(source), "s3://flair/cli-opts.zarr", "--overwrite", *options]) == 0


def test_open_dataset_is_two_requests(s3_store, s3):
    """The consolidated root metadata and the coordinate index, nothing else (no v2 probing)."""
    from flair_zarr.testing import RequestLog

    with RequestLog() as log:
        ds = flair_zarr.open_dataset(s3_store, storage_options=s3)
    assert log.requests == ["GET /flair/roundtrip.zarr/zarr.json", "GET /flair/roundtrip.zarr/coordinates.npz"]
    assert len(ds.flair.users()) == ds.attrs["counts"]["users"]


def test_one_request_per_user_read(s3_store, s3):
    """A user's images are one GET of that user's shard object; its labels one GET of its block."""
    from flair_zarr.testing import RequestLog

    ds = flair_zarr.open_dataset(s3_store, storage_options=s3)
    for position in (0, 7, len(ds.flair.users()) - 1):
        user = ds.flair.users()[position]
        with RequestLog() as log:
            images = ds.flair.user(user)[fmt.IMAGE].values
        assert log.requests == [f"GET /flair/roundtrip.zarr/image/c/{position}/0/0/0"]
        assert len(images) == int(ds[fmt.USER_COUNT].values[position])
        with RequestLog() as log:
            ds.flair.user(user)[fmt.LABELS].values
        assert len(log.requests) == 1 and log.requests[0].startswith("GET /flair/roundtrip.zarr/labels/c/")


def test_load_user_is_its_shard_and_its_label_rows(s3_store, s3):
    """FederatedFLAIR.load_user: one GET of the user's own shard object, one of its label block, nothing else."""
    from flair_zarr.fl import FederatedFLAIR
    from flair_zarr.testing import RequestLog

    clients = FederatedFLAIR(s3_store, storage_options=s3)
    everyone = clients.dataset.flair.users()
    for user in (clients.users[0], clients.users[-1]):
        with RequestLog() as log:
            images, targets = clients.load_user(user)
        position = everyone.index(user)
        assert sorted(log.requests)[0] == f"GET /flair/roundtrip.zarr/image/c/{position}/0/0/0"
        assert len(log.requests) == 2 and sorted(log.requests)[1].startswith("GET /flair/roundtrip.zarr/labels/c/")
        assert len(images) == len(targets) == clients.num_images(user)
