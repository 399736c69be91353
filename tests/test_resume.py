"""A SIGKILLed ingest, re-run with the same arguments, finishes without
redoing finished tasks and writes the same store as an uninterrupted run;
until then readers are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flair_zarr
from flair_zarr.reader import NotAFlairStoreError
from flair_zarr.storage import StoreExistsError

TASK_IMAGES = 16  # many small tasks, so that a kill lands between them


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(sources, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("whole") / "store.zarr"
    flair_zarr.ingest(str(sources["apple-raw"]), str(dest), task_images=TASK_IMAGES)
    return dest


def _start(source: Path, dest: Path) -> subprocess.Popen:
    script = (f"import flair_zarr; flair_zarr.ingest({str(source)!r}, {str(dest)!r}, task_images={TASK_IMAGES})")
    return subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("kill_after", ["scan", "write"])
def test_sigkill_then_resume_gives_the_same_store(kill_after, sources, uninterrupted, tmp_path):
    dest = tmp_path / "store.zarr"
    process = _start(sources["apple-raw"], dest)
    deadline = time.monotonic() + 120
    markers: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        markers = [p for p in (dest / "_ingest").glob(f"{kill_after}*/*.json")]
        if markers:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the ingest finished before it could be killed"
    assert markers, f"no {kill_after} task finished within the deadline"
    os.killpg(process.pid, signal.SIGKILL)  # the client, its cluster and workers: a crash
    process.wait()

    with pytest.raises(NotAFlairStoreError, match="has not finished"):
        flair_zarr.open_dataset(str(dest))
    with pytest.raises(StoreExistsError, match="unfinished ingest started with other arguments"):
        flair_zarr.ingest(str(sources["apple-raw"]), str(dest), task_images=TASK_IMAGES + 1)

    report = flair_zarr.ingest(str(sources["apple-raw"]), str(dest), task_images=TASK_IMAGES)
    assert report.reused_tasks >= 1
    assert _files(dest) == _files(uninterrupted)
    assert flair_zarr.open_dataset(str(dest)).sizes["sample"] == report.images


def test_rerun_after_commit_changes_nothing(sources, uninterrupted):
    before = _files(uninterrupted)
    with pytest.raises(StoreExistsError):
        flair_zarr.ingest(str(sources["hf-parquet"]), str(uninterrupted))
    assert _files(uninterrupted) == before


def test_ingest_on_a_scheduler_address(sources, dask_cluster, uninterrupted, tmp_path):
    """--scheduler ADDRESS: the tasks run on an existing cluster named by its address."""
    from flair_zarr.cli import main

    dest = tmp_path / "store.zarr"
    address = dask_cluster.scheduler.address
    assert main(["ingest", str(sources["apple-raw"]), str(dest), "--scheduler", address]) == 0
    ds = flair_zarr.open_dataset(str(dest))
    assert ds.sizes["sample"] == flair_zarr.open_dataset(str(uninterrupted)).sizes["sample"]
    assert main(["verify", str(dest), "--scheduler", address]) == 0
