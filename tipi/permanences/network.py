"""The network permanence: model, optimizer, scheduler, training state, checkpoints.

``checkpoint()`` writes ``checkpoints/last.pt`` atomically (temp file + rename)
with everything an exact resume needs: weights, optimizer, scheduler, AMP
scaler, epoch, step, best metric and every RNG state. ``initialize()`` loads
it when the run directory has one, with ``weights_only=True``.

Mistakes are reported before a run starts: model, optimizer and scheduler
targets that do not import, do not take the configured parameters or refuse
their values, and a model that one batch of the data's shape does not pass
through (the probe of :mod:`tipi.permanences.probe`), by the builder
(``check_config``); a ``last.pt`` that is damaged or holds another model
(found without torch) when the network joins its run (``attach``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import CheckpointError, ConfigError
from tipi.core.permanence import Permanence
from tipi.distributed import barrier, get_world_size, is_main_process, wrap_ddp
from tipi.permanences.checkpoint import (
    atomic_save,
    load_checkpoint,
    peek_checkpoint,
    rng_states,
    set_rng_states,
)
from tipi.permanences.device import Device
from tipi.permanences.probe import Node, nodes, probe

_NO_AUTOCAST = contextlib.nullcontext()

__all__ = ["Network", "atomic_save", "load_checkpoint", "peek_checkpoint"]

if TYPE_CHECKING:
    import torch

    from tipi.core.check import ConfigCheck
    from tipi.core.controller import PipelineController


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _describe(model_cfg: dict[str, Any]) -> str:
    params = {k: v for k, v in model_cfg.items() if k != "_target_"}
    return f"{model_cfg.get('_target_')} {params}"


def _check_target(node: Node) -> None:
    """Import a nested ``_target_`` and check its parameters, as the builder does for top-level nodes.

    A ``_partial_`` target gets its first parameter from tipi later (the
    model's parameters for an optimizer, the optimizer for a scheduler).
    """
    import inspect

    from tipi.core.builder import HYDRA_KEYS, check_params, locate

    target = locate(node.cfg["_target_"], node.typed(f"{node.path}._target_"))
    params = {k: v for k, v in node.cfg.items() if k not in HYDRA_KEYS}
    injected: tuple[str, ...] = ()
    if node.cfg.get("_partial_"):
        try:
            injected = tuple(inspect.signature(target).parameters)[:1]
        except (TypeError, ValueError):  # no signature to check against
            return
    check_params(target, params, node.path, injected=injected, typed=node.typed)


class Network(Permanence):
    """Holds the model and its optimizer on the run's device, plus the training state."""

    def __init__(
        self, model: Any, optimizer: Any, scheduler: Any = None, amp: bool = False, checkpoint_dir: str = "checkpoints"
    ) -> None:
        self.model_cfg = _plain(model)
        self.optimizer_cfg = _plain(optimizer)
        self.scheduler_cfg = _plain(scheduler)
        for key, node in (("model", self.model_cfg), ("optimizer", self.optimizer_cfg)):
            if not isinstance(node, dict) or "_target_" not in node:
                raise ConfigError("needs a _target_ node", key=key)
        if self.scheduler_cfg and (not isinstance(self.scheduler_cfg, dict) or "_target_" not in self.scheduler_cfg):
            raise ConfigError("needs a _target_ node (or null for no schedule)", key="scheduler")
        self.amp = amp
        self.checkpoint_dir_name = checkpoint_dir
        self.model: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: Any = None
        self.device: torch.device | None = None
        self.state: dict[str, Any] = self._fresh_state()
        self.resumed_from: Path | None = None
        # the model as training runs it: inside DistributedDataParallel when there are several ranks
        self.wrapped: torch.nn.Module | None = None

    @staticmethod
    def _fresh_state() -> dict[str, Any]:
        return {
            "epoch": 0,
            "epoch_step": 0,
            "step": 0,
            "best_metric": None,
            "finished": False,
            "bad_epochs": 0,
            "history": [],
        }

    @property
    def checkpoint_dir(self) -> Path:
        """``<run dir>/checkpoints``."""
        return self.controller.run_dir / self.checkpoint_dir_name

    @classmethod
    def check_config(cls, params: Mapping[str, Any], check: ConfigCheck) -> None:
        """The builder's gate: ``checkpoint_dir`` stays inside the run directory; the model, optimizer and
        scheduler import and take their parameters, their values are accepted, and one batch of the data's
        shape passes through the model (:mod:`tipi.permanences.probe`).

        All of it before any data or network is built and before the run directory holds anything.
        """
        folder = params.get("checkpoint_dir", "checkpoints")
        inside = isinstance(folder, str) and bool(folder) and not Path(folder).is_absolute()
        check.require(
            inside and ".." not in Path(folder).parts,
            "checkpoint_dir",
            f"must be a folder name inside the run directory (like 'checkpoints'), got {folder!r}",
        )
        found = nodes(params, check)
        for node in found.values():
            if node is not None:
                _check_target(node)
        probe(found["model"], found["optimizer"], found["scheduler"], check)

    def attach(self, controller: PipelineController) -> None:
        """Join the run and check its ``last.pt`` (``check_resumable``) before any file of the run is written."""
        super().attach(controller)
        self.check_resumable()

    def _model_mismatch(self, path: Path, stored: dict[str, Any], hint: str) -> CheckpointError:
        return CheckpointError(
            f"{path} holds a different model ({_describe(stored)}) than this run's ({_describe(self.model_cfg)})",
            key="resume",
            hint=hint,
        )

    def check_resumable(self) -> None:
        """Refuse a ``last.pt`` that is damaged or holds another model, without importing torch.

        Runs when the pipeline is assembled, before the run record or any
        file of the run is written, so the bad file is left as it is.
        """
        last = self.checkpoint_dir / "last.pt"
        if not last.exists():
            return
        content = peek_checkpoint(last)
        stored = content.get("model_config") if content else None
        if isinstance(stored, dict) and stored != self.model_cfg:
            raise self._model_mismatch(
                last, stored, "Resume with the model the run was started with, or start a fresh run directory."
            )

    def initialize(self) -> None:
        """Build model, optimizer and scheduler on the device; resume from ``last.pt`` if present."""
        from hydra.utils import instantiate

        device = self.controller.find_permanence(Device)
        if device is None or device.device is None:
            raise ConfigError("the network needs an initialized Device permanence", key="permanences.device")
        self.device = device.device
        try:
            self.model = instantiate(self.model_cfg).to(self.device)
        except Exception as exc:
            raise ConfigError(f"cannot be built: {exc.__cause__ or exc}", key="model") from exc
        try:
            self.optimizer = instantiate(self.optimizer_cfg)(self.model.parameters())
        except Exception as exc:
            raise ConfigError(f"cannot be built: {exc.__cause__ or exc}", key="optimizer") from exc
        if self.scheduler_cfg:
            self.scheduler = instantiate(self.scheduler_cfg)(self.optimizer)
        if self.amp and self.device.type == "cuda":
            import torch

            self.scaler = torch.amp.GradScaler("cuda")
        # A run killed mid-write leaves its temp file behind; last.pt itself is whole.
        for stale in self.checkpoint_dir.glob(".*.pt.*.tmp"):
            stale.unlink(missing_ok=True)
        last = self.checkpoint_dir / "last.pt"
        if last.exists():
            self.load(last)  # on every rank: all ranks continue from rank 0's checkpoint
        self.state["world_size"] = get_world_size()
        # DistributedDataParallel around the model, now on the rank's device, when there are several ranks
        settings = getattr(self.controller.permanences.get("distributed"), "settings", None)
        self.model, self.wrapped = wrap_ddp(self.model, self.device, getattr(settings, "sync_batchnorm", False))

    @property
    def train_model(self) -> torch.nn.Module:
        """What a training step calls: the DDP wrapper (gradients averaged over the ranks) or the model."""
        model = self.wrapped if self.wrapped is not None else self.model
        assert model is not None
        return model

    def backward_and_step(self, loss: Any) -> None:
        """Backward pass and optimizer step, through the AMP gradient scaler when there is one."""
        assert self.optimizer is not None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def autocast(self) -> Any:
        """Mixed precision on CUDA when ``amp`` is on; otherwise a no-op context (one, reused: a step calls this)."""
        if self.scaler is not None and self.device is not None:
            import torch

            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return _NO_AUTOCAST

    def state_dict(self) -> dict[str, Any]:
        """Everything ``last.pt`` holds."""
        assert self.model is not None and self.optimizer is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "state": self.state,
            "rng": rng_states(),
            "model_config": self.model_cfg,
        }

    def load(self, path: Path) -> None:
        """Restore weights, optimizer, scheduler, state and RNG from a checkpoint."""
        assert self.model is not None and self.optimizer is not None
        ckpt = load_checkpoint(path)
        if ckpt.get("model_config") not in (None, self.model_cfg):
            raise self._model_mismatch(path, ckpt["model_config"], "Resume with the model the run was started with.")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not fit this model: {str(exc).splitlines()[0]}", key="resume") from exc
        if self.scheduler is not None and ckpt.get("scheduler"):
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = {**self._fresh_state(), **ckpt["state"]}
        saved_world, world = int(self.state.get("world_size", 1)), get_world_size()
        if saved_world != world and self.state["step"] and not self.state["finished"]:
            raise CheckpointError(
                f"{path} was written by a run of {saved_world} rank(s); this one has {world}: the per-rank batches "
                "and the sample order would change mid-training",
                key="distributed.nproc_per_node",
                hint=f"Resume with distributed.nproc_per_node={saved_world} (and as many nodes as before).",
            )
        if "rng" in ckpt:
            set_rng_states(ckpt["rng"])
        self.resumed_from = path

    def _check_finite(self, path: Path) -> None:
        """Never replace a checkpoint with weights a NaN or an overflow has reached."""
        import torch

        assert self.model is not None
        params = [p.detach() for p in self.model.parameters()]
        if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            raise CheckpointError(
                f"the weights are not finite (NaN or inf) at step {self.state['step']}; "
                f"{path.name} was not overwritten, the previous one is kept",
                key="permanences.network",
                hint="Lower optimizer.lr, or resume from the kept checkpoint.",
            )

    def checkpoint(self) -> None:
        """Write ``last.pt`` atomically (rank 0 alone when there are several ranks: their weights are equal)."""
        if self.model is not None and is_main_process():
            path = self.checkpoint_dir / "last.pt"
            self._check_finite(path)
            atomic_save(self.state_dict(), path)

    def save_best(self) -> None:
        """Write ``best.pt`` atomically (the weights with the best monitored metric so far).

        Rank 0 writes; every rank waits for it, since evaluation loads ``best.pt`` on every rank.
        """
        if self.model is not None and is_main_process():
            path = self.checkpoint_dir / "best.pt"
            self._check_finite(path)
            atomic_save(self.state_dict(), path)
        barrier()

    def get_state(self) -> dict[str, Any]:
        """Epoch, step and best metric."""
        return {k: self.state[k] for k in ("epoch", "step", "best_metric", "finished")}

    def cleanup(self) -> None:
        """Drop model and optimizer so their memory (and VRAM) is released."""
        self.model = self.optimizer = self.scheduler = self.scaler = self.wrapped = None
