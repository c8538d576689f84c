"""The shapes FCOS recipe from scratch, epoch by epoch, over seeds: how far above its target.

``tests/detection/test_detection_train.py`` asserts that ``recipes/shapes_fcos.yaml`` reaches
AP 0.45 and AP50 0.80 within its 8 epochs. This measures the whole curve for several seeds
(the recipe's ``seed``: initial weights and batch order; the images are the same), so the
margin of that test is a number, not a hope.

Usage::

    python benchmarks/shapes_fcos_curve.py                  # seeds 0-2, writes RESULTS.md
    python benchmarks/shapes_fcos_curve.py --seeds 0 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, write_seeds_section

from tunekit.config import load_recipe
from tunekit.run import train

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Shapes FCOS from scratch, AP by epoch (benchmarks/shapes_fcos_curve.py)"
TARGET = (0.45, 0.80)  # AP, AP50: the test's


def one_seed(seed: int, tmp: Path, shapes: Path) -> dict[str, object]:
    recipe = load_recipe(
        ROOT / "recipes" / "shapes_fcos.yaml",
        [
            f"seed={seed}",
            f"data.root={shapes}",
            f"output_dir={tmp / 'runs'}",
            "diagnostics.enabled=false",
        ],
    )
    started = time.perf_counter()
    train(recipe, out=tmp / f"s{seed}", progress=False)
    records = [json.loads(line) for line in (tmp / f"s{seed}" / "metrics.jsonl").open()]
    epochs = [r for r in records if r.get("kind") == "epoch" and "val/AP" in r]
    return {
        "seed": seed,
        "ap": [r["val/AP"] for r in epochs],
        "ap50": [r["val/AP50"] for r in epochs],
        "wall_s": time.perf_counter() - started,
    }


def render(rows: list[dict[str, object]]) -> str:
    n = max(len(r["ap"]) for r in rows)  # type: ignore[arg-type]
    head = " | ".join(f"epoch {e + 1}" for e in range(n))
    lines = [
        f"Machine: {machine()}",
        "",
        "The recipe as it is (8 epochs, 2000 training images, 200 validation images), diagnostics"
        " off. Each cell: AP / AP50 after that epoch. Target of the test: AP 0.45 and AP50 0.80.",
        "",
        f"| seed | {head} | first epoch on target |",
        "|---|" + "---|" * n + "---|",
    ]
    hits: list[int | None] = []
    for r in rows:
        ap, ap50 = r["ap"], r["ap50"]
        cells = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(ap, ap50))  # type: ignore[call-overload]
        hit = next(
            (i + 1 for i, (a, b) in enumerate(zip(ap, ap50)) if a >= TARGET[0] and b >= TARGET[1]),  # type: ignore[call-overload]
            None,
        )
        lines.append(f"| {r['seed']} | {cells} | {hit or 'never'} |")
        hits.append(hit)
    finals = [r["ap"][-1] for r in rows]  # type: ignore[index]
    on = [h for h in hits if h is not None]
    lines += [
        "",
        f"Reading: on target in {len(on)} of {len(rows)} seeds"
        + (f", after {min(on)} to {max(on)} of the {n} epochs" if on else "")
        + f"; AP after the last epoch {min(finals):.3f} to {max(finals):.3f} against the "
        f"target's {TARGET[0]}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows.append(one_seed(seed, Path(tmp), Path(tmp) / "shapes"))
            print(f"seed {seed}: AP by epoch {rows[-1]['ap']}", flush=True)
    body = render(rows)
    print(body)
    if not args.no_write:
        write_seeds_section(TITLE, "shapes_fcos_curve.py", args.seeds, [0, 1, 2], body)


if __name__ == "__main__":
    main()
