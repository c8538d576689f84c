"""The He et al. study as shipped: coco_rethinking end to end on a COCO-layout directory."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tunekit.detection import tiny_resnet
from tunekit.shapes import ShapesSpec, generate_shapes
from tunekit.testing import chromium_dom

# The study's own stages and cells; a tiny detector and one step an epoch keep it CPU-sized.
# The data stays the study's: data.name coco, read from a COCO 2017 layout.
TINY = [
    "stages.coarse.trials=1",
    "stages.coarse.steps=2",
    "stages.fine.trials=1",
    "stages.fine.epochs=1",
    "stages.final.repeat.seeds=2",
    "recipe.model.name=fcos_tiny_fpn",
    "recipe.model.width=8",
    "recipe.data.image_size=48",
    "recipe.data.augment.min_size=[48]",
    "recipe.data.augment.max_size=48",
    "recipe.data.num_workers=0",
    "recipe.train.batch_size=4",
    "recipe.train.max_steps_per_epoch=1",
    "recipe.train.device=cpu",
    "recipe.diagnostics.enabled=false",
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_coco_rethinking_runs_every_cell_on_a_coco_layout(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    root = generate_shapes(
        tmp_path / "coco", ShapesSpec(train=8, val=4, size=48, seed=5), layout="coco"
    )
    # The pretrained arm's checkpoint where the study looks for it (relative to the working
    # directory): here a tiny GN backbone's state dict instead of ImageNet's ResNet-50.
    (tmp_path / "checkpoints").mkdir()
    torch.manual_seed(0)
    torch.save(
        tiny_resnet(width=8, norm="gn").state_dict(),
        tmp_path / "checkpoints" / "resnet50_gn_imagenet.pt",
    )
    out = tmp_path / "study"
    args = ["search", "--study", "coco_rethinking", "--out", str(out), "--no-progress"]
    args += ["--set", f"recipe.data.root={root}"]
    for o in TINY:
        args += ["--set", o]
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    keys = [
        f"init={i},length_multiplier={m}" for i in ("scratch", "pretrained") for m in (1, 2, 3, 6)
    ]
    assert sorted(c["cell"] for c in summary["cells"]) == sorted(keys)
    # coarse and fine: one trial per cell; final: each cell's best again with 2 seeds.
    assert summary["counts"]["complete"] == 8 * (1 + 1 + 2)
    (rep,) = summary["repeats"]
    assert set(rep["cells"]) == set(keys) and all(r["n"] == 2 for r in rep["cells"].values())
    for cell in summary["cells"]:
        run = Path(cell["best"]["run_dir"])
        recipe = (run / "recipe.yaml").read_text()
        # The real COCO builder read the COCO 2017 names.
        assert "name: coco" in recipe and str(root) in recipe
        pretrained = cell["values"]["init"] == "pretrained"
        assert ("resnet50_gn_imagenet.pt" in recipe) == pretrained
    # The coarse stage cut every length at the same number of steps.
    coarse = [
        json.loads((Path(t["run_dir"]) / "summary.json").read_text())
        for t in _trials(out, "coarse")
    ]
    assert {r["steps"] for r in coarse} == {2}
    report = cli("report", "--study", "coco_rethinking", "--out", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (out / "report.html").read_text()
    assert "scientific comparison" in page and "init=pretrained" in page
    # Drawn, as a reader sees it: plotly wrote both figures' titles into their SVGs.
    dom = chromium_dom(out / "report.html", budget_ms=15000)
    titles = re.findall(r'class="gtitle"[^>]*>([^<]*)<', dom)
    assert any("against iterations: each cell" in t for t in titles), titles
    assert any("mean and 95% interval" in t for t in titles), titles


def _trials(out: Path, stage: str) -> list[dict[str, Any]]:
    return [{"run_dir": str(p)} for p in sorted((out / "trials" / stage).glob("*/trial-*"))]
