"""Bad sources and destinations: a clear error naming the file or record and
the reason; nothing existing is overwritten without being asked."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import flair_zarr
from flair_zarr.validate import BadRecordsError
from flair_zarr.reader import NotAFlairStoreError
from flair_zarr.sources import SourceError
from flair_zarr.storage import StoreExistsError


def _jpeg(mode: str = "RGB", size: tuple[int, int] = (256, 256), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color=100 if mode in ("L", "CMYK") else (10, 20, 30)).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def broken(source: Path, tmp_path: Path) -> Callable[..., tuple[Path, dict]]:
    """Copy the source and change one row of its first train file with ``edit(row)``."""

    def make(edit: Callable[[dict], None], row_number: int = 0) -> tuple[Path, dict]:
        root = tmp_path / "broken"
        shutil.copytree(source, root)
        path = sorted((root / "data").glob("train-*.parquet"))[0]
        table = pq.read_table(path)
        rows = table.to_pylist()
        edit(rows[row_number])
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
        return root, rows[row_number]

    return make


def _ingest(root: Path, tmp_path: Path) -> None:
    flair_zarr.ingest(str(root), str(tmp_path / "out.zarr"))


@pytest.mark.parametrize(
    "image, reason",
    [
        (_jpeg(fmt="PNG"), r"not a JPEG file \(PNG RGB 256x256\)"),
        (_jpeg(mode="L"), r"expected a 256x256 RGB JPEG, found 256x256 L \(grayscale\)"),
        (_jpeg(mode="CMYK"), "found 256x256 CMYK"),
        (_jpeg(size=(128, 256)), "found 128x256 RGB"),
        (b"not an image at all", r"not a JPEG file \(unrecognised data\)"),
        (_jpeg()[:100], "truncated JPEG: no frame header"),
        (_jpeg()[:-200], r"corrupt JPEG \(image file is truncated"),
        (None, "no image bytes"),
    ],
)
def test_bad_image_is_named(broken, tmp_path, image, reason):
    root, row = broken(lambda r: r["image"].update(bytes=image), row_number=1)
    with pytest.raises(BadRecordsError, match=rf"image_id {row['image_id']} \(user {row['user_id']}, train-00000-of-00010.parquet record 1\): .*{reason}"):
        _ingest(root, tmp_path)


def test_failed_ingest_leaves_no_readable_store(broken, tmp_path):
    root, _ = broken(lambda r: r["image"].update(bytes=b"garbage"))
    with pytest.raises(BadRecordsError):
        _ingest(root, tmp_path)
    with pytest.raises(NotAFlairStoreError):
        flair_zarr.open_dataset(str(tmp_path / "out.zarr"))


def test_unknown_label_is_named(broken, tmp_path):
    root, row = broken(lambda r: r["fine_grained_labels"].append("unicorn"))
    with pytest.raises(BadRecordsError, match=rf"image_id {row['image_id']} .*fine-grained label 'unicorn' has no parent in label_relationship.txt"):
        _ingest(root, tmp_path)


def test_empty_label_list_is_named(broken, tmp_path):
    root, row = broken(lambda r: r.update(labels=[]))
    with pytest.raises(BadRecordsError, match=rf"image_id {row['image_id']} .*empty coarse label list"):
        _ingest(root, tmp_path)


def test_duplicate_image_id(broken, source_rows, tmp_path):
    other = source_rows[-1][0]
    root, _ = broken(lambda r: r.update(image_id=other))
    with pytest.raises(BadRecordsError, match=rf"2 bad record\(s\)(.|\n)*duplicate image_id {other}"):
        _ingest(root, tmp_path)


def test_user_in_two_partitions(broken, source_rows, tmp_path):
    val_user = next(r.user_id for _, r in source_rows if r.partition == "val")
    root, _ = broken(lambda r: r.update(user_id=val_user))
    with pytest.raises(BadRecordsError, match=rf"user {val_user} appears in partitions train, val"):
        _ingest(root, tmp_path)


def test_unknown_partition(broken, tmp_path):
    root, row = broken(lambda r: r.update(partition="dev"))
    with pytest.raises(BadRecordsError, match=rf"image_id {row['image_id']} .*partition 'dev' is not one of"):
        _ingest(root, tmp_path)


def test_schema_mismatch_names_file_and_column(source, tmp_path):
    root = tmp_path / "schema"
    shutil.copytree(source, root)
    path = sorted((root / "data").glob("val-*.parquet"))[0]
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("image_id"), "image_id", table["image_id"].cast(pa.string()))
    pq.write_table(table, path)
    with pytest.raises(SourceError, match=rf"{path.name}: column 'image_id' has type string, expected int64"):
        _ingest(root, tmp_path)


def test_missing_column(source, tmp_path):
    root = tmp_path / "nocol"
    shutil.copytree(source, root)
    path = sorted((root / "data").glob("test-*.parquet"))[0]
    pq.write_table(pq.read_table(path).drop_columns(["fine_grained_labels"]), path)
    with pytest.raises(SourceError, match=rf"{path.name}: missing column 'fine_grained_labels'"):
        _ingest(root, tmp_path)


def test_folder_without_parquet(source, tmp_path):
    root = tmp_path / "empty"
    (root / "data").mkdir(parents=True)
    shutil.copy(source / "label_relationship.txt", root)
    with pytest.raises(SourceError, match="no parquet files under data/"):
        _ingest(root, tmp_path)


def test_not_a_source(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SourceError, match="not a FLAIR source"):
        _ingest(tmp_path / "nothing", tmp_path)
    with pytest.raises(SourceError, match="no such source"):
        _ingest(tmp_path / "absent", tmp_path)


def test_missing_label_relationship(source, tmp_path):
    root = tmp_path / "norel"
    shutil.copytree(source, root)
    (root / "label_relationship.txt").unlink()
    with pytest.raises(SourceError, match="label_relationship.txt: missing"):
        _ingest(root, tmp_path)


def test_malformed_label_relationship(source, tmp_path):
    root = tmp_path / "badrel"
    shutil.copytree(source, root)
    with open(root / "label_relationship.txt", "a") as f:
        f.write("orphan label without arrow\n")
    with pytest.raises(SourceError, match=r"label_relationship.txt line \d+: expected 'fine_label -> coarse_label'"):
        _ingest(root, tmp_path)


def test_existing_destination_is_not_touched(source, tmp_path):
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    with pytest.raises(StoreExistsError, match="already exists"):
        flair_zarr.ingest(str(source), str(dest))
    assert [p.name for p in dest.iterdir()] == ["precious.txt"]
    assert (dest / "precious.txt").read_text() == "keep me"


def test_overwrite_replaces_the_store(source, local_store, tmp_path):
    dest = tmp_path / "again.zarr"
    shutil.copytree(local_store, dest)
    (dest / "stale-object").write_bytes(b"x")
    flair_zarr.ingest(str(source), str(dest), overwrite=True)
    assert not (dest / "stale-object").exists()
    assert flair_zarr.open_dataset(str(dest)).sizes["sample"] == flair_zarr.open_dataset(local_store).sizes["sample"]


def test_cli_reports_errors_without_traceback(source, tmp_path, capsys):
    from flair_zarr.cli import main

    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "x").write_text("x")
    assert main(["ingest", str(source), str(dest)]) == 1
    assert "already exists" in capsys.readouterr().err
