"""Ingest: any FLAIR source into a user-aligned flair-zarr store, on Dask.

1. Index the source (no pixels) and check every record's labels, ids,
   partition and user.
2. Scan: one task per source part reads each image once and checks it
   (a complete JPEG decode), noting where it can be read again.
3. Lay out the good records (store order, users, blocks).
4. Write: one task per group of whole users reads their images and writes
   one shard object per user, returning each object's CRC32C.
5. Commit, on the client: the small arrays, all metadata, the quarantine
   report, and last the root metadata with the consolidated metadata, which
   is what readers open.

Every finished task leaves a marker under ``_ingest/``: a re-run with the same
arguments after a crash redoes only unfinished tasks and writes the same store.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zarr
import zarr.storage
from distributed import Client, as_completed

from . import format as fmt
from .cluster import Progress, dask_client, worker_peak_memory
from .job import ROOT_METADATA, IngestJob
from .layout import Layout, WriteTask
from .shards import build_shard, shard_key
from .sources import BadRecord, LabelEntries, Source, SourceIndex, Staging, open_source
from .storage import open_store, put
from .validate import ON_BAD_RECORD, check_index, image_problem, quarantine_report, raise_if_bad

QUARANTINE_KEY = "quarantine.json"
TASK_IMAGES = {True: 2048, False: 256}  # JPEG bytes vs decoded pixels held by one task
PUT_THREADS = 8


@dataclass(frozen=True)
class IngestReport:
    images: int
    users: int
    quarantined: int  # source records left out (listed in quarantine.json)
    jpeg_bytes: int | None  # the stored source JPEG files' sizes; None for pixel sources
    seconds: float
    reused_tasks: int  # tasks a resumed ingest did not redo
    worker_peak_memory: dict[str, int]  # bytes, per worker


# -- tasks (run on Dask workers) ---------------------------------------------

def scan_part(source: Source, part: Any, image_ids: np.ndarray, staging: Staging) -> dict[str, Any]:
    """Read one part of the source once: each image's location, or why it is bad."""
    rows, locations, bad = [], [], []
    for item in source.scan(part, image_ids, staging):
        if isinstance(item, BadRecord):
            bad.append([item.row, item.reason, item.where])
            continue
        row, image, location = item
        problem = image_problem(image, source.has_jpeg)
        if problem:
            bad.append([row, problem, ""])
        else:
            rows.append(row)
            locations.append(list(location))
    return {"rows": rows, "locations": locations, "bad": bad}


def write_users(source: Source, task: WriteTask, dest: str, storage_options: dict[str, Any] | None, staging: Staging) -> list[list[int]]:
    """Write one shard object per user of ``task``; [user, CRC32C, object bytes, image bytes] each."""
    store = open_store(dest, storage_options, read_only=False)
    images = source.read(task.locations, staging)
    shards, results, position = [], [], 0
    for user, count in zip(task.users.tolist(), task.counts.tolist()):
        mine = images[position : position + count]
        position += count
        chunks = mine if source.has_jpeg else [fmt.encode_pixels(p) for p in mine]
        data = build_shard(chunks)  # type: ignore[arg-type]
        shards.append((shard_key(user), data))
        results.append([user, google_crc32c.value(data), len(data), sum(len(c) for c in chunks)])
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(lambda item: put(store, *item), shards))
    return results


# -- the client's side -------------------------------------------------------

def _run(client: Client, job: IngestJob, kind: str, function: Callable[..., Any], items: list[Any], args: tuple[Any, ...],
         progress: Progress, size: Callable[[Any, Any], tuple[int, int]]) -> tuple[list[Any], int]:
    """Run ``function(args[0], item, *args[1:])`` for every item without a
    marker, marking each as it finishes; returns every item's result in order
    and how many came from markers."""
    results: list[Any] = [job.marker(kind, i) for i in range(len(items))]
    reused = sum(r is not None for r in results)
    for i, r in enumerate(results):
        if r is not None:
            progress.advance(*size(items[i], r))
    futures = {client.submit(function, args[0], items[i], *args[1:], pure=False): i for i, r in enumerate(results) if r is None}
    for future in as_completed(futures):
        i = futures[future]
        results[i] = future.result()
        job.mark(kind, i, results[i])
        progress.advance(*size(items[i], results[i]))
    progress.close()
    return results, reused


def _scan(client: Client, src: Source, index: SourceIndex, job: IngestJob, show: bool) -> tuple[np.ndarray, np.ndarray, list[BadRecord], int]:
    """Good-so-far rows with their locations, bad records seen, and reused tasks."""
    parts = src.parts(index)
    if not parts:
        return np.arange(len(index)), index.locations, [], 0  # type: ignore[return-value]
    [source_future, ids_future] = client.scatter([src, index.image_id], broadcast=True, hash=False)
    progress = Progress("scan", 0, len(index), show)
    results, reused = _run(client, job, "scan", scan_part, parts, (source_future, ids_future, job.staging), progress,
                           lambda part, result: (0, len(result["rows"]) + len(result["bad"])))
    rows = np.array([r for res in results for r in res["rows"]], dtype=np.int64)
    locations = np.array([loc for res in results for loc in res["locations"]], dtype=np.int64).reshape(-1, 3)
    bad = [BadRecord(row, reason, where) for res in results for row, reason, where in res["bad"]]
    found, counts = np.unique(rows, return_counts=True)
    bad += [BadRecord(int(r), f"image file found {c} times") for r, c in zip(found[counts > 1], counts[counts > 1])]
    accounted = np.union1d(found, [b.row for b in bad if b.row is not None])
    missing = np.setdiff1d(np.arange(len(index)), accounted)
    bad += [BadRecord(int(r), "missing image file (in no tarball or folder)") for r in missing]
    return rows, locations, bad, reused


def _commit(job: IngestJob, src: Source, index: SourceIndex, layout: Layout, written: list[list[int]],
            bad: list[BadRecord], block_images: int, on_bad_record: str) -> int:
    """Write everything but the shards into memory, copy it over, root metadata last."""
    users, order, n = layout.users, layout.order, len(layout.order)
    crc = np.zeros(len(users.count), dtype=np.uint32)
    image_bytes = 0
    for user, checksum, _, payload in written:
        crc[user] = checksum
        image_bytes += payload

    memory: dict[str, Any] = {}
    group = zarr.create_group(zarr.storage.MemoryStore(memory), zarr_format=3)

    def array(name: str, shape: tuple[int, ...], dtype: Any, **kwargs: Any) -> zarr.Array:
        kwargs.setdefault("chunks", shape if all(shape) else None)
        return group.create_array(name, shape=shape, dtype=dtype, dimension_names=fmt.DIMENSIONS[name], **kwargs)

    coarse, fine = index.coarse_vocabulary, index.fine_vocabulary
    blocks = list(layout.blocks) or [0]
    if n:
        array(fmt.IMAGE, (n, *fmt.IMAGE_SHAPE), np.uint8, shards=[users.count.tolist(), [256], [256], [3]],
              chunks=(1, *fmt.IMAGE_SHAPE), serializer=fmt.image_serializer(src.has_jpeg), compressors=None, fill_value=0,
              attributes={"long_name": "RGB image" + (", decoded from the source JPEG bytes stored verbatim" if src.has_jpeg else ", stored losslessly")})
    labels = array(fmt.LABELS, (n, len(coarse)), bool, chunks=[blocks, [len(coarse)]], attributes={"long_name": "coarse labels, multi-hot"})
    fine_labels = array(fmt.FINE_GRAINED_LABELS, (n, len(fine)), bool, chunks=[blocks, [len(fine)]], attributes={"long_name": "fine-grained labels, multi-hot"})
    width = max([len(u) for u in users.user_id.tolist()] + [1])
    array(fmt.USER_ID, (n,), f"<U{width}")[:] = index.user_id[order]
    array(fmt.PARTITION, (n,), f"<U{max(map(len, fmt.PARTITIONS))}")[:] = index.partition[order]
    parent = np.array([index.label_relationship.get(f, "") for f in fine])
    coordinates = {fmt.IMAGE_ID: index.image_id[order].astype(np.int64), fmt.LABEL: np.array(coarse), fmt.FINE_LABEL: np.array(fine),
                   fmt.FINE_LABEL_PARENT: parent, fmt.USER: users.user_id.astype(f"<U{width}"),
                   fmt.USER_PARTITION: users.partition.astype("<U5"), fmt.USER_START: users.start, fmt.USER_COUNT: users.count,
                   fmt.USER_IMAGE_CRC32C: crc}

    labels_crc = np.zeros(len(users.count), dtype=np.uint32)
    ids_in_order = coordinates[fmt.IMAGE_ID]
    entries = (LabelEntries.of(index.labels, coarse, order), LabelEntries.of(index.fine_grained_labels, fine, order))
    user_of_block_start = np.searchsorted(users.start, np.cumsum([0, *layout.blocks])[:-1])
    start = 0
    for size, first_user in zip(layout.blocks, user_of_block_start.tolist()):
        dense = [e.dense(start, start + size) for e in entries]
        labels[start : start + size] = dense[0]
        fine_labels[start : start + size] = dense[1]
        user = first_user
        while user < len(users.start) and users.start[user] < start + size:
            rows = slice(users.start[user] - start, users.start[user] - start + users.count[user])
            labels_crc[user] = fmt.labels_checksum(ids_in_order[users.start[user] : users.start[user] + users.count[user]], dense[0][rows], dense[1][rows])
            user += 1
        start += size
    coordinates[fmt.USER_LABELS_CRC32C] = labels_crc
    for name, values in coordinates.items():
        a = array(name, values.shape, values.dtype)
        if values.size:
            a[:] = values

    report = quarantine_report(index, bad)
    partitions = users.partition_counts()
    group.attrs.update({
        "title": "FLAIR: Federated Learning Annotated Image Repository",
        "flair_zarr": {"format": fmt.FORMAT_NAME, "version": fmt.FORMAT_VERSION, "block_images": block_images},
        "source": {"format": src.format, "url": src.url, "jpeg_bytes": image_bytes if src.has_jpeg else None,
                   "records": len(index)},
        "image_encoding": fmt.JPEG_ENCODING if src.has_jpeg else fmt.PIXEL_ENCODING,
        "counts": {"images": n, "users": len(users.count), "partitions": partitions,
                   "quarantined_records": report["quarantined_records"], "quarantined_other_entries": len(report["other_entries"])},
        "on_bad_record": on_bad_record,
        "label_relationship": index.label_relationship,
        "coordinates": " ".join(fmt.COORDINATES),
        "license": "annotations CC-BY-NC-4.0; images under the Flickr licenses of their authors",
        "citation": "Song, Granqvist, Talwar. FLAIR: Federated Learning Annotated Image Repository. NeurIPS 2022 Datasets and Benchmarks.",
    })
    zarr.consolidate_metadata(group.store)

    store = open_store(job.url, job.storage_options, read_only=False)
    objects = [(key, value.to_bytes()) for key, value in memory.items() if key != ROOT_METADATA]
    objects.append((QUARANTINE_KEY, json.dumps(report, indent=1).encode()))
    objects.append((fmt.COORDINATE_INDEX_KEY, fmt.pack_coordinates(coordinates)))
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(lambda item: put(store, *item), objects))
    job.remove_interrupted_writes()
    put(store, ROOT_METADATA, memory[ROOT_METADATA].to_bytes())  # the commit point
    job.finish()
    return report["quarantined_records"]


def ingest(
    source: str,
    dest: str,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    *,
    source_storage_options: dict[str, Any] | None = None,
    source_format: str | None = None,
    on_bad_record: str = "error",
    scheduler: str | Client | None = None,
    block_images: int = fmt.BLOCK_IMAGES,
    task_images: int | None = None,
    progress: bool = False,
) -> IngestReport:
    """Write the FLAIR source at ``source`` into a new store at ``dest``.

    ``storage_options`` go to the destination's filesystem,
    ``source_storage_options`` to the source's. ``source_format`` overrides
    detection (``hf-parquet``, ``apple-raw``, ``pfl-hdf5``). A bad record stops
    the ingest with an error naming it, unless ``on_bad_record='skip'``: then
    the rest is ingested and every left-out record is listed in the store's
    ``quarantine.json``. An existing ``dest`` is refused unless ``overwrite``,
    except an unfinished ingest with the same arguments, which is resumed.
    Tasks run on ``scheduler`` (a Client or address), the client in hand, or
    a new LocalCluster.
    """
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(f"on_bad_record must be one of {ON_BAD_RECORD}, not {on_bad_record!r}")
    began = time.perf_counter()
    fmt.enable_zarr_features()
    src = open_source(source, source_storage_options, source_format)
    index = src.read_index()
    bad = list(index.bad) + check_index(index)
    if on_bad_record == "error":
        raise_if_bad(index, bad, images_checked=False)
    task_images = task_images or TASK_IMAGES[src.has_jpeg]
    plan = {"format_version": fmt.FORMAT_VERSION, "source": {"url": src.url, "format": src.format, "files": src.fingerprint()},
            "on_bad_record": on_bad_record, "block_images": block_images, "task_images": task_images}
    job = IngestJob.prepare(dest, storage_options, plan, overwrite)
    if job.committed:
        job.finish()
        return _report_of_committed(dest, storage_options, began)

    with dask_client(scheduler) as client:
        rows, locations, scan_bad, reused = _scan(client, src, index, job, progress)
        bad += scan_bad
        if on_bad_record == "error":
            raise_if_bad(index, bad)
        bad_rows = np.array(sorted({b.row for b in bad if b.row is not None}), dtype=np.int64)
        keep = ~np.isin(rows, bad_rows)
        layout = Layout.of(index, rows[keep], locations[keep], block_images)
        tasks = layout.tasks(task_images)
        shown = Progress("write", len(layout.users.count), len(layout.order), progress)
        [source_future] = client.scatter([src], broadcast=True, hash=False)
        results, reused_writes = _run(client, job, f"write-{layout.digest()}", write_users, tasks,
                                      (source_future, job.url, job.storage_options, job.staging), shown,
                                      lambda task, result: (len(task.users), int(task.counts.sum())))
        memory = worker_peak_memory(client)
    with warnings.catch_warnings():  # fixed-width strings and consolidated metadata are not in the v3 spec yet
        warnings.filterwarnings("ignore", category=zarr.errors.UnstableSpecificationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message="Consolidated metadata")
        quarantined = _commit(job, src, index, layout, [r for result in results for r in result], bad, block_images, on_bad_record)
    jpeg = sum(r[3] for result in results for r in result) if src.has_jpeg else None
    return IngestReport(images=len(layout.order), users=len(layout.users.count), quarantined=quarantined, jpeg_bytes=jpeg,
                        seconds=time.perf_counter() - began, reused_tasks=reused + reused_writes, worker_peak_memory=memory)


def _report_of_committed(dest: str, storage_options: dict[str, Any] | None, began: float) -> IngestReport:
    """An ingest re-run after its commit: nothing to do but say what is there."""
    attrs = zarr.open_group(open_store(dest, storage_options), mode="r").attrs
    counts = attrs["counts"]
    return IngestReport(images=counts["images"], users=counts["users"], quarantined=counts["quarantined_records"],
                        jpeg_bytes=attrs["source"]["jpeg_bytes"], seconds=time.perf_counter() - began, reused_tasks=-1,
                        worker_peak_memory={})
