"""Per-user reads from flair-zarr against the anchors, side by side in one run,
on the same synthetic FLAIR: writes docs/BENCHMARKS.md (table, ratios) and a PNG.

    make bench                                      # 2,700 users (~20,600 images)
    make bench BENCH_ARGS="--source /tmp/flair-full --workdir /tmp/bench-full"

Every reader hands back what a federated client needs: the user's images as
uint8 [n, 256, 256, 3] and float32 multi-hot coarse targets. "S3" is a real S3
server on loopback (rclone serve s3, on the same files) behind
latency_proxy.py: each request pays ``--latency-ms``, responses share
``--mbit``; requests are counted at the proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import flair_zarr
from flair_zarr import format as fmt
from flair_zarr.fl import FederatedFLAIR
from flair_zarr.sources.pfl_hdf5 import BLOCK_SIZE
from flair_zarr.synth import _write_pfl_hdf5, synth  # the same pfl-research layout `synth --layout pfl-hdf5` writes

HERE = Path(__file__).parent
CREDENTIALS = {"key": "testing", "secret": "testing"}
BUCKET = "flair"
Arrays = tuple[np.ndarray, np.ndarray]


@dataclass
class Result:
    reader: str
    where: str
    bytes_per_image: float
    first_user_s: float
    per_user_s: list[float]
    cohort_s: float
    requests_per_user: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return float(np.percentile(self.per_user_s, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.per_user_s, 99))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ObjectStorage:
    """rclone's S3 server over ``root`` (bucket = a folder) behind the latency proxy."""

    def __init__(self, root: Path, latency_ms: float, mbit: float, rclone: str):
        self.server_port, self.proxy_port = free_port(), free_port()
        self.log = Path(tempfile.mkstemp(suffix=".requests")[1])
        self.processes = [
            subprocess.Popen([rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.server_port}", "--copy-links",
                              "--auth-key", f"{CREDENTIALS['key']},{CREDENTIALS['secret']}", str(root)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, str(HERE / "latency_proxy.py"), "--listen", str(self.proxy_port),
                              "--target", str(self.server_port), "--latency-ms", str(latency_ms), "--mbit", str(mbit)],
                             stdout=self.log.open("w")),
        ]
        for port in (self.server_port, self.proxy_port):
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.1)
        self.options = {"endpoint_url": f"http://127.0.0.1:{self.proxy_port}", **CREDENTIALS}

    def requests(self) -> int:
        time.sleep(0.05)  # let the proxy flush its last lines
        return len(self.log.read_text().splitlines())

    def close(self) -> None:
        for p in self.processes:
            p.terminate()
            p.wait()


def measure(reader: str, where: str, bytes_per_image: float, open_reader: Callable[[], Callable[[str], Arrays]],
            users: list[str], cohort: list[str], storage: ObjectStorage | None,
            load_cohort: Callable[[Callable[[str], Arrays], list[str]], Any] | None = None) -> Result:
    """Time to open and read the first user, each sampled user, and the cohort."""
    began = time.perf_counter()
    read = open_reader()
    images, targets = read(users[0])
    first = time.perf_counter() - began
    assert images.shape[1:] == fmt.IMAGE_SHAPE and images.dtype == np.uint8 and targets.dtype == np.float32
    before = storage.requests() if storage else 0
    per_user = []
    for user in users:
        t = time.perf_counter()
        read(user)
        per_user.append(time.perf_counter() - t)
    requests = (storage.requests() - before) / len(users) if storage else None
    t = time.perf_counter()
    if load_cohort:
        load_cohort(read, cohort)
    else:
        for user in cohort:
            read(user)
    result = Result(reader, where, bytes_per_image, first, per_user, time.perf_counter() - t, requests)
    print(f"  {reader} [{where}]: first user {first:.2f} s, p50 {result.p50 * 1000:.1f} ms, p99 {result.p99 * 1000:.1f} ms, "
          f"cohort {result.cohort_s:.2f} s" + (f", {requests:.1f} requests/user" if requests is not None else ""), flush=True)
    return result


def flair_zarr_reader(url: str, options: dict[str, Any] | None) -> tuple[Callable[[], Callable[[str], Arrays]], Callable]:
    holder: dict[str, FederatedFLAIR] = {}

    def open_reader() -> Callable[[str], Arrays]:
        holder["clients"] = FederatedFLAIR(url, partition="train", max_images_per_user=None, storage_options=options)
        return holder["clients"].load_user

    return open_reader, lambda read, ids: holder["clients"].load_cohort(ids)


def naive_open_zarr_reader(url: str, options: dict[str, Any] | None) -> Callable[[], Callable[[str], Arrays]]:
    """``xr.open_zarr`` with its default chunks, a user's samples picked by user_id."""
    import xarray as xr

    def open_reader() -> Callable[[str], Arrays]:
        ds = xr.open_zarr(url, storage_options=options)
        user_of_sample = ds[fmt.USER_ID].values

        def read(user: str) -> Arrays:
            mine = ds.isel({fmt.SAMPLE: np.flatnonzero(user_of_sample == user)})
            return mine[fmt.IMAGE].values, mine[fmt.LABELS].values.astype(np.float32)

        return read

    return open_reader


def pfl_hdf5_reader(path: str, options: dict[str, Any] | None) -> Callable[[], Callable[[str], Arrays]]:
    """pfl-research's FLAIR loader: label mapping and per-user image counts
    first, then per user: open the file, read images and sparse labels."""
    import fsspec
    import h5py

    def open_file() -> Any:
        if options is None:
            return h5py.File(path, "r")
        # fsspec's default read-ahead of 50 MB per seek made each user take seconds;
        # this is the block cache flair-zarr's own HDF5 source reads with.
        return h5py.File(fsspec.filesystem("s3", **options).open(path, "rb", cache_type="blockcache", block_size=BLOCK_SIZE), "r")

    def open_reader() -> Callable[[str], Arrays]:
        with open_file() as h5:
            classes = len(json.loads(h5["/metadata/label_mapping"][()]))
            # pfl-research reads every user's image count up front (its sampler's weights)
            user_num_images = {user: h5[f"/train/{user}/image_ids"].shape[0] for user in h5["/train"].keys()}
        assert user_num_images, "no train users in the HDF5"

        def read(user: str) -> Arrays:
            with open_file() as h5:
                images = np.array(h5[f"/train/{user}/images"])
                targets = np.zeros((len(images), classes), dtype=np.float32)
                targets[np.array(h5[f"/train/{user}/labels_row"]), np.array(h5[f"/train/{user}/labels_col"])] = 1
            return images, targets

        return read

    return open_reader


def hf_reader(anchor: str, files: list[str], options: dict[str, Any] | None, users: list[str], cohort: list[str],
              labels: list[str], python: str, cache: Path, where: str, bytes_per_image: float,
              storage: ObjectStorage | None) -> Result:
    """An anchor run in the anchors' environment (hf_anchors.py)."""
    shutil.rmtree(cache, ignore_errors=True)
    spec = {"anchor": anchor, "files": files, "storage_options": options or {}, "users": users, "cohort": cohort,
            "labels": labels, "cache_dir": str(cache)}
    spec_file = cache.with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    before = storage.requests() if storage else 0
    out = subprocess.run([python, str(HERE / "hf_anchors.py"), str(spec_file)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{anchor}: {out.stderr[-3000:]}")
    timings = json.loads(out.stdout.strip().splitlines()[-1])
    notes = []
    if storage:  # everything is downloaded before the first user: per-user reads are local
        notes.append(f"downloads and converts every parquet file before the first user ({storage.requests() - before:,} requests), "
                     "then reads users from its local cache")
    shutil.rmtree(cache, ignore_errors=True)
    result = Result(anchor, where, bytes_per_image, timings["first_user_s"], timings["per_user_s"], timings["cohort_s"], 0.0 if storage else None,
                    notes=notes)
    print(f"  {anchor} [{where}]: first user {result.first_user_s:.2f} s, p50 {result.p50 * 1000:.1f} ms, "
          f"p99 {result.p99 * 1000:.1f} ms, cohort {result.cohort_s:.2f} s", flush=True)
    return result


def write_hdf5(source: Path, path: Path, users: set[str] | None) -> int:
    """pfl-research's HDF5 of the source's records (only ``users`` if given); images in it."""
    files = sorted((source / "data").glob("*.parquet"))
    columns = ["user_id", "image_id", "labels", "fine_grained_labels", "partition", "image"]
    records, jpegs = [], []
    for f in files:
        table = pq.read_table(f, columns=columns)
        if users is not None:
            table = table.filter(pc.is_in(table["user_id"], value_set=pa.array(sorted(users))))
        for row in table.to_pylist():
            records.append((row["user_id"], row["image_id"], row["labels"], row["fine_grained_labels"], row["partition"]))
            jpegs.append(row["image"]["bytes"])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_pfl_hdf5(path.parent, records, jpegs)
    return len(records)


def scan_against_decode_limit(store: str, limit_images: int) -> tuple[float, float, int]:
    """Images/s of a full decode of the store on a 2-worker LocalCluster, and
    of decoding the same JPEG bytes, already in the workers' memory, with the
    same decoder (libjpeg-turbo through imagecodecs) on the same cluster."""
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    ds = flair_zarr.open_dataset(store)
    n = ds.sizes[fmt.SAMPLE]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        ds[fmt.IMAGE].isel({fmt.SAMPLE: slice(0, 10)}).values  # warm the workers' imports
        t = time.perf_counter()
        firsts = da.map_blocks(lambda b: b[:, :1, :1, :1], ds[fmt.IMAGE].data, dtype=np.uint8,
                               chunks=(ds[fmt.IMAGE].data.chunks[0], (1,), (1,), (1,)))
        dask.compute(firsts)
        scan = n / (time.perf_counter() - t)

        users = ds.flair.users()
        counts = dict(zip(users, ds[fmt.USER_COUNT].values.tolist()))
        chosen, total = [], 0
        for user in users:  # users in store order up to limit_images: about as many bytes per worker task
            chosen.append(user)
            total += counts[user]
            if total >= limit_images:
                break
        groups = np.array_split(np.array(chosen), 8)
        held = [client.submit(lambda ids: [j for u in ids for j in ds.flair.jpeg_bytes(str(u))], g, pure=False) for g in groups]
        wait(held)

        def decode(jpegs: list[bytes]) -> int:
            import imagecodecs

            for j in jpegs:
                imagecodecs.jpeg_decode(j)
            return len(jpegs)

        t = time.perf_counter()
        decoded = sum(client.gather([client.submit(decode, h, pure=False) for h in held]))
        limit = decoded / (time.perf_counter() - t)
    return scan, limit, n


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and "_ingest" not in f.parts)


def write_report(out: Path, results: list[Result], scan: tuple[float, float, int], context: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = {r.where: r for r in results if r.reader == "flair-zarr"}
    lines = [f"## {context['title']}", "", f"Command: `{context['command']}`", "",
             f"Data: {context['images']:,} synthetic FLAIR images of {context['users']:,} users ({context['jpeg_bytes']:,} B of JPEG), "
             f"{len(context['sample'])} train users sampled for per-user latency ({context['sample_images']:,} images), "
             f"a cohort of {context['cohort']} other train users ({context['cohort_images']:,} images). "
             f"S3: rclone serve s3 on loopback behind the latency proxy, {context['latency_ms']:g} ms per request, "
             f"{context['mbit']:g} Mbit/s shared. Machine: {os.cpu_count()} cores. Measured {context['date']}.", "",
             "| reader | where | bytes/image | first user (s) | per user p50 (ms) | p99 (ms) | cohort (s) | cohort / one user p50 | cohort / its decode time | requests/user | p50 vs flair-zarr |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    # the cohort's images decoded from memory on all cores: the floor of any cohort load that decodes JPEG
    cohort_decode_s = context["cohort_images"] / scan[1]
    for r in results:
        mine = ours.get(r.where) or ours["local"]
        ratio = "1" if r.reader == "flair-zarr" else f"{r.p50 / mine.p50:.1f}x slower" if r.p50 >= mine.p50 else f"{mine.p50 / r.p50:.1f}x faster"
        requests = "" if r.requests_per_user is None else f"{r.requests_per_user:.1f}"
        lines.append(f"| {r.reader} | {r.where} | {r.bytes_per_image:,.0f} | {r.first_user_s:.2f} | {r.p50 * 1000:.1f} | "
                     f"{r.p99 * 1000:.1f} | {r.cohort_s:.2f} | {r.cohort_s / r.p50:.1f} | "
                     f"{r.cohort_s / cohort_decode_s:.1f} | {requests} | {ratio} |")
    notes = sorted({f"{r.reader} [{r.where}]: {n}" for r in results for n in r.notes})
    scan_rate, limit, n = scan
    lines += ["", f"Full scan of the store (local disk, 2-worker LocalCluster, every image decoded): {n:,} images at "
              f"{scan_rate:,.0f} images/s; pure JPEG decode of the same bytes in worker memory, same decoder and cluster: "
              f"{limit:,.0f} images/s; scan / limit = {scan_rate / limit:.2f}.",
              f"Store bytes / source JPEG bytes: {context['store_ratio']:.4f}.", ""]
    lines += [f"- {n}" for n in notes]
    lines += [f"- cohort / its decode time: the cohort's {context['cohort_images']:,} images decode in {cohort_decode_s:.2f} s "
              "at the decode limit below (JPEG readers cannot go under it; the HDF5 holds decoded pixels).",
              "- flair-zarr loads a cohort with up to 32 users in flight (FederatedFLAIR.load_cohort); the other readers "
              "read one user after another, as their loaders do (h5py serialises reads in a process)."]
    section = "\n".join(lines) + "\n"

    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.parent / f"benchmark-{context['tag']}.png"
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(results) + 1.5))
    names = [f"{r.reader} [{r.where}]" for r in results]
    ax.barh(names, [r.p50 * 1000 for r in results], color=["tab:blue" if r.reader == "flair-zarr" else "tab:gray" for r in results])
    ax.set_xscale("log")
    ax.set_xlabel("one user's decoded images and labels, p50 (ms, log scale)")
    ax.invert_yaxis()
    ax.set_title(context["title"])
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    section += f"\n![per-user read latency]({png.name})\n"

    text = out.read_text() if out.exists() else "# Benchmarks\n\nWritten by `benchmarks/read_benchmark.py`; each section is one run.\n"
    marker = f"<!-- {context['tag']} -->"
    head, _, rest = text.partition(marker)
    rest = rest.partition(marker)[2] if rest else ""
    out.write_text(head.rstrip() + f"\n\n{marker}\n{section}{marker}\n" + rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2700, help="synthetic users to make when --source is not given")
    parser.add_argument("--source", type=Path, help="an existing synthetic FLAIR in the Hugging Face parquet form")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/flair-read-bench"))
    parser.add_argument("--sample-users", type=int, default=100)
    parser.add_argument("--cohort", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=1000.0)
    parser.add_argument("--hdf5-all-users", action=argparse.BooleanOptionalAction, default=None,
                        help="write every user into the HDF5 (default: unless over 100,000 images: 84 GB at full scale)")
    parser.add_argument("--anchor-python", required=True, help="python of the environment with datasets<5 and flwr-datasets")
    parser.add_argument("--rclone", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--skip", nargs="*", default=[], help="readers to leave out (hf-datasets, flwr-datasets, naive, hdf5)")
    parser.add_argument("--report-from", type=Path, help="only rewrite the report from a results-*.json of an earlier run")
    args = parser.parse_args()
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        write_report(args.out, [Result(**r) for r in saved["results"]], tuple(saved["scan"]), saved["context"])
        return

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    source = args.source or work / f"source-{args.users}"
    if not source.exists():
        print(f"synth {args.users} users -> {source}", flush=True)
        synth(source, users=args.users, seed=0)
    store = work / "store.zarr"
    if not (store / fmt.COORDINATE_INDEX_KEY).exists():
        print(f"ingest -> {store}", flush=True)
        flair_zarr.ingest(str(source), str(store), overwrite=True, progress=True)
    ds = flair_zarr.open_dataset(str(store))
    n_images, jpeg_bytes = ds.sizes[fmt.SAMPLE], ds.attrs["source"]["jpeg_bytes"]
    train = ds.flair.users("train")
    rng = np.random.default_rng(0)
    picked = rng.choice(len(train), args.sample_users + args.cohort, replace=False)
    sample, cohort = [train[i] for i in picked[: args.sample_users]], [train[i] for i in picked[args.sample_users :]]
    counts = dict(zip(ds.flair.users(), ds[fmt.USER_COUNT].values.tolist()))
    labels = ds[fmt.LABEL].values.tolist()

    hdf5_all = args.hdf5_all_users if args.hdf5_all_users is not None else n_images <= 100_000
    hdf5 = work / ("hdf5-all" if hdf5_all else "hdf5-sampled") / "flair_federated.hdf5"
    if not hdf5.exists() and "hdf5" not in args.skip:
        print(f"write pfl-research HDF5 -> {hdf5}", flush=True)
        hdf5_images = write_hdf5(source, hdf5, None if hdf5_all else set(sample) | set(cohort))
        (hdf5.parent / "images").write_text(str(hdf5_images))

    bucket = work / "s3" / BUCKET
    bucket.mkdir(parents=True, exist_ok=True)
    for name, target in (("store.zarr", store), ("hdf5", hdf5.parent), ("parquet", source / "data")):
        link = bucket / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())
    storage = ObjectStorage(work / "s3", args.latency_ms, args.mbit, args.rclone)
    s3 = storage.options
    where_s3 = f"S3 +{args.latency_ms:g} ms"
    store_size = store_bytes(store)
    per_image = store_size / n_images
    results: list[Result] = []
    try:
        print("readers:", flush=True)
        for where, url, options in (("local", str(store), None), (where_s3, f"s3://{BUCKET}/store.zarr", s3)):
            open_reader, cohort_loader = flair_zarr_reader(url, options)
            results.append(measure("flair-zarr", where, per_image, open_reader, sample, cohort, storage if options else None, cohort_loader))
        if "naive" not in args.skip:
            results.append(measure("xr.open_zarr, default chunks", where_s3, per_image,
                                   naive_open_zarr_reader(f"s3://{BUCKET}/store.zarr", s3), sample, cohort, storage))
        if "hdf5" not in args.skip:
            hdf5_images = int((hdf5.parent / "images").read_text())
            per_hdf5_image = hdf5.stat().st_size / hdf5_images
            for where, path, options in (("local", str(hdf5), None), (where_s3, f"{BUCKET}/hdf5/{hdf5.name}", s3)):
                r = measure("pfl-research HDF5 (h5py)" + (" via fsspec" if options else ""), where, per_hdf5_image,
                            pfl_hdf5_reader(path, options), sample, cohort, storage if options else None)
                if not hdf5_all:
                    r.notes.append(f"the HDF5 holds only the {len(sample) + args.cohort} users read ({hdf5_images:,} images; "
                                   "all would be 84 GB, more than this disk has free): its first-user time lists fewer users than the others")
                results.append(r)
        files = sorted(str(p) for p in (source / "data").glob("train-*.parquet"))
        parquet_bytes = sum(p.stat().st_size for p in (source / "data").glob("*.parquet"))
        for anchor in ("hf-datasets", "flwr-datasets"):
            if anchor in args.skip:
                continue
            places = [("local", files, None)]
            if anchor == "hf-datasets":
                places.append((where_s3, [f"s3://{BUCKET}/parquet/{Path(f).name}" for f in files], s3))
            for where, urls, options in places:
                results.append(hf_reader(anchor, urls, options, sample, cohort, labels, args.anchor_python,
                                         work / f"hf-cache-{anchor}", where, parquet_bytes / n_images, storage if options else None))
    finally:
        storage.close()

    print("full scan against the decode limit:", flush=True)
    scan = scan_against_decode_limit(str(store), min(n_images, 20_000))
    print(f"  scan {scan[0]:,.0f} images/s, decode limit {scan[1]:,.0f} images/s", flush=True)
    context = {
        "title": f"{'Full scale' if n_images > 400_000 else 'Small scale'}: {n_images:,} images",
        "tag": "full" if n_images > 400_000 else "small",
        "command": " ".join(["python", "benchmarks/read_benchmark.py", *[a for a in sys.argv[1:]]]),
        "images": n_images, "users": len(counts), "jpeg_bytes": jpeg_bytes, "sample": sample,
        "sample_images": sum(counts[u] for u in sample), "cohort": len(cohort), "cohort_images": sum(counts[u] for u in cohort),
        "latency_ms": args.latency_ms, "mbit": args.mbit, "date": time.strftime("%Y-%m-%d"),
        "store_ratio": store_size / jpeg_bytes,
    }
    (work / f"results-{context['tag']}.json").write_text(json.dumps(
        {"results": [r.__dict__ for r in results], "scan": scan, "context": context}, indent=1))
    write_report(args.out, results, scan, context)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
