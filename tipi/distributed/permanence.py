"""The ``distributed`` permanence: joins this process to its run's process group, first of all permanences.

Built before ``device``, ``network`` and ``data`` (``permanences.distributed``
comes first in the mapping), so by the time they initialize the process
group exists and the rank's device is pinned (``cuda:<local_rank>``); they
then ask :mod:`tipi.distributed.comm` (``is_main_process``, ``wrap_ddp``,
``shard``) instead of reading ranks themselves.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from tipi.core.errors import Interrupted
from tipi.core.permanence import Permanence
from tipi.distributed import comm
from tipi.distributed.env import DistEnv, detect, export
from tipi.distributed.record import write_rank_error
from tipi.distributed.settings import Settings, cuda_present

log = logging.getLogger(__name__)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


class Distributed(Permanence):
    """One rank of a DDP run: process group, pinned device, per-rank log, rank-0-only parts.

    ``rank0_only`` maps the permanences that are rank 0's alone (the logger
    with its trackers, the progress display) to what the other ranks get
    instead, before they initialize: ``None`` (switched off) or a ``_target_``
    node (a silent progress display, so ``progress_bar()`` draws nothing
    there either). Those ranks write no metrics, start no WandB run and draw no bars.
    """

    def __init__(
        self,
        backend: str = "auto",
        nproc_per_node: int = 2,
        nnodes: int = 1,
        timeout_s: float = 300.0,
        sync_batchnorm: bool = False,
        rank0_only: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = Settings(
            backend=backend,
            nproc_per_node=nproc_per_node,
            nnodes=nnodes,
            timeout_s=timeout_s,
            sync_batchnorm=sync_batchnorm,
        )
        self.settings.check()
        self.rank0_only = dict(rank0_only or {})
        self.env = DistEnv()
        self.backend: str | None = None
        self.ranks: list[dict[str, Any]] = []
        self._owns_group = False
        self._log_handler: logging.Handler | None = None
        self._quieted: list[tuple[logging.Handler, int]] = []
        self._detached: list[logging.Handler] = []

    # -- lifecycle ----------------------------------------------------------
    def initialize(self) -> None:
        """Read the rank, pin its device, join the process group, silence the other ranks' displays."""
        self.env = env = detect()
        if env.distributed:
            export(env)
        self._add_rank_log()
        device = self.controller.permanences.get("device")
        spec = str(getattr(device, "spec", "auto"))
        on_cuda = spec.startswith("cuda") or (spec == "auto" and cuda_present())
        self.backend = self.settings.backend if self.settings.backend != "auto" else ("nccl" if on_cuda else "gloo")
        if not env.distributed:
            return
        if on_cuda:
            self._pin_cuda(device, env.local_rank)
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(
                self.backend,
                init_method="env://",
                rank=env.rank,
                world_size=env.world_size,
                timeout=timedelta(seconds=float(self.settings.timeout_s)),
            )
            self._owns_group = True
        self.controller.signals.agree = self._agree
        if env.rank != 0:
            self._quiet_console()
            self._replace_rank0_parts()
        log.info("rank %d of %d (%s, backend %s)", env.rank, env.world_size, env.source, self.backend)

    def _replace_rank0_parts(self) -> None:
        """On ranks but 0: each ``rank0_only`` permanence becomes its stand-in (they initialize after this one)."""
        from hydra.utils import instantiate

        for name, stand_in in self.rank0_only.items():
            if name not in self.controller.permanences:
                continue
            replacement = instantiate(stand_in, _convert_="all") if stand_in is not None else None
            if replacement is not None:
                replacement.attach(self.controller)
            self.controller.permanences[name] = replacement

    def _pin_cuda(self, device: Any, local_rank: int) -> None:
        import torch

        if device is not None and getattr(device, "spec", None) not in (None, f"cuda:{local_rank}"):
            device.spec = f"cuda:{local_rank}"  # one GPU a rank: the rank's local index, whatever device= said
        torch.cuda.set_device(local_rank)

    def validate(self) -> None:
        """Gather every rank's host and device; rank 0 records them in run.json."""
        device = self.controller.permanences.get("device")
        mine = {
            "rank": self.env.rank,
            "host": socket.gethostname(),
            "device": str(getattr(device, "device", None) or "cpu"),
            "pid": os.getpid(),
        }
        ranks: list[Any] = [mine]
        if self.env.distributed:
            import torch.distributed as dist

            ranks = [None] * self.env.world_size
            dist.all_gather_object(ranks, mine)
        self.ranks = [r for r in ranks if r is not None]
        record = self.controller.context.record
        if record is not None and self.env.rank == 0:
            record.update(
                distributed={
                    "world_size": self.env.world_size,
                    "backend": self.backend,
                    "started_by": self.env.source,
                    "ranks": self.ranks,
                }
            )

    def _agree(self, signum: int | None) -> int | None:
        """Every rank learns whether any rank holds a stop signal, so all stop after the same step."""
        device = getattr(self.controller.permanences.get("device"), "device", None) if self.backend == "nccl" else None
        agreed = comm.agree_on_signal(signum, device)
        if agreed is not None:
            state = getattr(self.controller.permanences.get("network"), "state", None) or {}
            log.warning(
                "rank %d: signal %d reached %s: stopped after step %s",
                self.env.rank,
                agreed,
                "this rank" if signum else "another rank",
                state.get("step", "?"),
            )
        return agreed

    def get_state(self) -> dict[str, Any]:
        """Rank, world size and backend."""
        return {"rank": self.env.rank, "world_size": self.env.world_size, "backend": self.backend}

    def cleanup(self) -> None:
        """Leave this rank's error for rank 0, wait for the others on a clean exit, leave the process group."""
        failure = sys.exc_info()[1]  # cleanup runs inside the executor's except clause when the run fails
        self.controller.signals.agree = None
        try:
            if self.env.distributed and self._owns_group:
                self._leave_group(failure)
        finally:
            self._restore_console()
            self._remove_rank_log()

    def _leave_group(self, failure: BaseException | None) -> None:
        import torch.distributed as dist

        if failure is not None and not isinstance(failure, Interrupted):
            first_line = (str(failure).splitlines() or [""])[0]
            write_rank_error(self.controller.run_dir, self.env.rank, f"{type(failure).__name__}: {first_line}")
        elif dist.is_initialized():
            try:  # rank 0 may still be writing the last checkpoint: nobody leaves before it is done
                dist.barrier()
            except Exception as exc:  # noqa: BLE001 - a peer that is gone already; leave anyway
                log.warning("rank %d: the closing barrier failed: %s", self.env.rank, exc)
        if dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    # -- logs ---------------------------------------------------------------
    def _add_rank_log(self) -> None:
        """``<run dir>/rank<N>.log``, unless a handler already writes it (torchrun's Hydra job log)."""
        path = Path(self.controller.run_dir) / f"rank{self.env.rank}.log"
        root = logging.getLogger()
        if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.absolute() for h in root.handlers):
            return
        if not self.env.distributed and self.env.source == "none":
            return  # a one-process run keeps Hydra's log only
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        self._log_handler = handler

    def _remove_rank_log(self) -> None:
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def _quiet_console(self) -> None:
        """Ranks other than 0 keep the terminal for errors only, and write no shared log (Hydra's job log)."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler is self._log_handler:
                continue
            if isinstance(handler, logging.FileHandler):
                if not handler.baseFilename.endswith(f"rank{self.env.rank}.log"):
                    root.removeHandler(handler)
                    self._detached.append(handler)
            elif isinstance(handler, logging.StreamHandler):
                self._quieted.append((handler, handler.level))
                handler.setLevel(logging.ERROR)

    def _restore_console(self) -> None:
        for handler, level in self._quieted:
            handler.setLevel(level)
        for detached in self._detached:
            logging.getLogger().addHandler(detached)
        self._quieted, self._detached = [], []
