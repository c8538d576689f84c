"""Helpers shared by the benchmark scripts: machine description and RESULTS.md updates."""

from __future__ import annotations

import platform
import re
import statistics
import subprocess
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    """A one-line description of where the numbers were taken."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or "CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, no GPU, torch {torch.__version__}"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def write_section(title: str, body: str) -> None:
    """Replaces (or appends) the ``## title`` section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(section + "\n", text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section
    )
    RESULTS.write_text(text.rstrip() + "\n")


def write_seeds_section(
    title: str, script: str, seeds: list[int], default: list[int], body: str
) -> None:
    """Writes ``body`` under ``title``, headed by the command that reproduces it over ``seeds``."""
    cmd = f"python benchmarks/{script}"
    if seeds != default:
        cmd += " --seeds " + " ".join(map(str, seeds))
    write_section(title, f"`{cmd}`\n\n{body}")
