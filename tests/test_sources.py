"""Every public form of FLAIR round-trips: the same synthetic dataset in
Hugging Face parquet, Apple's download (tarballs or extracted folder) and
pfl-research's HDF5 gives the same store, local and on S3."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import s3fs

import flair_zarr
from flair_zarr import format as fmt
from flair_zarr.sources import SourceError, open_source
from flair_zarr.verify import verify


@pytest.fixture(scope="module")
def reference(local_store):
    return flair_zarr.open_dataset(local_store)


def _label_names(ds, user):
    one = ds.flair.user(user)
    coarse = [sorted(ds[fmt.LABEL].values[row]) for row in one[fmt.LABELS].values]
    fine = [sorted(ds[fmt.FINE_LABEL].values[row]) for row in one[fmt.FINE_GRAINED_LABELS].values]
    return coarse, fine


@pytest.mark.parametrize("form", ["apple-raw", "apple-extracted"])
def test_apple_forms_give_the_hf_store(form, sources, reference, tmp_path):
    dest = str(tmp_path / "store.zarr")
    flair_zarr.ingest(str(sources[form]), dest, block_images=64)
    ds = flair_zarr.open_dataset(dest)
    assert ds.attrs["source"]["format"] == "apple-raw"
    np.testing.assert_array_equal(ds[fmt.IMAGE_ID].values, reference[fmt.IMAGE_ID].values)
    np.testing.assert_array_equal(ds[fmt.LABELS].values, reference[fmt.LABELS].values)
    np.testing.assert_array_equal(ds[fmt.FINE_GRAINED_LABELS].values, reference[fmt.FINE_GRAINED_LABELS].values)
    for user in ds.flair.users():
        assert ds.flair.jpeg_bytes(user) == reference.flair.jpeg_bytes(user)
    assert verify(dest, source=str(sources[form])).ok


def test_pfl_hdf5_pixels_stored_losslessly(sources, reference, tmp_path):
    dest = str(tmp_path / "store.zarr")
    flair_zarr.ingest(str(sources["pfl-hdf5"]), dest)
    ds = flair_zarr.open_dataset(dest)
    assert ds.attrs["image_encoding"]["source_bytes"] is False
    assert ds.attrs["image_encoding"]["codec"] == "imagecodecs_webp"
    np.testing.assert_array_equal(ds[fmt.IMAGE_ID].values, reference[fmt.IMAGE_ID].values)
    with h5py.File(next(sources["pfl-hdf5"].glob("*.hdf5"))) as h5:
        for user in ds.flair.users():
            partition = str(ds[fmt.USER_PARTITION].sel(user=user).item())
            np.testing.assert_array_equal(ds.flair.user(user)[fmt.IMAGE].values, h5[f"/{partition}/{user}/images"][()])
            # the HDF5 pixels are Pillow's decode of the same JPEGs
            np.testing.assert_array_equal(ds.flair.user(user)[fmt.IMAGE].values, reference.flair.user(user)[fmt.IMAGE].values)
            assert _label_names(ds, user) == _label_names(reference, user)
    with pytest.raises(ValueError, match="no source JPEG bytes"):
        ds.flair.jpeg_bytes(ds.flair.users()[0])
    assert verify(dest, source=str(sources["pfl-hdf5"])).ok


def test_sources_from_s3(sources, s3, reference):
    fs = s3fs.S3FileSystem(**s3)
    for form in ("apple-raw", "pfl-hdf5"):
        fs.put(str(sources[form]), f"flair/src-{form}", recursive=True)
        dest = f"s3://flair/from-{form}.zarr"
        flair_zarr.ingest(f"s3://flair/src-{form}", dest, storage_options=s3, source_storage_options=s3)
        ds = flair_zarr.open_dataset(dest, storage_options=s3)
        np.testing.assert_array_equal(ds[fmt.IMAGE_ID].values, reference[fmt.IMAGE_ID].values)
        user = ds.flair.users("test")[0]
        np.testing.assert_array_equal(ds.flair.user(user)[fmt.IMAGE].values, reference.flair.user(user)[fmt.IMAGE].values)
        assert not fs.exists(f"flair/from-{form}.zarr/_ingest")  # staging and markers removed at commit
        report = verify(dest, s3, source=f"s3://flair/src-{form}", source_storage_options=s3)
        assert report.ok, report.summary()


def test_format_detection_and_override(sources):
    assert open_source(str(sources["apple-raw"])).format == "apple-raw"
    assert open_source(str(sources["pfl-hdf5"])).format == "pfl-hdf5"
    assert open_source(str(sources["hf-parquet"])).format == "hf-parquet"
    assert open_source(str(sources["apple-raw"]), source_format="apple-raw").format == "apple-raw"
    with pytest.raises(SourceError, match="no parquet files"):
        open_source(str(sources["apple-raw"]), source_format="hf-parquet")
    with pytest.raises(SourceError, match="unknown source format 'tfrecord'"):
        open_source(str(sources["apple-raw"]), source_format="tfrecord")


def test_verify_catches_a_corrupted_shard_and_label_chunk(local_store, tmp_path):
    import shutil

    from flair_zarr.cli import main

    dest = tmp_path / "corrupt.zarr"
    shutil.copytree(local_store, dest)
    assert verify(str(dest)).ok
    ds = flair_zarr.open_dataset(str(dest))
    victim = ds.flair.users()[5]
    shard = dest / "image" / "c" / "5" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify(str(dest))
    assert not report.ok
    assert report.problems == [f"user {victim}: shard object image/c/5/0/0/0 differs from its checksum"]
    assert main(["verify", str(dest)]) == 2

    labels_chunk = dest / "labels" / "c" / "1" / "0"
    labels_chunk.write_bytes(labels_chunk.read_bytes()[:-3] + b"xyz")
    assert any("labels unreadable" in p or "labels differ" in p for p in verify(str(dest)).problems)


def test_verify_against_source_catches_a_changed_source_image(local_store, source, tmp_path):
    """A store that no longer matches its source (here: one source JPEG re-encoded)."""
    import io
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    changed = tmp_path / "changed"
    shutil.copytree(source, changed)
    path = sorted((changed / "data").glob("val-*.parquet"))[0]
    table = pq.read_table(path)
    rows = table.to_pylist()
    pixels = Image.open(io.BytesIO(rows[0]["image"]["bytes"]))
    out = io.BytesIO()
    pixels.save(out, format="JPEG", quality=50)
    rows[0]["image"]["bytes"] = out.getvalue()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    report = verify(local_store, source=str(changed))
    assert report.problems == [f"image_id {rows[0]['image_id']}: stored image differs from the source"]


def test_verify_catches_a_coordinate_array_that_disagrees_with_the_index(local_store, tmp_path):
    """open_dataset reads coordinates from coordinates.npz, xr.open_zarr from the arrays: verify holds them equal."""
    import shutil

    import zarr

    dest = tmp_path / "edited.zarr"
    shutil.copytree(local_store, dest)
    image_id = zarr.open_array(str(dest / "image_id"), mode="r+")
    image_id[3] = image_id[3] + 1
    assert verify(str(dest)).problems == ["coordinate image_id: the array differs from the store's coordinates.npz"]
