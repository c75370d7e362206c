"""One run directory when torchrun or SLURM starts every rank with the same command line.

Each rank composes the config itself, and Hydra would resolve
``hydra.run.dir`` (``outputs/${now:...}``) in each: a second apart, or with
the directory already claimed by another rank, the ranks would write to
different directories. ``SharedRunDir`` (a Hydra callback, in
``hydra.callbacks``) runs before the directory is resolved: rank 0 resolves
it and publishes it, with its clock, through the rendezvous store; the other
ranks take both, so every ``${now:}`` in the config reads the same time, and
write no ``.hydra/`` of their own. Every rank's Hydra job log becomes
``rank<N>.log``. In any other process this does nothing (and imports no torch).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from tipi.distributed.env import DistEnv, detect

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


def _fixed_now(moment: datetime) -> None:
    OmegaConf.register_new_resolver("now", lambda pattern: moment.strftime(pattern), use_cache=True, replace=True)


class SharedRunDir(Callback):
    """Hydra callback: every rank of a torchrun/SLURM start uses rank 0's run directory and clock."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Agree on the run directory before Hydra resolves and creates it."""
        if config.get("distributed") is None:  # runner_for says what is wrong with ranks but no settings
            return
        env = detect()
        if not env.distributed or env.source == "tipi":
            return
        store = rendezvous_store(env)
        attempt = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("SLURM_JOB_ID") or "run"
        prefix = f"tipi/{attempt}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        if env.rank == 0:
            moment = datetime.now()
            _fixed_now(moment)
            run_dir = str(OmegaConf.select(config, "hydra.run.dir"))
            store.set(f"{prefix}/now", moment.isoformat())
            store.set(f"{prefix}/run_dir", run_dir)
        else:
            _fixed_now(datetime.fromisoformat(store.get(f"{prefix}/now").decode()))
            run_dir = store.get(f"{prefix}/run_dir").decode()
        with read_write(config), open_dict(config):
            config.hydra.run.dir = run_dir
            if env.rank != 0:
                config.hydra.output_subdir = None  # rank 0 alone writes .hydra/
            handler = OmegaConf.select(config, "hydra.job_logging.handlers.file", default=None)
            if isinstance(handler, DictConfig) and "filename" in handler:
                handler.filename = os.path.join(run_dir, f"rank{env.rank}.log")
