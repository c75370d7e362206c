"""The rendezvous store the ranks of one run meet at, before the process group exists.

:class:`tipi._hydra.callbacks.SharedRunDir` uses it so that every rank of a
torchrun or SLURM start writes to rank 0's run directory.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from tipi.distributed.env import DistEnv

log = logging.getLogger(__name__)
_STORE: Any = None  # kept alive: on rank 0 without torchrun's agent it is the rendezvous server
_STORE_TIMEOUT_S = 300


def rendezvous_store(env: DistEnv) -> Any:
    """The TCP store at ``MASTER_ADDR:MASTER_PORT``, as torch's ``env://`` rendezvous would open it.

    Under torchrun the agent serves it and every rank is a client; otherwise
    rank 0 serves it (multi-tenant, so ``init_process_group`` later reuses it).
    """
    global _STORE
    if _STORE is None:
        from torch.distributed import TCPStore

        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        _STORE = TCPStore(
            env.master_addr,
            env.master_port,
            env.world_size,
            is_master=not agent and env.rank == 0,
            timeout=timedelta(seconds=_STORE_TIMEOUT_S),
            multi_tenant=True,
        )
    return _STORE
