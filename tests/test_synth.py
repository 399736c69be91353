"""Synthetic FLAIR follows the published statistics and the real format."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pyarrow.parquet as pq

from flair_zarr.storage import storage_options_from
from flair_zarr.synth import FULL_IMAGES, FULL_USERS, MAX_IMAGES_PER_USER, Vocabulary, _plan_users


def test_full_scale_plan_matches_published_counts():
    plan = _plan_users(np.random.default_rng(0), None)
    counts = plan.count
    partition = np.array(plan.partition)
    for name in FULL_USERS:
        assert (partition == name).sum() == FULL_USERS[name]
        assert counts[partition == name].sum() == FULL_IMAGES[name]
    assert len(set(plan.user_id)) == 51_414
    assert counts.max() == MAX_IMAGES_PER_USER and plan.user_id[int(counts.argmax())] == "9334511@N06"
    assert np.percentile(counts, 25) == 1 and np.median(counts) == 2 and np.percentile(counts, 75) == 5
    assert abs(counts.mean() - 8.35) < 0.01


def test_vocabulary_is_flairs():
    vocab = Vocabulary.load()
    assert len(vocab.coarse) == 17 and len(vocab.relationship) == 1628
    assert all(vocab.relationship[c] == c for c in vocab.coarse)
    # parents agree with the published sample records
    for name in ("labels_and_metadata_sample_first14_train.json", "labels_and_metadata_sample_explore_images_nb_no_partition.json"):
        for record in json.loads(resources.files("flair_zarr").joinpath("reference", name).read_text()):
            assert {vocab.relationship[f] for f in record["fine_grained_labels"]} <= set(record["labels"]), record


def test_source_is_in_hf_layout_with_consistent_labels(source, source_rows):
    files = sorted(p.name for p in (source / "data").glob("*.parquet"))
    assert "train-00000-of-00010.parquet" in files and "val-00001-of-00002.parquet" in files
    schema = pq.read_schema(source / "data" / files[0])
    assert schema.names == ["user_id", "image_id", "labels", "partition", "fine_grained_labels", "image"]
    relationship = dict(line.split(" -> ") for line in (source / "label_relationship.txt").read_text().splitlines())
    sizes = []
    for _, record in source_rows:
        assert sorted({relationship[f] for f in record.fine_grained_labels}) == sorted(record.labels)
        assert record.jpeg[:2] == b"\xff\xd8"
        sizes.append(len(record.jpeg))
    assert 8_000 < np.mean(sizes) < 20_000


def test_a_user_spans_two_parquet_files(source):
    last_users = [pq.read_table(p, columns=["user_id"])["user_id"][-1].as_py() for p in sorted((source / "data").glob("train-*"))]
    first_users = [pq.read_table(p, columns=["user_id"])["user_id"][0].as_py() for p in sorted((source / "data").glob("train-*"))]
    assert any(a == b for a, b in zip(last_users, first_users[1:]))


def test_storage_option_parsing():
    assert storage_options_from(["anon=true", "endpoint_url=http://127.0.0.1:9000", "client_kwargs.region_name=us-east-1", "max_concurrency=8"]) == {
        "anon": True,
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "us-east-1"},
        "max_concurrency": 8,
    }
