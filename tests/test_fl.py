"""Federated loaders give each user's own arrays, as stored."""

from __future__ import annotations

import numpy as np
import pytest

import flair_zarr
from flair_zarr import format as fmt
from flair_zarr.fl import FederatedFLAIR


@pytest.fixture(scope="module")
def ds(local_store):
    return flair_zarr.open_dataset(local_store)


def test_load_user_matches_the_dataset(ds, local_store):
    fl = FederatedFLAIR(local_store, partition="train")
    assert fl.users == ds.flair.users("train")
    for user in fl.users[:10]:
        images, targets = fl.load_user(user)
        expected = ds.flair.user(user)
        np.testing.assert_array_equal(images, expected[fmt.IMAGE].values)
        assert targets.dtype == np.float32 and targets.shape == (len(images), 17)
        np.testing.assert_array_equal(targets, expected[fmt.LABELS].values.astype(np.float32))


def test_fine_labels_and_cap(ds):
    biggest = max(ds.flair.users("train"), key=lambda u: int(ds[fmt.USER_COUNT].sel(user=u)))
    count = int(ds[fmt.USER_COUNT].sel(user=biggest))
    fl = FederatedFLAIR(ds, partition="train", label_set="fine", max_images_per_user=count - 1)
    images, targets = fl.load_user(biggest)
    assert fl.num_images(biggest) == count - 1 == len(images)
    assert targets.shape == (count - 1, 1628)
    full = ds.flair.user(biggest)
    np.testing.assert_array_equal(images, full[fmt.IMAGE].values[: count - 1])  # first images in stored order
    np.testing.assert_array_equal(targets, full[fmt.FINE_GRAINED_LABELS].values[: count - 1])
    with pytest.raises(KeyError, match="not in partition 'train'"):
        fl.load_user(ds.flair.users("val")[0])
    with pytest.raises(ValueError, match="label_set"):
        FederatedFLAIR(ds, label_set="medium")


def test_cohort_sampling_and_loading(ds):
    fl = FederatedFLAIR(ds, partition="train")
    a = fl.sample_cohort(8, rng=1)
    assert a == fl.sample_cohort(8, rng=1) and len(set(a)) == 8 and set(a) <= set(fl.users)
    uniform = [fl.num_images(u) for _ in range(200) for u in fl.sample_cohort(3, rng=_)]
    weighted = [fl.num_images(u) for _ in range(200) for u in fl.sample_cohort(3, rng=_, weighted=True)]
    assert np.mean(weighted) > np.mean(uniform)
    loaded = fl.load_cohort(a)
    for user, (images, targets) in zip(a, loaded):
        np.testing.assert_array_equal(images, fl.load_user(user)[0])
    rounds = list(fl.cohorts(4, rounds=3, rng=7))
    assert len(rounds) == 3
    for ids, data in rounds:
        assert len(ids) == len(data) == 4
        assert all(len(images) == fl.num_images(u) for u, (images, _) in zip(ids, data))


def test_pfl_federated_dataset(ds):
    from pfl.data.federated_dataset import FederatedDataset

    from flair_zarr.fl import pfl_federated_dataset

    federated = pfl_federated_dataset(ds, partition="train", max_num_user_images=3, shuffle=False)
    assert isinstance(federated, FederatedDataset)
    clients = FederatedFLAIR(ds, partition="train", max_images_per_user=3)
    cohort = list(federated.get_cohort(5))
    assert len(cohort) == 5
    for user_dataset, _seed in cohort:
        images, targets = user_dataset.raw_data
        expected_images, expected_targets = clients.load_user(user_dataset.user_id)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(targets, expected_targets)
        assert len(images) <= 3 and targets.dtype == np.float32
    shuffled = pfl_federated_dataset(ds, partition="train", use_fine_grained_labels=True)
    user_dataset, _ = next(iter(shuffled.get_cohort(1)))
    images, targets = user_dataset.raw_data
    expected_images, expected_targets = FederatedFLAIR(ds, label_set="fine").load_user(user_dataset.user_id)
    assert targets.shape[1] == 1628
    assert sorted(map(bytes, images)) == sorted(map(bytes, expected_images))  # same images, pfl's shuffled order
