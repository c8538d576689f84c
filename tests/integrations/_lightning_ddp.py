"""Two CPU ranks under Lightning's DDP strategy: ``python _lightning_ddp.py OUT [NAN_AT]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from _lightning_models import Net, loaders, trainer

from tunekit.diagnostics import NonFiniteError

if __name__ == "__main__":
    out = sys.argv[1]
    nan_at = int(sys.argv[2]) if len(sys.argv) > 2 else None
    torch.manual_seed(0)
    train, val = loaders()
    t = trainer(out, devices=2, strategy="ddp", tensorboard=False)
    try:
        t.fit(Net(nan_at), train, val)
    except NonFiniteError as err:
        # Each rank says where it stopped; rank 0's file is the one the test reads.
        Path(out, f"stopped_rank{t.global_rank}.json").write_text(
            json.dumps({"step": err.step, "layer": err.layer})
        )
