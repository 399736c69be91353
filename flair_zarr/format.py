"""The flair-zarr store format: names, layout rules and image checks, in one place.

Every other module asks this one what an array is called, which dimensions it
has, how samples are grouped into user-aligned blocks, and what counts as a
valid FLAIR image.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from PIL import Image, UnidentifiedImageError

FORMAT_NAME = "flair-zarr"
FORMAT_VERSION = 1

PARTITIONS = ("train", "val", "test")
IMAGE_SHAPE = (256, 256, 3)

# Dimensions.
SAMPLE, Y, X, CHANNEL = "sample", "y", "x", "channel"
LABEL, FINE_LABEL, USER = "label", "fine_label", "user"

# Arrays: name -> dimension names.
IMAGE = "image"
LABELS = "labels"
FINE_GRAINED_LABELS = "fine_grained_labels"
USER_ID, PARTITION, IMAGE_ID = "user_id", "partition", "image_id"
FINE_LABEL_PARENT = "fine_label_parent"
USER_PARTITION, USER_START, USER_COUNT = "user_partition", "user_start", "user_count"
# Per-user checksums written at ingest: CRC32C of the user's shard object, and
# of the user's image ids and label rows (see labels_checksum).
USER_IMAGE_CRC32C, USER_LABELS_CRC32C = "user_image_crc32c", "user_labels_crc32c"

DIMENSIONS: dict[str, tuple[str, ...]] = {
    IMAGE: (SAMPLE, Y, X, CHANNEL),
    LABELS: (SAMPLE, LABEL),
    FINE_GRAINED_LABELS: (SAMPLE, FINE_LABEL),
    USER_ID: (SAMPLE,),
    PARTITION: (SAMPLE,),
    IMAGE_ID: (SAMPLE,),
    LABEL: (LABEL,),
    FINE_LABEL: (FINE_LABEL,),
    FINE_LABEL_PARENT: (FINE_LABEL,),
    USER: (USER,),
    USER_PARTITION: (USER,),
    USER_START: (USER,),
    USER_COUNT: (USER,),
    USER_IMAGE_CRC32C: (USER,),
    USER_LABELS_CRC32C: (USER,),
}
DATA_VARIABLES = (IMAGE, LABELS, FINE_GRAINED_LABELS)
# Non-dimension coordinates, listed in the root "coordinates" attribute so that
# xarray's CF decoding makes them coordinates in a plain ``xr.open_zarr``.
COORDINATES = (
    USER_ID, PARTITION, IMAGE_ID, FINE_LABEL_PARENT,
    USER_PARTITION, USER_START, USER_COUNT, USER_IMAGE_CRC32C, USER_LABELS_CRC32C,
)

# Dask chunks (and label storage chunks) hold whole users, up to this many images
# (about 100 MB of decoded pixels); a larger user is a block of its own.
BLOCK_IMAGES = 512

RECTILINEAR_ENV = "ZARR_ARRAY__RECTILINEAR_CHUNKS"

# Every coordinate's values packed into one object, so that opening a store is
# two requests (root metadata, this) instead of one per coordinate array. The
# arrays stay in the store for a plain ``xr.open_zarr``; verify checks that both
# agree. Per-sample user_id and partition are not packed: samples of a user are
# contiguous, so they repeat the per-user values.
COORDINATE_INDEX_KEY = "coordinates.npz"
INDEXED_COORDINATES = (
    IMAGE_ID, LABEL, FINE_LABEL, FINE_LABEL_PARENT, USER,
    USER_PARTITION, USER_START, USER_COUNT, USER_IMAGE_CRC32C, USER_LABELS_CRC32C,
)

# How the image array's inner chunks are encoded. Sources with JPEG files keep
# them verbatim. Decoded pixels (pfl-research's HDF5) are stored losslessly as
# WebP at its fastest setting: measured on 60 synthetic 256x256 photos
# (source JPEG 13.2 KB), WebP lossless level 0 / method 0 took 71 KB, 5.4 ms to
# encode and 1.5 ms to decode; JPEG-XL lossless effort 1 70 KB, 1.9 / 3.9 ms;
# PNG 93 KB, 12 / 1.6 ms; zstd of raw pixels 170 KB, 3.7 / 0.8 ms. Reads
# outnumber writes, so decode speed and size decide.
JPEG_ENCODING = {"codec": "imagecodecs_jpeg", "source_bytes": True}
PIXEL_ENCODING = {"codec": "imagecodecs_webp", "source_bytes": False, "lossless": True, "level": 0, "method": 0}


def image_serializer(has_jpeg: bool) -> Any:
    """The zarr serializer of the image array's inner chunks."""
    import imagecodecs.zarr

    if has_jpeg:
        return imagecodecs.zarr.Jpeg()
    return imagecodecs.zarr.Webp(lossless=True, level=PIXEL_ENCODING["level"], method=PIXEL_ENCODING["method"])


def encode_pixels(pixels: np.ndarray) -> bytes:
    """One image's pixels as the inner chunk of a pixel store (lossless WebP)."""
    import imagecodecs

    return bytes(imagecodecs.webp_encode(pixels, lossless=True, level=PIXEL_ENCODING["level"], method=PIXEL_ENCODING["method"]))


def decode_pixels(chunk: bytes, out: np.ndarray | None = None) -> np.ndarray:
    """The pixels of one inner chunk of a pixel store (into ``out`` if given)."""
    import imagecodecs

    return imagecodecs.webp_decode(chunk, out=out)


def decode_image(chunk: bytes, source_bytes: bool, out: np.ndarray | None = None) -> np.ndarray:
    """One stored image's pixels, as the image array's codec decodes them
    (libjpeg-turbo through imagecodecs, or lossless WebP), into ``out`` if
    given: the reader decodes shard objects directly, without zarr's
    per-chunk pipeline."""
    import imagecodecs

    return imagecodecs.jpeg8_decode(chunk, out=out) if source_bytes else decode_pixels(chunk, out)


def enable_zarr_features() -> None:
    """Switch on what reading a flair-zarr store needs, in this process and in
    the worker processes it starts (they inherit the environment variable).

    The JPEG codec itself is found by zarr through the ``imagecodecs-zarr``
    entry points, so Dask workers decode without any import of ours.
    """
    os.environ.setdefault(RECTILINEAR_ENV, "True")
    zarr.config.set({"array.rectilinear_chunks": True})


@dataclass(frozen=True)
class UserTable:
    """Users in store order with the contiguous run of samples each one owns."""

    user_id: np.ndarray  # str
    partition: np.ndarray  # str
    start: np.ndarray  # int64
    count: np.ndarray  # int64

    def partition_counts(self) -> dict[str, dict[str, int]]:
        """Users and images of each partition, as the root attributes record them."""
        return {p: {"users": int((self.partition == p).sum()), "images": int(self.count[self.partition == p].sum())}
                for p in PARTITIONS}

    def blocks(self, max_images: int = BLOCK_IMAGES) -> tuple[int, ...]:
        """Sample counts of consecutive user-aligned blocks.

        Users are packed greedily in store order; a block never splits a user
        and never crosses a partition boundary.
        """
        sizes: list[int] = []
        current, current_partition = 0, None
        for partition, count in zip(self.partition.tolist(), self.count.tolist()):
            if current and (current + count > max_images or partition != current_partition):
                sizes.append(current)
                current = 0
            current += count
            current_partition = partition
        if current:
            sizes.append(current)
        return tuple(sizes)


def pack_coordinates(values: dict[str, np.ndarray]) -> bytes:
    """The coordinate index object: the INDEXED_COORDINATES as a deflated npz
    file (3.2 MB for the full 429,078-image store)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: values[name] for name in INDEXED_COORDINATES})
    return buffer.getvalue()


def unpack_coordinates(data: bytes) -> dict[str, np.ndarray]:
    """Every coordinate of a store from its index object, per-sample user_id
    and partition repeated from the per-user table."""
    with np.load(io.BytesIO(data), allow_pickle=False) as packed:
        values = {name: packed[name] for name in INDEXED_COORDINATES}
    values[USER_ID] = np.repeat(values[USER], values[USER_COUNT])
    values[PARTITION] = np.repeat(values[USER_PARTITION], values[USER_COUNT])
    return values


def labels_checksum(image_id: np.ndarray, labels: np.ndarray, fine_grained_labels: np.ndarray) -> int:
    """CRC32C of one user's image ids (int64) and multi-hot label rows, as stored."""
    import google_crc32c

    data = np.ascontiguousarray(image_id, dtype="<i8").tobytes() + np.ascontiguousarray(labels).tobytes() + np.ascontiguousarray(fine_grained_labels).tobytes()
    return int(google_crc32c.value(data))


def store_order(user_id: np.ndarray, partition: np.ndarray) -> np.ndarray:
    """Permutation of source rows into store order: partitions train, val,
    test; users sorted by id within a partition; source order within a user."""
    order_key = np.array([PARTITIONS.index(p) for p in partition.tolist()], dtype=np.int8)
    return np.lexsort((np.arange(len(user_id)), user_id, order_key))


class InvalidImageError(ValueError):
    """A record's image is not a 256x256 RGB JPEG."""


# Start-of-frame markers (baseline, progressive, lossless, ...); C4, C8 and CC are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_COLOUR = {1: "L (grayscale)", 3: "RGB", 4: "CMYK"}


def check_jpeg(data: bytes) -> None:
    """Raise InvalidImageError with the reason unless ``data`` is a JPEG file
    of 256x256 pixels with three colour components.

    Reads the marker segments up to the frame header only: this runs once per
    image on the ingest's hot path, where a full decoder open costs ten times more.
    """
    if data[:2] != b"\xff\xd8":
        raise InvalidImageError(f"not a JPEG file ({_sniff(data)})")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise InvalidImageError(f"corrupt JPEG: no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _SOF_MARKERS:
            if position + 10 > len(data):
                break
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            components = data[position + 9]
            if (height, width, components) != (IMAGE_SHAPE[0], IMAGE_SHAPE[1], IMAGE_SHAPE[2]):
                colour = _COLOUR.get(components, f"{components} components")
                raise InvalidImageError(f"expected a 256x256 RGB JPEG, found {width}x{height} {colour}")
            return
        position += 2 + length
    raise InvalidImageError("truncated JPEG: no frame header")


def _sniff(data: bytes) -> str:
    """What a non-JPEG file looks like, for the error message."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"{image.format} {image.mode} {image.size[0]}x{image.size[1]}"
    except (UnidentifiedImageError, OSError):
        return "unrecognised data"
