"""The floor every other package stands on: distributed setup and reductions, RNG state,
and atomic checkpoint files. It imports nothing from tunekit but ``errors``, so data,
models and the engine can all use it."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._batches import batch_size
    from ._checkpoint import (
        FORMAT,
        load_checkpoint,
        preserved_rng,
        rng_state,
        save_atomic,
        seed_everything,
        set_rng_state,
    )
    from ._distributed import (
        DistInfo,
        all_reduce_sum,
        any_rank,
        barrier,
        broadcast_object,
        init_distributed,
        launch,
        resolve_device,
        shutdown_distributed,
    )
    from ._kinds import BATCH_NORMS, DROPOUTS, NORMS
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
