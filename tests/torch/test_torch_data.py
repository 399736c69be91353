"""PyTorch datasets (run by ``make test-torch``, which installs the extra)."""

from __future__ import annotations

import google_crc32c
import numpy as np
import torch
from torch.utils.data import DataLoader

from flair_zarr.fl import FederatedFLAIR
from flair_zarr.torch_data import CentralDataset, UserDataset


def _crc(image: torch.Tensor) -> int:
    return google_crc32c.value(image.contiguous().numpy().tobytes())


def test_user_dataset_equals_load_user(local_store):
    clients = FederatedFLAIR(local_store)
    user = max(clients.users, key=clients.num_images)
    images, targets = clients.load_user(user)
    dataset = UserDataset(local_store, user)
    assert len(dataset) == len(images) > 1
    for i in (0, len(images) - 1):
        image, target = dataset[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 256, 256)
        assert np.array_equal(image.numpy().transpose(1, 2, 0), images[i])
        assert target.dtype == torch.float32 and np.array_equal(target.numpy(), targets[i])
    batches = list(DataLoader(dataset, batch_size=4))
    assert torch.equal(torch.cat([b[0] for b in batches]), torch.from_numpy(images).permute(0, 3, 1, 2))


def test_user_dataset_caps_and_transforms(local_store):
    clients = FederatedFLAIR(local_store, max_images_per_user=2, label_set="fine")
    user = max(clients.users, key=lambda u: clients.image_counts[u])
    dataset = UserDataset(local_store, user, transform=lambda x: x.float() / 255, max_images_per_user=2, label_set="fine")
    image, target = dataset[1]
    assert len(dataset) == 2 and image.dtype == torch.float32 and float(image.max()) <= 1.0
    assert target.shape == (len(clients.label_names),)


def test_central_dataset_with_workers_yields_every_sample_once(local_store):
    clients = FederatedFLAIR(local_store, partition="train", max_images_per_user=None)
    expected = sorted(_crc(torch.from_numpy(image).permute(2, 0, 1)) for u in clients.users for image in clients.load_user(u)[0])
    dataset = CentralDataset(local_store, partition="train", seed=1)
    assert len(dataset) == len(expected)
    seen = []
    for images, targets in DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context="spawn"):
        assert targets.shape[1] == 17 and targets.dtype == torch.float32
        seen += [_crc(image) for image in images]
    assert sorted(seen) == expected
    first_epoch = seen[:8]
    dataset.set_epoch(1)
    second_epoch = [_crc(image) for images, _ in DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context="spawn") for image in images]
    assert sorted(second_epoch) == expected and second_epoch[:8] != first_epoch
