"""Shard objects of the ``image`` array, built from and split into JPEG bytes.

A shard holds one user's images: the source JPEG files concatenated verbatim,
then zarr's sharding index (offset and length of each inner chunk as
little-endian uint64) and its CRC32C, at the end. This is exactly what zarr's
``sharding_indexed`` codec with the ``imagecodecs_jpeg`` inner codec reads, so
the pixels are decoded by zarr while the bytes stay those of the source.
"""

from __future__ import annotations

import struct

import google_crc32c
import numpy as np

from .format import IMAGE

_INDEX_ENTRY = 16  # offset + length, uint64 each
_CHECKSUM = 4


def shard_key(user_index: int, prefix: str = "") -> str:
    """Storage key of the shard holding the user at ``user_index`` in store order."""
    return f"{prefix}{IMAGE}/c/{user_index}/0/0/0"


def build_shard(jpegs: list[bytes]) -> bytes:
    """Concatenate JPEG files and append the sharding index with its checksum."""
    lengths = np.fromiter((len(j) for j in jpegs), dtype="<u8", count=len(jpegs))
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype("<u8")
    index = np.stack([offsets, lengths], axis=1).tobytes()
    return b"".join(jpegs) + index + struct.pack("<I", google_crc32c.value(index))


class CorruptShardError(ValueError):
    """A shard object whose index is inconsistent with its contents."""


def split_shard(data: bytes, num_images: int, key: str = "shard") -> list[bytes]:
    """Return the JPEG files of a shard built by :func:`build_shard`."""
    index_size = num_images * _INDEX_ENTRY
    if len(data) < index_size + _CHECKSUM:
        raise CorruptShardError(f"{key}: {len(data)} bytes cannot hold an index of {num_images} images")
    index = data[-index_size - _CHECKSUM : -_CHECKSUM]
    (checksum,) = struct.unpack("<I", data[-_CHECKSUM:])
    if google_crc32c.value(index) != checksum:
        raise CorruptShardError(f"{key}: shard index checksum mismatch")
    entries = np.frombuffer(index, dtype="<u8").reshape(num_images, 2)
    body = len(data) - index_size - _CHECKSUM
    if np.any(entries[:, 0] + entries[:, 1] > body):
        raise CorruptShardError(f"{key}: shard index points past the data")
    return [data[int(o) : int(o) + int(n)] for o, n in entries]
