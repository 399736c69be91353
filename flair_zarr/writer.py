"""Ingest: a FLAIR source into a user-aligned flair-zarr store.

Order of work: index the source (no pixels), check it, plan the store order,
create the arrays, write the small per-sample arrays block by block, stream
the JPEG bytes into one shard object per user, and write the consolidated
metadata last: it is the commit point readers open.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import imagecodecs.zarr
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from zarr.abc.store import Store

from . import format as fmt
from .shards import build_shard, shard_key
from .sources import SourceError, SourceIndex, open_source
from .storage import prepare_destination, put

WRITE_THREADS = 16


@dataclass(frozen=True)
class IngestReport:
    images: int
    users: int
    jpeg_bytes: int  # sum of the source JPEG files' sizes
    seconds: float


def _multi_hot_entries(lists: pa.ListArray, vocabulary: list[str], index: SourceIndex, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every label in ``lists``; an unknown or missing label
    is an error naming the record."""
    rows = pc.list_parent_indices(lists).to_numpy()
    columns = pc.index_in(pc.list_flatten(lists), value_set=pa.array(vocabulary))
    if columns.null_count:
        bad = int(np.flatnonzero(columns.is_null().to_numpy(zero_copy_only=False))[0])
        name = pc.list_flatten(lists)[bad].as_py()
        raise SourceError(f"{index.describe_row(int(rows[bad]))}: {kind} label {name!r} is not in label_relationship.txt")
    empty = np.flatnonzero(pc.list_value_length(lists).fill_null(0).to_numpy() == 0)
    if empty.size:
        raise SourceError(f"{index.describe_row(int(empty[0]))}: empty {kind} label list ({empty.size} such records)")
    return rows, columns.to_numpy()


def _check_index(index: SourceIndex) -> None:
    """Refuse records the store cannot hold faithfully."""
    unknown = ~np.isin(index.partition, fmt.PARTITIONS)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise SourceError(f"{index.describe_row(row)}: partition {str(index.partition[row])!r} is not one of {fmt.PARTITIONS}")
    ids, first, counts = np.unique(index.image_id, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = ids[counts > 1][0]
        rows = np.flatnonzero(index.image_id == dup)
        raise SourceError(f"duplicate image_id {dup}: {'; '.join(index.describe_row(int(r)) for r in rows[:3])}")
    pairs = np.unique(np.stack([index.user_id, index.partition]), axis=1)
    users, per_user = np.unique(pairs[0], return_counts=True)
    if (per_user > 1).any():
        user = users[per_user > 1][0]
        raise SourceError(f"user {user} appears in partitions {sorted(pairs[1][pairs[0] == user].tolist())}")


@dataclass(frozen=True)
class _Plan:
    """Where every source row goes."""

    order: np.ndarray  # store sample -> source row
    users: fmt.UserTable
    blocks: tuple[int, ...]

    @classmethod
    def of(cls, index: SourceIndex, block_images: int) -> _Plan:
        order = fmt.store_order(index.user_id, index.partition)
        user_id = index.user_id[order]
        starts = np.flatnonzero(np.r_[True, user_id[1:] != user_id[:-1]])
        counts = np.diff(np.r_[starts, len(order)])
        users = fmt.UserTable(
            user_id=user_id[starts], partition=index.partition[order][starts], start=starts.astype(np.int64), count=counts.astype(np.int64)
        )
        return cls(order=order, users=users, blocks=users.blocks(block_images))


def _create_arrays(group: zarr.Group, index: SourceIndex, plan: _Plan, coarse: list[str], fine: list[str]) -> dict[str, zarr.Array]:
    n, users = len(index), plan.users
    blocks = list(plan.blocks)

    def create(name: str, shape: tuple[int, ...], dtype: Any, **kwargs: Any) -> zarr.Array:
        kwargs.setdefault("chunks", shape)
        return group.create_array(name, shape=shape, dtype=dtype, dimension_names=fmt.DIMENSIONS[name], **kwargs)

    width = max(len(u) for u in users.user_id.tolist())
    return {
        fmt.IMAGE: create(
            fmt.IMAGE, (n, *fmt.IMAGE_SHAPE), np.uint8,
            shards=[users.count.tolist(), [256], [256], [3]], chunks=(1, *fmt.IMAGE_SHAPE),
            serializer=imagecodecs.zarr.Jpeg(), compressors=None, fill_value=0,
            attributes={"long_name": "RGB image, decoded from the source JPEG bytes stored verbatim"},
        ),
        fmt.LABELS: create(fmt.LABELS, (n, len(coarse)), bool, chunks=[blocks, [len(coarse)]], attributes={"long_name": "coarse labels, multi-hot"}),
        fmt.FINE_GRAINED_LABELS: create(
            fmt.FINE_GRAINED_LABELS, (n, len(fine)), bool, chunks=[blocks, [len(fine)]], attributes={"long_name": "fine-grained labels, multi-hot"}
        ),
        fmt.USER_ID: create(fmt.USER_ID, (n,), f"<U{width}"),
        fmt.PARTITION: create(fmt.PARTITION, (n,), f"<U{max(map(len, fmt.PARTITIONS))}"),
        fmt.IMAGE_ID: create(fmt.IMAGE_ID, (n,), np.int64, fill_value=-1),
    }


def _write_small_arrays(group: zarr.Group, arrays: dict[str, zarr.Array], index: SourceIndex, plan: _Plan, coarse: list[str], fine: list[str]) -> None:
    order, users = plan.order, plan.users
    arrays[fmt.USER_ID][:] = index.user_id[order]
    arrays[fmt.PARTITION][:] = index.partition[order]
    arrays[fmt.IMAGE_ID][:] = index.image_id[order]

    def table(name: str, values: np.ndarray) -> None:
        group.create_array(name, data=values, dimension_names=fmt.DIMENSIONS[name], chunks=values.shape)

    parent = np.array([index.label_relationship[f] for f in fine])
    table(fmt.LABEL, np.array(coarse))
    table(fmt.FINE_LABEL, np.array(fine))
    table(fmt.FINE_LABEL_PARENT, parent)
    table(fmt.USER, users.user_id)
    table(fmt.USER_PARTITION, users.partition)
    table(fmt.USER_START, users.start)
    table(fmt.USER_COUNT, users.count)

    sample_of_row = np.empty_like(order)
    sample_of_row[order] = np.arange(len(order))
    for name, lists, vocabulary in ((fmt.LABELS, index.labels, coarse), (fmt.FINE_GRAINED_LABELS, index.fine_grained_labels, fine)):
        rows, columns = _multi_hot_entries(lists, vocabulary, index, "coarse" if name == fmt.LABELS else "fine-grained")
        samples = sample_of_row[rows]
        by_sample = np.argsort(samples, kind="stable")
        samples, columns = samples[by_sample], columns[by_sample]
        start = 0
        for size in plan.blocks:
            lo, hi = np.searchsorted(samples, [start, start + size])
            block = np.zeros((size, len(vocabulary)), dtype=bool)
            block[samples[lo:hi] - start, columns[lo:hi]] = True
            arrays[name][start : start + size] = block
            start += size


def _write_shards(store: Store, index: SourceIndex, source_batches: Any, plan: _Plan, progress: Callable[[int, int], None] | None) -> int:
    """Stream JPEG bytes into one shard object per user; returns bytes read."""
    users = plan.users
    sample_of_row = np.empty_like(plan.order)
    sample_of_row[plan.order] = np.arange(len(plan.order))
    user_of_sample = np.repeat(np.arange(len(users.count)), users.count)
    pending: dict[int, list[bytes | None]] = {}
    filled = np.zeros(len(users.count), dtype=np.int64)
    in_flight: deque[Future[None]] = deque()
    jpeg_bytes = done_images = 0
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        for batch in source_batches:
            rows = np.arange(batch.first_row, batch.first_row + len(batch.jpeg))
            if rows[-1] >= len(plan.order) or not np.array_equal(batch.image_id, index.image_id[rows]):
                raise SourceError(f"source rows {rows[0]}-{rows[-1]} changed between the index pass and the image pass")
            for row, jpeg in zip(rows.tolist(), batch.jpeg):
                try:
                    if jpeg is None:
                        raise fmt.InvalidImageError("no image bytes")
                    fmt.check_jpeg(jpeg)
                except fmt.InvalidImageError as error:
                    raise fmt.InvalidImageError(f"{index.describe_row(row)}: {error}") from None
                sample = int(sample_of_row[row])
                user = int(user_of_sample[sample])
                slots = pending.setdefault(user, [None] * int(users.count[user]))
                slots[sample - int(users.start[user])] = jpeg
                filled[user] += 1
                jpeg_bytes += len(jpeg)
                if filled[user] == users.count[user]:
                    data = build_shard(pending.pop(user))  # type: ignore[arg-type]
                    in_flight.append(pool.submit(put, store, shard_key(user), data))
                    while len(in_flight) > 4 * WRITE_THREADS:
                        in_flight.popleft().result()
            done_images += len(batch.jpeg)
            if progress:
                progress(done_images, len(plan.order))
        for future in in_flight:
            future.result()
    if pending:
        user = next(iter(pending))
        raise SourceError(f"user {users.user_id[user]}: the image pass yielded {filled[user]} of its {users.count[user]} images")
    return jpeg_bytes


def ingest(
    source: str,
    dest: str,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    source_storage_options: dict[str, Any] | None = None,
    block_images: int = fmt.BLOCK_IMAGES,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Write the FLAIR source at ``source`` into a new store at ``dest``.

    ``storage_options`` go to the destination's filesystem,
    ``source_storage_options`` to the source's. An existing, non-empty
    ``dest`` is refused unless ``overwrite`` is true.
    """
    began = time.perf_counter()
    fmt.enable_zarr_features()
    src = open_source(source, source_storage_options)
    index = src.read_index()
    _check_index(index)
    coarse = sorted(set(index.label_relationship.values()))
    fine = sorted(index.label_relationship)
    plan = _Plan.of(index, block_images)

    store = prepare_destination(dest, storage_options, overwrite)
    group = zarr.open_group(store, mode="w", zarr_format=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fixed_length_utf32.*")
        warnings.filterwarnings("ignore", category=zarr.errors.UnstableSpecificationWarning)
        arrays = _create_arrays(group, index, plan, coarse, fine)
        _write_small_arrays(group, arrays, index, plan, coarse, fine)
    jpeg_bytes = _write_shards(store, index, src.iter_images(), plan, progress)

    partitions = {
        p: {"users": int((plan.users.partition == p).sum()), "images": int(plan.users.count[plan.users.partition == p].sum())}
        for p in fmt.PARTITIONS
    }
    group.attrs.update(
        {
            "title": "FLAIR: Federated Learning Annotated Image Repository",
            "flair_zarr": {"format": fmt.FORMAT_NAME, "version": fmt.FORMAT_VERSION, "block_images": block_images},
            "source": {"format": src.format, "url": src.url, "jpeg_bytes": jpeg_bytes},
            "counts": {"images": len(index), "users": len(plan.users.count), "partitions": partitions},
            "label_relationship": index.label_relationship,
            "coordinates": " ".join(fmt.COORDINATES),
            "license": "annotations CC-BY-NC-4.0; images under the Flickr licenses of their authors",
            "citation": "Song, Granqvist, Talwar. FLAIR: Federated Learning Annotated Image Repository. NeurIPS 2022 Datasets and Benchmarks.",
        }
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message="Consolidated metadata")
        zarr.consolidate_metadata(store)
    return IngestReport(images=len(index), users=len(plan.users.count), jpeg_bytes=jpeg_bytes, seconds=time.perf_counter() - began)
