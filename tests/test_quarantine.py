"""--on-bad-record=skip: the rest is ingested, every bad record is listed in
quarantine.json with its reason, and ingested + quarantined = source records."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import flair_zarr
from flair_zarr.cli import main
from flair_zarr.validate import BadRecordsError
from flair_zarr.verify import verify


def _gray_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("L", (256, 256), 90).save(out, format="JPEG")
    return out.getvalue()


def _quarantine(dest: Path) -> dict:
    return json.loads((dest / "quarantine.json").read_text())


def test_hf_source_with_many_bad_records(source, source_rows, tmp_path, capsys):
    root = tmp_path / "bad"
    shutil.copytree(source, root)
    path = sorted((root / "data").glob("train-*.parquet"))[1]
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["image"]["bytes"] = rows[0]["image"]["bytes"][:-300]  # truncated
    rows[1]["image"]["bytes"] = _gray_jpeg()
    rows[2]["labels"] = rows[2]["labels"] + ["weather"]  # not a FLAIR label
    rows[3]["labels"] = []
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    bad_ids = {r["image_id"]: r for r in rows[:4]}

    with pytest.raises(BadRecordsError, match=r"2 bad record\(s\) and 0 bad source entries in the index \(images not read yet\)"):
        flair_zarr.ingest(str(root), str(tmp_path / "refused.zarr"))

    dest = tmp_path / "skipped.zarr"
    report = flair_zarr.ingest(str(root), str(dest), on_bad_record="skip")
    assert report.quarantined == 4
    assert report.images + report.quarantined == len(source_rows)
    quarantine = _quarantine(dest)
    assert quarantine["source_records"] == len(source_rows)
    reasons = {entry["image_id"]: entry["reason"] for entry in quarantine["records"]}
    assert set(reasons) == set(bad_ids)
    assert "truncated" in reasons[rows[0]["image_id"]]
    assert "L (grayscale)" in reasons[rows[1]["image_id"]]
    assert "coarse label 'weather' is not in the vocabulary" in reasons[rows[2]["image_id"]]
    assert "empty coarse label list" in reasons[rows[3]["image_id"]]
    ds = flair_zarr.open_dataset(str(dest))
    assert not set(ds["image_id"].values.tolist()) & set(bad_ids)
    assert ds.attrs["counts"]["quarantined_records"] == 4

    assert main(["info", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"{len(source_rows):,} in the source: {report.images:,} ingested + 4 quarantined" in out
    assert verify(str(dest), source=str(root)).ok


def test_apple_missing_file_escaping_member_and_duplicates(sources, tmp_path):
    root = tmp_path / "apple"
    shutil.copytree(sources["apple-extracted"], root)
    records = json.loads((root / "labels_and_metadata.json").read_text())
    missing = records[3]["image_id"]
    (root / "small_images" / f"{missing}.jpg").unlink()
    records.append(dict(records[7]))  # the same record twice
    (root / "labels_and_metadata.json").write_text(json.dumps(records))

    with pytest.raises(BadRecordsError, match=r"missing image file|duplicate image_id"):
        flair_zarr.ingest(str(root), str(tmp_path / "refused.zarr"))
    dest = tmp_path / "store.zarr"
    report = flair_zarr.ingest(str(root), str(dest), on_bad_record="skip")
    quarantine = _quarantine(dest)
    reasons = [(e["image_id"], e["reason"]) for e in quarantine["records"]]
    assert (int(missing), f"missing image file small_images/{missing}.jpg") in reasons
    assert sum(f"duplicate image_id {records[7]['image_id']}" in r for _, r in reasons) == 2
    assert report.images + report.quarantined == len(records)


def test_tar_member_escaping_the_folder(sources, tmp_path):
    root = tmp_path / "apple"
    shutil.copytree(sources["apple-raw"], root)
    with tarfile.open(root / "images" / "small" / "small_images-99.tar.gz", "w:gz") as tar:
        data = b"\xff\xd8not really"
        info = tarfile.TarInfo("small_images/../../../etc/evil.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BadRecordsError, match=r"small_images-99.tar.gz:small_images/\.\./\.\./\.\./etc/evil.jpg: tar member path escapes the folder"):
        flair_zarr.ingest(str(root), str(tmp_path / "refused.zarr"))
    dest = tmp_path / "store.zarr"
    report = flair_zarr.ingest(str(root), str(dest), on_bad_record="skip")
    quarantine = _quarantine(dest)
    assert report.quarantined == 0 and quarantine["other_entries"][0]["reason"] == "tar member path escapes the folder"
    assert not (tmp_path / "etc").exists()


def test_hdf5_user_with_wrong_image_shape(sources, tmp_path):
    root = tmp_path / "pfl"
    shutil.copytree(sources["pfl-hdf5"], root)
    path = next(root.glob("*.hdf5"))
    with h5py.File(path, "r+") as h5:
        user = sorted(h5["val"])[0]
        images = h5[f"/val/{user}/images"][()]
        del h5[f"/val/{user}/images"]
        h5[f"/val/{user}/images"] = images[:, :128]
        count = len(images)
    report = flair_zarr.ingest(str(root), str(tmp_path / "store.zarr"), on_bad_record="skip")
    quarantine = _quarantine(tmp_path / "store.zarr")
    assert report.quarantined == count
    assert {e["user_id"] for e in quarantine["records"]} == {user}
    assert "expected uint8" in quarantine["records"][0]["reason"]
    assert user not in flair_zarr.open_dataset(str(tmp_path / "store.zarr")).flair.users()
