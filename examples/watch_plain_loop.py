"""A plain PyTorch loop on scikit-learn's digits, watched by tunekit (a few seconds on a CPU).

python examples/watch_plain_loop.py runs/watched
tunekit report runs/watched && tunekit diagnose runs/watched
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tunekit


def main(out: str = "runs/watched", epochs: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    train = DataLoader(TensorDataset(x[:1500], y[:1500]), batch_size=64, shuffle=True)
    val_x, val_y = x[1500:], y[1500:]
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    with tunekit.watch(model, optimizer, out=out, steps_per_epoch=len(train), epochs=epochs) as m:
        for _ in range(epochs):
            model.train()
            for xb, yb in train:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                m.step(loss)
            model.eval()
            with torch.no_grad():
                logits = model(val_x)
            record = m.epoch(
                {
                    "loss": F.cross_entropy(logits, val_y).item(),
                    "top1": (logits.argmax(1) == val_y).float().mean().item(),
                }
            )
    return record


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
