"""The ``flair-zarr`` command: synth, ingest, info."""

from __future__ import annotations

import argparse
import sys
import numpy as np

from . import format as fmt
from .storage import filesystem, storage_options_from


def _synth(args: argparse.Namespace) -> None:
    from .synth import synth

    report = synth(args.out, users=None if args.scale == "full" else args.users, seed=args.seed, layout=args.layout)
    print(f"wrote {report.images:,} images of {report.users:,} users in {report.files} {args.layout} files "
          f"({report.jpeg_bytes / 1e6:,.1f} MB of JPEG) to {args.out}")


def _ingest(args: argparse.Namespace) -> None:
    from .writer import ingest

    report = ingest(
        args.source, args.dest, storage_options=storage_options_from(args.option),
        source_storage_options=storage_options_from(args.source_option), overwrite=args.overwrite,
        source_format=args.source_format, on_bad_record=args.on_bad_record, scheduler=args.scheduler, progress=True,
    )
    peak = max(report.worker_peak_memory.values(), default=0)
    print(f"ingested {report.images:,} images of {report.users:,} users into {args.dest} in {report.seconds:.1f} s "
          f"({report.images / report.seconds:,.0f} images/s); {report.quarantined:,} records quarantined; "
          f"{report.reused_tasks} finished tasks reused; peak worker memory {peak / 2**20:,.0f} MiB")


def _info(args: argparse.Namespace) -> None:
    from .reader import open_dataset

    options = storage_options_from(args.option)
    ds = open_dataset(args.dest, options)
    fs, path = filesystem(args.dest, options)
    store_bytes = fs.du(path)
    counts = ds.attrs["counts"]
    source = ds.attrs["source"]
    per_user = ds[fmt.USER_COUNT].values
    blocks = ds[fmt.IMAGE].chunks[0]
    print(f"store      {args.dest}  (format {ds.attrs['flair_zarr']['format']} v{ds.attrs['flair_zarr']['version']})")
    print(f"source     {source['format']} {source['url']}")
    print(f"images     {counts['images']:,}   users {counts['users']:,}")
    for name, c in counts["partitions"].items():
        print(f"  {name:<6}   {c['images']:>9,} images  {c['users']:>7,} users")
    print(f"labels     {ds.sizes[fmt.LABEL]} coarse, {ds.sizes[fmt.FINE_LABEL]:,} fine-grained")
    print(f"records    {source['records']:,} in the source: {counts['images']:,} ingested + "
          f"{counts['quarantined_records']:,} quarantined (quarantine.json)")
    encoding = ds.attrs["image_encoding"]
    if source["jpeg_bytes"]:
        print(f"size       {store_bytes / 1e6:,.1f} MB stored, {source['jpeg_bytes'] / 1e6:,.1f} MB source JPEG "
              f"({store_bytes / source['jpeg_bytes']:.4f}x); JPEG bytes kept verbatim")
    else:
        raw = counts["images"] * 256 * 256 * 3
        print(f"size       {store_bytes / 1e6:,.1f} MB stored, {raw / 1e6:,.1f} MB of raw pixels "
              f"({store_bytes / raw:.4f}x); pixels stored losslessly with {encoding['codec']}")
    print(f"chunking   image: {len(per_user):,} shards, one per user "
          f"(images per user min {per_user.min()}, median {np.median(per_user):g}, max {per_user.max()}), one JPEG per inner chunk")
    print(f"           dask/labels: {len(blocks):,} user-aligned blocks of up to {ds.attrs['flair_zarr']['block_images']} images "
          f"(largest {max(blocks)})")


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify

    report = verify(args.dest, storage_options_from(args.option), source=args.source,
                    source_storage_options=storage_options_from(args.source_option), scheduler=args.scheduler, progress=True)
    print(report.summary())
    return 0 if report.ok else 2


def _show(args: argparse.Namespace) -> int:
    from .pictures import contact_sheet
    from .reader import open_dataset

    shown = contact_sheet(open_dataset(args.dest, storage_options_from(args.option)), args.user_id, args.output, args.max_images)
    print(f"wrote {args.output}: {shown} images of user {args.user_id}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from .pictures import statistics_figure
    from .reader import open_dataset

    statistics_figure(open_dataset(args.dest, storage_options_from(args.option)), args.output)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flair-zarr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("synth", help="write a synthetic FLAIR source (Hugging Face parquet layout)")
    p.add_argument("out")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--users", type=int, default=200, help="number of users (default 200)")
    size.add_argument("--scale", choices=["full"], help="full FLAIR size: 51,414 users, 429,078 images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=["hf-parquet", "apple-raw", "pfl-hdf5"], default="hf-parquet",
                   help="Hugging Face parquet (default), Apple's ml-flair download, or pfl-research's HDF5")
    p.set_defaults(run=_synth)

    option_help = "storage option KEY=VALUE for the store's filesystem, e.g. endpoint_url=http://127.0.0.1:5000 or anon=true"
    p = commands.add_parser("ingest", help="write a FLAIR source into a flair-zarr store")
    p.add_argument("source", help="source folder or fsspec URL")
    p.add_argument("dest", help="store: local path or fsspec URL (s3://bucket/flair.zarr)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help=option_help)
    p.add_argument("--source-option", action="append", metavar="KEY=VALUE", help="storage option for the source's filesystem")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at DEST")
    p.add_argument("--source-format", choices=["hf-parquet", "apple-raw", "pfl-hdf5"], help="default: detected from the files")
    p.add_argument("--on-bad-record", choices=["error", "skip"], default="error",
                   help="error (default): stop and name the bad records; skip: ingest the rest, list them in quarantine.json")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (default: a LocalCluster, one worker per core)")
    p.set_defaults(run=_ingest)

    p = commands.add_parser("info", help="counts, partitions, sizes and chunking of a store")
    p.add_argument("dest")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help=option_help)
    p.set_defaults(run=_info)

    p = commands.add_parser("verify", help="check every user's data against its checksums, and optionally against the source")
    p.add_argument("dest")
    p.add_argument("--source", help="also compare bit for bit with this source")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help=option_help)
    p.add_argument("--source-option", action="append", metavar="KEY=VALUE", help="storage option for the source's filesystem")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    p.set_defaults(run=_verify)

    # show and stats take -o for their picture, as plotting tools do; storage options are --option there.
    p = commands.add_parser("show", help="a contact sheet (PNG) of one user's images with their labels")
    p.add_argument("dest")
    p.add_argument("user_id")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--max-images", type=int, default=48)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help=option_help)
    p.set_defaults(run=_show)

    p = commands.add_parser("stats", help="images per user, label frequencies and partitions (PNG)")
    p.add_argument("dest")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help=option_help)
    p.set_defaults(run=_stats)

    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileExistsError, FileNotFoundError, KeyError) as error:
        print(f"flair-zarr {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
