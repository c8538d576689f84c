"""``tunekit dashboard``: optuna-dashboard on the study's storage, TensorBoard on its runs."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

from tunekit.errors import TunekitError

from ._signals import end_group, start_child, stop_on_signals


def serve(
    study: str,
    *,
    out: str | None = None,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    tb_port: int = 6006,
) -> int:
    """Serves the study until Ctrl-C, SIGTERM or SIGHUP; binds ``host`` (this machine only by default).

    Raises:
        TunekitError: the study has not been searched yet (no storage to show).
    """
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise TunekitError(
            "optuna-dashboard is not installed; pip install 'tunekit[dashboard]'", field="dashboard"
        ) from None
    from ._validate import open_search

    ctx = open_search(study, out=out, storage=storage, create=False)
    check_port(host, port, "--port")
    if tb_port:
        check_port(host, tb_port, "--tb-port")
    tb: subprocess.Popen[bytes] | None = None
    # SIGTERM and SIGHUP stop the servers as Ctrl-C does; TensorBoard (and the data server it
    # starts) runs in its own process group, ended with this process however it ends.
    with stop_on_signals():
        try:
            if tb_port:
                cmd = [
                    sys.executable, "-m", "tensorboard.main",
                    "--logdir", str(ctx.study_dir), "--host", host, "--port", str(tb_port),
                ]  # fmt: skip
                tb = start_child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                print(
                    f"TensorBoard on http://{host}:{tb_port}/ (runs under {ctx.study_dir})",
                    file=sys.stderr,
                )
            print(
                f"optuna-dashboard on http://{host}:{port}/ (storage {ctx.storage_desc})",
                file=sys.stderr,
            )
            run_server(ctx.search.storage, host=host, port=port)
        except KeyboardInterrupt:
            pass
        finally:
            if tb is not None:
                end_group(tb)
    return 0


def check_port(host: str, port: int, field: str) -> None:
    """A port another process listens on is a one-line error now, not a server that never starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As the servers bind: a port in TIME_WAIT after a previous dashboard is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TunekitError(
                    f"value {port} is not allowed: port {port} on {host} is in use; "
                    f"stop what listens there or choose another {field}",
                    field=field,
                ) from None
            raise TunekitError(f"cannot bind {host}:{port}: {exc.strerror}", field=field) from None
