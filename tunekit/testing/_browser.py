"""Open an HTML file in headless Chromium and read the page as it is after its scripts ran.

Reports and dashboards are tested the way a person sees them: a plotly figure
that fails to draw leaves no ``main-svg`` in the DOM, whatever the file says.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


def chromium_dom(page: str | Path, *, budget_ms: int = 5000, timeout: float = 120) -> str:
    """The DOM of ``page`` after ``budget_ms`` of (virtual) time in headless Chromium.

    Uses Debian's ``chromium``; no network is touched (background services off,
    a fresh profile each time). Raises RuntimeError when Chromium fails.
    """
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="tunekit-chromium-") as profile:
        proc = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                Path(page).resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout
