"""Federated averaging on a Dask cluster: a tiny numpy model (multi-label
logistic regression on 8x8 colour thumbnails, 17 coarse labels) trained for a
few rounds on sampled cohorts of train users. Each user is read on a worker,
by id, straight from the store (its shard and its label rows), trained on
there, and only the model update comes back.

    python examples/fedavg.py s3://bucket/flair.zarr -o anon=true [--rounds 5] [--cohort 20]
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from PIL import Image

import flair_zarr
from flair_zarr.cluster import dask_client
from flair_zarr.fl import FederatedFLAIR
from flair_zarr.storage import storage_options_from

from _common import parser

SIDE = 8  # features: the image averaged down to 8x8x3


def features(images: np.ndarray) -> np.ndarray:
    """[n, 256, 256, 3] uint8 -> [n, 193] float32: box-averaged 8x8 pixels in
    [-0.5, 0.5], and a constant 1 for the bias."""
    small = [np.asarray(Image.fromarray(image).reduce(images.shape[1] // SIDE), np.float32).ravel() for image in images]
    x = np.asarray(small, np.float32).reshape(len(images), -1) / 255 - 0.5
    return np.hstack([x, np.ones((len(x), 1), np.float32)])


def loss_and_gradient(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy over images and labels, and its gradient."""
    logits = x @ weights
    p = 1 / (1 + np.exp(-logits))
    loss = np.mean(np.logaddexp(0, logits) - y * logits)
    return float(loss), x.T @ (p - y) / y.size


def local_update(user_id: str, seed: int, weights: np.ndarray, store: dict[str, Any], epochs: int, lr: float,
                 batch: int) -> tuple[np.ndarray, int, float]:
    """On a worker: read the user, train from ``weights``; (update, images, loss before training)."""
    clients = FederatedFLAIR.shared(store["url"], store["options"], partition="train", max_images_per_user=store["max_images"])
    images, y = clients.load_user(user_id)
    x = features(images)
    loss, _ = loss_and_gradient(weights, x, y)
    local = weights.copy()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            local -= lr * loss_and_gradient(local, x[rows], y[rows])[1]
    return local - weights, len(x), loss


def evaluate(user_id: str, weights: np.ndarray, store: dict[str, Any]) -> tuple[float, int]:
    """On a worker: (summed loss, images) of a validation user."""
    clients = FederatedFLAIR.shared(store["url"], store["options"], partition="val", max_images_per_user=store["max_images"])
    images, y = clients.load_user(user_id)
    loss, _ = loss_and_gradient(weights, features(images), y)
    return loss * len(y), len(y)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cohort", type=int, default=20, help="users per round")
    p.add_argument("--epochs", type=int, default=2, help="local epochs")
    p.add_argument("--lr", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-images", type=int, default=512, help="images per user at most, as pfl-research's FLAIR benchmark")
    p.add_argument("--eval-users", type=int, default=100, help="validation users evaluated after each round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history", default="fedavg.json", help="JSON of the losses per round")
    args = p.parse_args()

    store = {"url": args.url, "options": storage_options_from(args.option), "max_images": args.max_images}
    ds = flair_zarr.open_dataset(args.url, store["options"])  # opened once for both partitions
    train = FederatedFLAIR(ds, partition="train", max_images_per_user=args.max_images)
    val = FederatedFLAIR(ds, partition="val", max_images_per_user=args.max_images)
    rng = np.random.default_rng(args.seed)
    eval_users = val.sample_cohort(min(args.eval_users, len(val)), rng)
    weights = np.zeros((SIDE * SIDE * 3 + 1, len(train.label_names)))
    history = []
    with dask_client(args.scheduler) as client:
        print(f"FedAvg: {len(train):,} train users, cohorts of {args.cohort}, {args.rounds} rounds, "
              f"{len(eval_users)} validation users, {len(client.scheduler_info()['workers'])} workers")

        def validation_loss(weights_future) -> float:
            results = client.gather(client.map(evaluate, eval_users, weights=weights_future, store=store, pure=False))
            return sum(loss for loss, _ in results) / sum(n for _, n in results)

        shared = client.scatter(weights, broadcast=True)
        print(f"round 0: validation loss {validation_loss(shared):.4f}")
        for round_number in range(1, args.rounds + 1):
            began = time.perf_counter()
            cohort = train.sample_cohort(min(args.cohort, len(train)), rng)
            seeds = rng.integers(2**31, size=len(cohort)).tolist()
            updates = client.gather(client.map(local_update, cohort, seeds, weights=shared, store=store, epochs=args.epochs,
                                               lr=args.lr, batch=args.batch, pure=False))
            images = np.array([n for _, n, _ in updates], float)
            weights = weights + sum(n * update for update, n, _ in updates) / images.sum()  # weighted by images
            train_loss = float(np.dot(images, [loss for _, _, loss in updates]) / images.sum())
            shared = client.scatter(weights, broadcast=True)
            val_loss = validation_loss(shared)
            history.append({"round": round_number, "users": len(cohort), "images": int(images.sum()),
                            "train_loss": train_loss, "validation_loss": val_loss, "seconds": time.perf_counter() - began})
            print(f"round {round_number}: {len(cohort)} users, {int(images.sum()):,} images, cohort loss before "
                  f"training {train_loss:.4f}, validation loss after {val_loss:.4f} ({history[-1]['seconds']:.1f} s)")
    with open(args.history, "w") as f:
        json.dump(history, f, indent=1)
    print(f"wrote {args.history}")


if __name__ == "__main__":
    main()
