"""A recipe can train a model and a dataset defined outside tunekit, named 'module:function'."""

from __future__ import annotations

import json
import sys
import textwrap

import torch

from tunekit.config import load_recipe
from tunekit.run import train

PLUGIN = textwrap.dedent(
    """
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    def blobs(n_train=256, n_val=64, classes=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        centers = 3 * torch.randn(classes, 2, generator=g)
        def make(n):
            y = torch.arange(n) % classes
            return TensorDataset(centers[y] + 0.3 * torch.randn(n, 2, generator=g), y)
        return make(n_train), make(n_val), classes

    class Net(nn.Module):
        def __init__(self, num_classes, hidden=16):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        def forward(self, x):
            return self.body(x)

    def net(num_classes, hidden=16):
        return Net(num_classes, hidden)
    """
)


def test_builder_model_and_dataset_train(tmp_path, monkeypatch):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe_path = tmp_path / "plugin.yaml"
    recipe_path.write_text(
        textwrap.dedent(
            f"""
            name: plugin
            output_dir: {tmp_path / "runs"}
            data: {{builder: "my_plugin:blobs", kwargs: {{classes: 3}}}}
            model: {{builder: "my_plugin:net", kwargs: {{hidden: 32}}}}
            optim: {{lr: 0.1}}
            train: {{epochs: 3, batch_size: 32}}
            """
        )
    )
    summary = train(load_recipe(recipe_path), out=tmp_path / "run", progress=False)
    assert summary["final"]["val/top1"] >= 0.95
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["epochs_run"] == 3
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert "body.0.weight" in state["model"]
    sys.modules.pop("my_plugin", None)
