"""``tunekit dashboard``: optuna-dashboard on the study's storage, TensorBoard on its runs."""

from __future__ import annotations

import subprocess
import sys

from tunekit.errors import TunekitError


def serve(
    study: str,
    *,
    out: str | None = None,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    tb_port: int = 6006,
) -> int:
    """Serves the study until Ctrl-C; binds ``host`` (this machine only by default)."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise TunekitError(
            "optuna-dashboard is not installed; pip install 'tunekit[dashboard]'", field="dashboard"
        ) from None
    from ._workers import open_search

    ctx = open_search(study, out=out, storage=storage)
    tb: subprocess.Popen[bytes] | None = None
    if tb_port:
        cmd = [
            sys.executable, "-m", "tensorboard.main",
            "--logdir", str(ctx.study_dir), "--host", host, "--port", str(tb_port),
        ]  # fmt: skip
        tb = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(
            f"TensorBoard on http://{host}:{tb_port}/ (runs under {ctx.study_dir})", file=sys.stderr
        )
    print(
        f"optuna-dashboard on http://{host}:{port}/ (storage {ctx.storage_desc})", file=sys.stderr
    )
    try:
        run_server(ctx.search.storage, host=host, port=port)
    except KeyboardInterrupt:
        pass
    finally:
        if tb is not None:
            tb.terminate()
            try:
                tb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tb.kill()
    return 0
