"""Where every good record goes: store order, the user table, user-aligned
blocks, and the write tasks (groups of whole users)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from . import format as fmt
from .sources import SourceIndex


@dataclass(frozen=True)
class WriteTask:
    """Whole users (positions in the user table) and their images' locations, in store order."""

    number: int
    users: np.ndarray  # int64 user positions
    counts: np.ndarray  # images of each user
    locations: np.ndarray  # (images, 3) int64


@dataclass(frozen=True)
class Layout:
    order: np.ndarray  # store sample -> source row
    users: fmt.UserTable
    blocks: tuple[int, ...]
    locations: np.ndarray  # (samples, 3): where each store sample's image is read

    @classmethod
    def of(cls, index: SourceIndex, rows: np.ndarray, locations: np.ndarray, block_images: int) -> Layout:
        """Layout of the good ``rows`` (with their image ``locations``)."""
        ranked = fmt.store_order(index.user_id[rows], index.partition[rows])
        order = rows[ranked]
        user_id = index.user_id[order]
        starts = np.flatnonzero(np.r_[True, user_id[1:] != user_id[:-1]]) if len(order) else np.array([], dtype=np.int64)
        counts = np.diff(np.r_[starts, len(order)])
        users = fmt.UserTable(
            user_id=user_id[starts], partition=index.partition[order][starts],
            start=starts.astype(np.int64), count=counts.astype(np.int64),
        )
        return cls(order=order, users=users, blocks=users.blocks(block_images), locations=locations[ranked])

    def tasks(self, task_images: int) -> list[WriteTask]:
        """Consecutive users in groups of about ``task_images`` images (a larger user alone).

        Users are grouped in the order their images sit in the source (by
        location), so that a task reads neighbouring data.
        """
        first = self.locations[self.users.start] if len(self.users.start) else np.zeros((0, 3), np.int64)
        by_source = np.lexsort((first[:, 2], first[:, 1], first[:, 0])) if len(first) else np.array([], np.int64)
        tasks, current, size = [], [], 0
        for user in by_source.tolist():
            count = int(self.users.count[user])
            if current and size + count > task_images:
                tasks.append(current)
                current, size = [], 0
            current.append(user)
            size += count
        if current:
            tasks.append(current)
        out = []
        for number, members in enumerate(tasks):
            members_array = np.array(members, dtype=np.int64)
            samples = np.concatenate([np.arange(self.users.start[u], self.users.start[u] + self.users.count[u]) for u in members])
            out.append(WriteTask(number, members_array, self.users.count[members_array], self.locations[samples]))
        return out

    def digest(self) -> str:
        """Identifies the layout, so that a resumed ingest only trusts work done for the same one."""
        h = hashlib.sha256()
        for array in (self.order, self.users.count, np.array(self.blocks), self.locations):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:16]
