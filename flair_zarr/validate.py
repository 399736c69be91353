"""What may enter a store: checks on the index (labels, ids, partitions,
users) and on each image, collected as bad records with reasons, and the
quarantine report that lists every one of them."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image as PILImage

from . import format as fmt
from .sources import BadRecord, Image, SourceIndex

ON_BAD_RECORD = ("error", "skip")
SHOWN_IN_ERRORS = 20


class BadRecordsError(ValueError):
    """The source has records that cannot be ingested (and skipping was not asked for)."""


def check_index(index: SourceIndex) -> list[BadRecord]:
    """Every record the index alone shows to be bad, with its reason."""
    bad: list[BadRecord] = []
    known_bad = {b.row for b in index.bad}

    unknown = np.flatnonzero(~np.isin(index.partition, fmt.PARTITIONS))
    bad += [BadRecord(int(r), f"partition {str(index.partition[r])!r} is not one of {', '.join(fmt.PARTITIONS)}") for r in unknown]

    checked = ((index.labels, index.coarse_vocabulary, "coarse"), (index.fine_grained_labels, index.fine_vocabulary, "fine-grained"))
    for lists, vocabulary, kind in checked:
        empty = np.flatnonzero(pc.list_value_length(lists).fill_null(0).to_numpy() == 0)
        bad += [BadRecord(int(r), f"empty {kind} label list") for r in empty if r not in known_bad]
        rows = pc.list_parent_indices(lists).to_numpy()
        values = pc.list_flatten(lists)
        outside = np.flatnonzero(pc.is_null(pc.index_in(values, value_set=pa.array(vocabulary, pa.string()))).to_numpy(zero_copy_only=False))
        why = "has no parent in label_relationship.txt" if kind == "fine-grained" and index.label_relationship else "is not in the vocabulary"
        for position in outside:
            bad.append(BadRecord(int(rows[position]), f"{kind} label {values[int(position)].as_py()!r} {why}"))

    ids, counts = np.unique(index.image_id, return_counts=True)
    for image_id in ids[counts > 1].tolist():
        rows = np.flatnonzero(index.image_id == image_id)
        bad += [BadRecord(int(r), f"duplicate image_id {image_id}, also at {', '.join(index.where(int(o)) for o in rows if o != r)}") for r in rows]

    pairs = np.unique(np.stack([index.user_id, index.partition]), axis=1)
    users, per_user = np.unique(pairs[0], return_counts=True)
    for user in users[per_user > 1].tolist():
        partitions = sorted(pairs[1][pairs[0] == user].tolist())
        rows = np.flatnonzero(index.user_id == user)
        bad += [BadRecord(int(r), f"user {user} appears in partitions {', '.join(partitions)}") for r in rows]
    return bad


def image_problem(image: Image, has_jpeg: bool) -> str | None:
    """Why ``image`` cannot be stored, or None: a JPEG must be 256x256 RGB and
    decode completely (Pillow refuses truncated data); pixels must be uint8
    [256, 256, 3]."""
    if not has_jpeg:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.shape != fmt.IMAGE_SHAPE:
            return f"pixels are {array.dtype} {list(array.shape)}, expected uint8 [256, 256, 3]"
        return None
    try:
        fmt.check_jpeg(image)  # type: ignore[arg-type]
        with PILImage.open(io.BytesIO(image)) as decoded:  # type: ignore[arg-type]
            decoded.load()
    except fmt.InvalidImageError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - any decoder failure is the record's reason
        return f"corrupt JPEG ({error})"
    return None


def describe(index: SourceIndex, bad: BadRecord) -> dict[str, Any]:
    """One quarantine entry: the record's identity, where it is and why it is out."""
    if bad.row is None:
        return {"record": None, "where": bad.where, "reason": bad.reason}
    row = bad.row
    return {
        "record": row,
        "image_id": int(index.image_id[row]) if index.image_id[row] >= 0 else None,
        "user_id": str(index.user_id[row]),
        "partition": str(index.partition[row]),
        "where": bad.where or index.where(row),
        "reason": bad.reason,
    }


def merge(bad: Iterable[BadRecord]) -> dict[int | None, list[BadRecord]]:
    """Bad records by row (several reasons may name one row); non-records under None."""
    by_row: dict[int | None, list[BadRecord]] = {}
    for b in bad:
        by_row.setdefault(b.row, []).append(b)
    return by_row


def quarantine_report(index: SourceIndex, bad: list[BadRecord]) -> dict[str, Any]:
    """Every skipped record (with all its reasons) and every source entry that
    was not a record; ``records`` + ingested = the source's record count."""
    by_row = merge(bad)
    records = []
    for row in sorted(r for r in by_row if r is not None):
        entry = describe(index, by_row[row][0])
        entry["reason"] = "; ".join(dict.fromkeys(b.reason for b in by_row[row]))
        records.append(entry)
    others = [describe(index, b) for b in by_row.get(None, [])]
    return {"source_records": len(index), "quarantined_records": len(records), "records": records, "other_entries": others}


def raise_if_bad(index: SourceIndex, bad: list[BadRecord], images_checked: bool = True) -> None:
    """The error for ``on_bad_record='error'``: every bad record counted, the first ones named."""
    if not bad:
        return
    report = quarantine_report(index, bad)
    entries = report["records"] + report["other_entries"]
    lines = []
    for entry in entries[:SHOWN_IN_ERRORS]:
        who = f"image_id {entry['image_id']} (user {entry['user_id']}, {entry['where']})" if entry["record"] is not None else entry["where"]
        lines.append(f"  {who}: {entry['reason']}")
    more = f"\n  ... and {len(entries) - SHOWN_IN_ERRORS} more" if len(entries) > SHOWN_IN_ERRORS else ""
    raise BadRecordsError(
        f"{report['quarantined_records']} bad record(s) and {len(report['other_entries'])} bad source entries"
        f"{'' if images_checked else ' in the index (images not read yet)'}; nothing was committed. Use on_bad_record='skip' (--on-bad-record=skip) to ingest the rest with a quarantine report.\n"
        + "\n".join(lines) + more
    )
