"""Synthetic FLAIR in each public layout: Hugging Face ``apple/flair``
parquet, Apple's ml-flair download (JSON and tarballs), pfl-research's HDF5.

No real FLAIR is reachable here, so tests and demos use data written in the
real format with FLAIR's published statistics: the real label vocabularies
and coarse label frequencies, heavy-tailed images per user (median 2, mean
8.35, max 4,151), partitions by user, real train user ids, Flickr-sized
image ids, and smooth photo-like JPEGs of about 13 KB.

FLAIR's ``label_relationship.txt`` is not public here: the fine -> coarse map
written is synthetic (each coarse name is its own parent; parents seen
unambiguously in the published sample records are kept; the rest are drawn
with the coarse labels' frequencies from a fixed seed).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import multiprocessing
import os
import tarfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from .format import PARTITIONS
from .sources import LABEL_RELATIONSHIP_FILE

# Published FLAIR statistics.
FULL_USERS = {"train": 41_131, "val": 5_141, "test": 5_142}
FULL_IMAGES = {"train": 345_879, "val": 39_239, "test": 43_960}
MAX_IMAGES_PER_USER = 4_151
HF_FILES = {"train": 10, "val": 2, "test": 2}
IMAGE_ID_RANGE = (1_000_000_000, 42_400_000_000)

# Discretised log-normal images per user, ceil(exp(N(mu, sigma))): gives
# 25% at 1, median 2, 75% at 5 and a mean near FLAIR's 8.35.
COUNT_MU, COUNT_SIGMA = 0.3, 1.85
ROW_GROUP_ROWS = 512

SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("image_id", pa.int64()),
        ("labels", pa.list_(pa.string())),
        ("partition", pa.string()),
        ("fine_grained_labels", pa.list_(pa.string())),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ]
)


def _reference(name: str) -> bytes:
    data = resources.files("flair_zarr").joinpath("reference", name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


@dataclass(frozen=True)
class Vocabulary:
    coarse: list[str]
    coarse_weight: np.ndarray  # image frequency of each coarse label
    children: dict[str, list[str]]  # coarse -> its fine labels, most frequent first
    child_weight: dict[str, np.ndarray]

    @cached_property
    def child_cumulative(self) -> list[np.ndarray]:
        """Cumulative child weights of each coarse label, in ``coarse`` order."""
        return [np.cumsum(self.child_weight[c]) for c in self.coarse]

    @cached_property
    def relationship(self) -> dict[str, str]:
        return {fine: coarse for coarse, fines in self.children.items() for fine in fines}

    @classmethod
    def load(cls) -> Vocabulary:
        counts: dict[str, int] = json.loads(_reference("coarse_label_image_counts.json"))
        coarse = sorted(counts)
        weight = np.array([counts[c] for c in coarse], dtype=float)
        fine = _reference("fine_grained_labels_sorted.txt").decode().split()
        top: dict[str, int] = json.loads(_reference("fine_grained_label_top20_image_counts.json"))

        parent = _parents_from_samples(coarse, weight)
        rng = np.random.default_rng(1628)
        for f in fine:
            if f not in parent:
                parent[f] = coarse[rng.choice(len(coarse), p=weight / weight.sum())]

        children: dict[str, list[str]] = {c: [] for c in coarse}
        for f in fine:
            children[parent[f]].append(f)
        child_weight = {}
        for c, fines in children.items():
            # Top-20 labels keep their published counts; the rest follow a Zipf tail.
            fines.sort(key=lambda f: (-top.get(f, 0), f))
            w = np.array([top.get(f, 0) or 2000.0 / (1 + rank) for rank, f in enumerate(fines)], dtype=float)
            child_weight[c] = w / w.sum()
        return cls(coarse=coarse, coarse_weight=weight / weight.sum(), children=children, child_weight=child_weight)


def _parents_from_samples(coarse: list[str], weight: np.ndarray) -> dict[str, str]:
    """Fine -> coarse pairs consistent with the published sample records (a
    record's coarse labels are exactly its fine labels' parents): those the
    records pin down, and for the rest the most frequent coarse label allowed."""
    records = [
        (set(r["labels"]), r["fine_grained_labels"])
        for name in ("labels_and_metadata_sample_first14_train.json", "labels_and_metadata_sample_explore_images_nb_no_partition.json")
        for r in json.loads(_reference(name))
    ]
    candidates: dict[str, set[str]] = {}
    for labels, fines in records:
        for f in fines:
            candidates[f] = candidates.get(f, labels) & labels
    parent = {c: c for c in coarse}
    changed = True
    while changed:
        changed = False
        for f, options in candidates.items():
            if f not in parent and len(options) == 1:
                parent[f], changed = next(iter(options)), True
        for labels, fines in records:
            unknown = [f for f in fines if f not in parent]
            unexplained = labels - {parent[f] for f in fines if f in parent}
            if len(unknown) == 1 and len(unexplained) == 1 and unexplained <= candidates[unknown[0]]:
                parent[unknown[0]], changed = unexplained.pop(), True
        if not changed:
            open_choices = [(f, o) for f, o in candidates.items() if f not in parent]
            if open_choices:
                f, options = open_choices[0]
                parent[f], changed = max(options, key=lambda c: weight[coarse.index(c)]), True
    return parent


def _image_counts(rng: np.random.Generator, users: int) -> np.ndarray:
    counts = np.ceil(np.exp(rng.normal(COUNT_MU, COUNT_SIGMA, users)))
    return np.clip(counts, 1, MAX_IMAGES_PER_USER).astype(np.int64)


def _fit_total(rng: np.random.Generator, counts: np.ndarray, total: int) -> np.ndarray:
    """Adjust counts to sum to ``total``, changing large users most, keeping 1 <= n <= max."""
    counts = counts.copy()
    while (gap := total - int(counts.sum())) != 0:
        room = (MAX_IMAGES_PER_USER - counts) if gap > 0 else (counts - 1)
        weight = counts * (room > 0)
        step = rng.multinomial(abs(gap), weight / weight.sum())
        counts += np.sign(gap) * np.minimum(step, room)
    return counts


def _unique_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct Flickr-like photo ids in random order (most above 2**31)."""
    ids = np.unique(rng.integers(*IMAGE_ID_RANGE, size=n + n // 100 + 10, dtype=np.int64))
    while ids.size < n:
        ids = np.unique(np.concatenate([ids, rng.integers(*IMAGE_ID_RANGE, size=n, dtype=np.int64)]))
    return rng.permutation(ids)[:n]


def _nsid(rng: np.random.Generator) -> str:
    return f"{rng.integers(1_000_000, 160_000_000)}@N{rng.integers(0, 8):02d}"


@dataclass(frozen=True)
class _Users:
    user_id: list[str]
    partition: list[str]
    count: np.ndarray


def _plan_users(rng: np.random.Generator, users: int | None) -> _Users:
    """Users with partitions and image counts; ``users=None`` is full scale."""
    train_ids = _reference("train_user_ids_sorted_by_num_images_desc.txt.gz").decode().split()
    if users is None:
        per_partition = dict(FULL_USERS)
    else:
        per_partition = {"val": round(users * 0.1), "test": round(users * 0.1)}
        per_partition["train"] = users - per_partition["val"] - per_partition["test"]
    ids, partitions, counts = [], [], []
    taken = set(train_ids)
    for partition in PARTITIONS:
        n = per_partition[partition]
        c = np.sort(_image_counts(rng, n))[::-1]
        if users is None:
            if partition == "train":  # FLAIR's largest user, 9334511@N06, is first in the list
                c[0] = MAX_IMAGES_PER_USER
                c[1:] = _fit_total(rng, c[1:], FULL_IMAGES[partition] - MAX_IMAGES_PER_USER)
            else:
                c = _fit_total(rng, c, FULL_IMAGES[partition])
            c = np.sort(c)[::-1]
        if partition == "train":
            # The published list is sorted by image count, largest first.
            chosen = np.sort(rng.choice(len(train_ids), n, replace=False)) if users is not None else np.arange(n)
            names = [train_ids[i] for i in chosen]
        else:
            names = []
            while len(names) < n:
                nsid = _nsid(rng)
                if nsid not in taken:
                    taken.add(nsid)
                    names.append(nsid)
        ids += names
        partitions += [partition] * n
        counts.append(c)
    return _Users(user_id=ids, partition=partitions, count=np.concatenate(counts))


def _user_labels(rng: np.random.Generator, vocab: Vocabulary, preference: np.ndarray, n: int) -> list[tuple[list[str], list[str]]]:
    """Coarse and fine labels of a user's ``n`` images, drawn together: 1-9
    coarse labels an image (mean 2.79) without replacement by the user's
    preference (Gumbel top-k), then 1+ fine children of each (about 4.6 fine
    labels an image); the coarse labels are exactly the fine labels' parents."""
    k = np.minimum(1 + rng.poisson(1.79, n), 9)
    keys = np.log(preference) + rng.gumbel(size=(n, len(vocab.coarse)))
    ranked = np.argsort(-keys, axis=1)
    images = []
    for i in range(n):
        fine: set[str] = set()
        for c in ranked[i, : k[i]]:
            children = vocab.children[vocab.coarse[c]]
            draws = np.searchsorted(vocab.child_cumulative[c], rng.random(1 + rng.poisson(0.95)))
            fine.update(children[min(j, len(children) - 1)] for j in draws)
        fine_sorted = sorted(fine)
        images.append((sorted({vocab.relationship[f] for f in fine_sorted}), fine_sorted))
    return images


_NOISE = (np.random.default_rng(7).normal(0, 1, (512, 512, 3)) * 6).astype(np.int16)


def photo_like_jpeg(rng: np.random.Generator) -> bytes:
    """A smooth 256x256 scene (gradient, blurred shapes, sensor noise) as a JPEG
    of roughly FLAIR's size; random noise would compress nothing like a photo."""
    base = Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)).resize((96, 96), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = (int(v) for v in rng.integers(-24, 96, 2))
        w, h = (int(v) for v in rng.integers(8, 60, 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    pixels = np.asarray(base.resize((256, 256), Image.BICUBIC), dtype=np.int16)
    oy, ox = (int(v) for v in rng.integers(0, 256, 2))
    pixels += _NOISE[oy : oy + 256, ox : ox + 256]
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=int(rng.integers(80, 95)))
    return out.getvalue()


def _jpeg_batch(seed: tuple[int, ...], n: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [photo_like_jpeg(rng) for _ in range(n)]


@dataclass(frozen=True)
class SynthReport:
    users: int
    images: int
    jpeg_bytes: int
    files: int


LAYOUTS = ("hf-parquet", "apple-raw", "pfl-hdf5")
TARBALL_IMAGES = 10_000  # 43 tarballs at full scale, like Apple's download
APPLE_TARBALL_FOLDER = "images/small"
PFL_FILE = "flair_federated.hdf5"

Record = tuple[str, int, list[str], list[str], str]  # user_id, image_id, labels, fine_grained_labels, partition


def synth(out: str | os.PathLike[str], users: int | None = 200, seed: int = 0, workers: int | None = None,
          layout: str = "hf-parquet") -> SynthReport:
    """Write synthetic FLAIR to ``out`` (a new folder) in one of the public
    ``layout``s. ``users=None`` writes the full 51,414 users / 429,078 images.
    The records and JPEG bytes depend only on ``seed`` (not on the layout or
    ``workers``, the number of encoding processes), so every layout of one
    seed holds the same dataset."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    rng = np.random.default_rng(seed)
    vocab = Vocabulary.load()
    plan = _plan_users(rng, users)
    image_ids = _unique_ids(rng, int(plan.count.sum()))
    by_partition: dict[str, list[Record]] = {p: [] for p in PARTITIONS}
    next_id = 0
    # Source order is the order users come in (not sorted by id), like the JSON.
    for u in rng.permutation(len(plan.user_id)):
        preference = rng.dirichlet(vocab.coarse_weight * 5)
        preference = 0.7 * preference + 0.3 * vocab.coarse_weight
        for coarse, fine in _user_labels(rng, vocab, preference, int(plan.count[u])):
            by_partition[plan.partition[u]].append((plan.user_id[u], int(image_ids[next_id]), coarse, fine, plan.partition[u]))
            next_id += 1
    records = [r for p in PARTITIONS for r in by_partition[p]]

    root.mkdir(parents=True, exist_ok=True)
    if layout != "pfl-hdf5":  # pfl-research's file carries no fine -> coarse map
        (root / LABEL_RELATIONSHIP_FILE).write_text("".join(f"{f} -> {c}\n" for f, c in sorted(vocab.relationship.items())))
    writer = {"hf-parquet": _write_hf_parquet, "apple-raw": _write_apple_raw, "pfl-hdf5": _write_pfl_hdf5}[layout]
    sizes = [min(ROW_GROUP_ROWS, len(records) - s) for s in range(0, len(records), ROW_GROUP_ROWS)]
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        batches = pool.map(_jpeg_batch, [(seed, b) for b in range(len(sizes))], sizes)
        counted = _Counted(j for batch in batches for j in batch)
        files = writer(root, records, counted)
    return SynthReport(users=len(plan.user_id), images=len(records), jpeg_bytes=counted.bytes, files=files)


class _Counted:
    """The JPEG stream, counting its bytes."""

    def __init__(self, jpegs: Iterator[bytes]):
        self._jpegs, self.bytes = jpegs, 0

    def __iter__(self) -> Iterator[bytes]:
        for jpeg in self._jpegs:
            self.bytes += len(jpeg)
            yield jpeg


def _write_hf_parquet(root: Path, records: list[Record], jpegs: Iterable[bytes]) -> int:
    """``data/{split}-NNNNN-of-NNNNN.parquet``, rows in source order, files cut
    by row count so that users span files as in the real dataset."""
    (root / "data").mkdir()
    stream = iter(jpegs)
    files = 0
    for partition in PARTITIONS:
        rows = [r for r in records if r[4] == partition]
        n_files = max(1, min(HF_FILES[partition], len(rows)))
        per_file = math.ceil(len(rows) / n_files) if rows else 0
        for f in range(n_files):
            path = root / "data" / f"{partition}-{f:05d}-of-{n_files:05d}.parquet"
            with pq.ParquetWriter(path, SCHEMA) as out:
                for batch in _batches(rows[f * per_file : (f + 1) * per_file], ROW_GROUP_ROWS):
                    user_id, image_id, coarse, fine, split = zip(*batch)
                    images = [{"bytes": next(stream), "path": f"{i}.jpg"} for i in image_id]
                    table = pa.table({"user_id": list(user_id), "image_id": list(image_id), "labels": list(coarse),
                                      "partition": list(split), "fine_grained_labels": list(fine), "image": images}, schema=SCHEMA)
                    out.write_table(table, row_group_size=len(batch))
            files += 1
    return files


def _write_apple_raw(root: Path, records: list[Record], jpegs: Iterable[bytes]) -> int:
    """``labels_and_metadata.json`` and ``images/small/small_images-NN.tar.gz``
    (members ``small_images/{image_id}.jpg`` in record order), like ml-flair's download."""
    metadata = [{"user_id": u, "image_id": str(i), "labels": c, "partition": p, "fine_grained_labels": f} for u, i, c, f, p in records]
    (root / "labels_and_metadata.json").write_text(json.dumps(metadata, indent=1))
    folder = root / APPLE_TARBALL_FOLDER
    folder.mkdir(parents=True)
    count = min(43, max(2, math.ceil(len(records) / TARBALL_IMAGES)))
    per_tarball = math.ceil(len(records) / count)
    stream = iter(jpegs)
    for t in range(count):
        with tarfile.open(folder / f"small_images-{t:02d}.tar.gz", "w:gz") as tar:
            for _, image_id, *_ in records[t * per_tarball : (t + 1) * per_tarball]:
                data = next(stream)
                info = tarfile.TarInfo(f"small_images/{image_id}.jpg")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    return count + 1


def _write_pfl_hdf5(root: Path, records: list[Record], jpegs: Iterable[bytes]) -> int:
    """pfl-research's federated HDF5: Pillow-decoded pixels grouped by
    partition and user, sparse label indices, label mappings of the labels seen."""
    import h5py

    coarse = {label: i for i, label in enumerate(sorted({c for r in records for c in r[2]}))}
    fine = {label: i for i, label in enumerate(sorted({f for r in records for f in r[3]}))}
    stream = iter(jpegs)
    with h5py.File(root / PFL_FILE, "w") as h5:
        position = 0
        while position < len(records):
            user, partition = records[position][0], records[position][4]
            end = position
            while end < len(records) and records[end][0] == user:
                end += 1
            mine = records[position:end]
            group = h5.create_group(f"/{partition}/{user}")
            group["images"] = np.stack([np.asarray(Image.open(io.BytesIO(next(stream))).convert("RGB")) for _ in mine])
            group["image_ids"] = np.asarray([str(r[1]) for r in mine], dtype="S")
            for key, mapping, column, col_dtype in (("labels", coarse, 2, np.uint8), ("fine_grained_labels", fine, 3, np.uint16)):
                group[f"{key}_row"] = np.asarray([j for j, r in enumerate(mine) for _ in r[column]], dtype=np.uint16)
                group[f"{key}_col"] = np.asarray([mapping[label] for r in mine for label in r[column]], dtype=col_dtype)
            position = end
        h5["/metadata/label_mapping"] = json.dumps(coarse)
        h5["/metadata/fine_grained_label_mapping"] = json.dumps(fine)
    return 1


def _batches(records: list, size: int) -> Iterator[list]:
    for start in range(0, len(records), size):
        yield records[start : start + size]
