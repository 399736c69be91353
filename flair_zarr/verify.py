"""verify: every user's shard against the CRC32C written at ingest, every
user's ids and labels against theirs, the counts against the attributes, and,
given the source, every image and label bit for bit against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import numpy as np
import zarr
from distributed import Client, as_completed

from . import format as fmt
from .cluster import Progress, dask_client
from .reader import open_dataset
from .shards import CorruptShardError, shard_key, split_shard
from .sources import BadRecord, LabelEntries, Source, Staging, open_source
from .storage import get, open_store

SHOWN = 50


@dataclass
class VerifyReport:
    store: str
    users: int = 0
    images: int = 0
    source: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        against = f" and against the source {self.source}" if self.source else ""
        head = f"verified {self.users:,} users / {self.images:,} images of {self.store}{against}: "
        if self.ok:
            return head + "OK"
        lines = [head + f"{len(self.problems)} problem(s)"] + [f"  {p}" for p in self.problems[:SHOWN]]
        if len(self.problems) > SHOWN:
            lines.append(f"  ... and {len(self.problems) - SHOWN} more")
        return "\n".join(lines)


def check_block(url: str, storage_options: dict[str, Any] | None, start: int, users: list[tuple[int, str, int, int, int, int]],
                image_ids: np.ndarray, has_jpeg: bool, with_images: bool) -> dict[str, Any]:
    """Check the users of one block (position, id, first sample, count, CRC32C of
    its shard, CRC32C of its ids and labels) against their shards and the
    block's label rows; ``image_ids`` are the block's, as the client loaded
    them. With ``with_images`` also return each image's CRC32C (of the JPEG
    bytes, or of the decoded pixels) by image id."""
    fmt.enable_zarr_features()
    store = open_store(url, storage_options)
    stop = users[-1][2] + users[-1][3]
    problems: list[str] = []
    images: dict[int, int] = {}
    try:
        # Each array's own metadata: the root's consolidated metadata is megabytes at full scale.
        def read(name: str, selection: slice) -> np.ndarray:
            return zarr.open_array(store, path=name, mode="r", zarr_format=3)[selection]

        labels = read(fmt.LABELS, slice(start, stop))
        fine = read(fmt.FINE_GRAINED_LABELS, slice(start, stop))
    except Exception as error:  # noqa: BLE001 - an unreadable chunk is what verify reports
        problems.append(f"samples {start}-{stop - 1} (users {users[0][1]} ... {users[-1][1]}): labels unreadable ({error!r})")
        return {"problems": problems, "images": images, "count": stop - start, "users": len(users)}
    for position, user_id, first, count, expected, labels_crc in users:
        rows = slice(first - start, first - start + count)
        if fmt.labels_checksum(image_ids[rows], labels[rows], fine[rows]) != labels_crc:
            problems.append(f"user {user_id}: image ids or labels differ from their checksum")
        key = shard_key(position)
        try:
            data = get(store, key)
        except KeyError:
            problems.append(f"user {user_id}: shard object {key} is missing")
            continue
        if google_crc32c.value(data) != expected:
            problems.append(f"user {user_id}: shard object {key} differs from its checksum")
            continue
        try:
            chunks = split_shard(data, count, key)
        except CorruptShardError as error:
            problems.append(f"user {user_id}: {error}")
            continue
        if with_images:
            for image_id, chunk in zip(image_ids[rows].tolist(), chunks):
                payload = chunk if has_jpeg else np.ascontiguousarray(fmt.decode_pixels(chunk)).tobytes()
                images[image_id] = google_crc32c.value(payload)
    return {"problems": problems, "images": images, "count": stop - start, "users": len(users)}


def source_image_checksums(source: Source, part: Any, image_ids: np.ndarray, locations: np.ndarray | None) -> dict[int, int]:
    """CRC32C of each source image of one part (or of the images at ``locations``), by image id."""
    out: dict[int, int] = {}
    if locations is None:
        for item in source.scan(part, image_ids, Staging(None)):
            if not isinstance(item, BadRecord):
                row, image, _ = item
                out[int(image_ids[row])] = google_crc32c.value(image if source.has_jpeg else np.ascontiguousarray(image).tobytes())
        return out
    for row, image in zip(part, source.read(locations, Staging(None))):
        out[int(image_ids[row])] = google_crc32c.value(image if source.has_jpeg else np.ascontiguousarray(image).tobytes())
    return out


def _compare_with_source(client: Client, report: VerifyReport, ds: Any, stored_images: dict[int, int], source: str,
                         source_storage_options: dict[str, Any] | None, progress: bool) -> None:
    src = open_source(source, source_storage_options)
    index = src.read_index()
    users = ds[fmt.USER].values
    row_of_id = {int(i): r for r, i in enumerate(index.image_id.tolist())}
    # ids and labels: the source's, in store order, must give the stored checksums
    order = np.array([row_of_id.get(int(i), -1) for i in ds[fmt.IMAGE_ID].values], dtype=np.int64)
    if (order < 0).any():
        report.problems += [f"image_id {i}: in the store but not in the source" for i in ds[fmt.IMAGE_ID].values[order < 0][:SHOWN]]
        return
    coarse = LabelEntries.of(index.labels, ds[fmt.LABEL].values.tolist(), order)
    fine = LabelEntries.of(index.fine_grained_labels, ds[fmt.FINE_LABEL].values.tolist(), order)
    for position, (user, start, count, crc) in enumerate(zip(users.tolist(), ds[fmt.USER_START].values.tolist(),
                                                            ds[fmt.USER_COUNT].values.tolist(), ds[fmt.USER_LABELS_CRC32C].values.tolist())):
        rows = order[start : start + count]
        if str(index.user_id[rows[0]]) != user or set(index.partition[rows].tolist()) != {str(ds[fmt.USER_PARTITION].values[position])}:
            report.problems.append(f"user {user}: user id or partition differs from the source")
        if fmt.labels_checksum(index.image_id[rows], coarse.dense(start, start + count), fine.dense(start, start + count)) != crc:
            report.problems.append(f"user {user}: image ids or labels differ from the source")
    # images: the source's bytes (or pixels) must have the stored checksums
    [source_future, ids_future] = client.scatter([src, index.image_id], broadcast=True, hash=False)
    parts = src.parts(index)
    if parts:
        futures = [client.submit(source_image_checksums, source_future, part, ids_future, None, pure=False) for part in parts]
    else:
        groups = np.array_split(order, max(1, len(order) // 256))
        futures = [client.submit(source_image_checksums, source_future, g.tolist(), ids_future, index.locations[g], pure=False) for g in groups]
    shown = Progress("verify source", 0, len(order), progress)
    source_images: dict[int, int] = {}
    for future in as_completed(futures):
        result = future.result()
        source_images.update(result)
        shown.advance(0, len(result))
    shown.close()
    for image_id, crc in stored_images.items():
        if source_images.get(image_id) != crc:
            what = "missing from" if image_id not in source_images else "differs from"
            report.problems.append(f"image_id {image_id}: stored image {what} the source")


def coordinate_index_problems(url: str, storage_options: dict[str, Any] | None, ds: Any) -> list[str]:
    """Where the coordinate index (what open_dataset uses) and the coordinate
    arrays (what a plain ``xr.open_zarr`` shows) disagree."""
    group = zarr.open_group(open_store(url, storage_options), mode="r", zarr_format=3)
    problems = []
    for name in (*fmt.COORDINATES, fmt.LABEL, fmt.FINE_LABEL, fmt.USER):
        if not np.array_equal(group[name][...], ds[name].values):
            problems.append(f"coordinate {name}: the array differs from the store's {fmt.COORDINATE_INDEX_KEY}")
    return problems


def verify(url: str, storage_options: dict[str, Any] | None = None, *, source: str | None = None,
           source_storage_options: dict[str, Any] | None = None, scheduler: str | Client | None = None,
           progress: bool = False) -> VerifyReport:
    """Check the store at ``url``; the report lists every problem found."""
    ds = open_dataset(url, storage_options)
    report = VerifyReport(store=url, source=source)
    attrs = ds.attrs
    counts = ds[fmt.USER_COUNT].values
    starts = ds[fmt.USER_START].values
    report.users, report.images = len(counts), ds.sizes[fmt.SAMPLE]
    if attrs["counts"]["images"] != ds.sizes[fmt.SAMPLE] or attrs["counts"]["users"] != len(counts):
        report.problems.append(f"counts in the attributes ({attrs['counts']['images']} images, {attrs['counts']['users']} users) "
                               f"differ from the arrays ({ds.sizes[fmt.SAMPLE]}, {len(counts)})")
    if counts.sum() != ds.sizes[fmt.SAMPLE] or not np.array_equal(starts, np.concatenate(([0], np.cumsum(counts)[:-1]))):
        report.problems.append("the user table's starts and counts do not tile the samples")
    if tuple(ds[fmt.IMAGE].encoding["shards"][0]) != tuple(counts.tolist()):
        report.problems.append("the image array's shards are not one per user")
    for name, c in attrs["counts"]["partitions"].items():
        mine = ds[fmt.USER_PARTITION].values == name
        if c["users"] != int(mine.sum()) or c["images"] != int(counts[mine].sum()):
            report.problems.append(f"partition {name}: attributes say {c}, the user table {int(mine.sum())} users, {int(counts[mine].sum())} images")
    if attrs["source"]["records"] != ds.sizes[fmt.SAMPLE] + attrs["counts"]["quarantined_records"]:
        report.problems.append("ingested + quarantined records differ from the source's record count")

    report.problems += coordinate_index_problems(url, storage_options, ds)

    has_jpeg = attrs["image_encoding"]["source_bytes"]
    crcs = ds[fmt.USER_IMAGE_CRC32C].values
    labels_crcs = ds[fmt.USER_LABELS_CRC32C].values
    ids = ds[fmt.USER].values
    image_ids = ds[fmt.IMAGE_ID].values
    bounds = np.cumsum((0, *ds[fmt.LABELS].chunks[0]))
    block_of_user = np.searchsorted(bounds, starts, side="right") - 1
    blocks = [[(int(u), str(ids[u]), int(starts[u]), int(counts[u]), int(crcs[u]), int(labels_crcs[u])) for u in members]
              for members in np.split(np.arange(len(counts)), np.flatnonzero(np.diff(block_of_user)) + 1) if len(members)]
    with dask_client(scheduler) as client:
        shown = Progress("verify", len(counts), ds.sizes[fmt.SAMPLE], progress)
        futures = [client.submit(check_block, url, storage_options, b[0][2], b, image_ids[b[0][2] : b[-1][2] + b[-1][3]],
                                 has_jpeg, source is not None, pure=False) for b in blocks]
        stored_images: dict[int, int] = {}
        for future in as_completed(futures):
            result = future.result()
            report.problems += result["problems"]
            stored_images.update(result["images"])
            shown.advance(result["users"], result["count"])
        shown.close()
        if source is not None:
            _compare_with_source(client, report, ds, stored_images, source, source_storage_options, progress)
    return report
