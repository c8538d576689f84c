"""The trainer's diagnostics on a training loop tunekit does not run.

- :func:`watch`: ``monitor = tunekit.watch(model, optimizer, out="runs/mine")``, then
  ``monitor.step(loss)`` after each ``optimizer.step()``, ``monitor.epoch(val)`` and
  ``monitor.close()``; the directory reads as a ``tunekit train`` run.
- :class:`Monitor`: what :func:`watch` returns.
- :class:`LoopHost`: the trainer-like object the diagnostic hooks are bound to; a
  framework's callback (``tunekit.integrations.lightning``) drives one.
"""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._host import LoopHost, Replay
    from ._monitor import (
        Monitor,
        check_watched,
        diagnostics_config,
        watch,
        watch_hooks,
        write_summary,
    )
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
