"""The few collective operations tipi's parts need, each a no-op in a single-process run.

Permanences and processes call these instead of checking ranks themselves:
``is_main_process()`` before writing a shared file, ``all_reduce_sum`` for
evaluation sums, ``barrier`` after a checkpoint others will read. torch is
imported only once a process group exists (``torch.distributed`` is then loaded).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tipi.distributed.env import env_rank

if TYPE_CHECKING:
    import torch


def is_initialized() -> bool:
    """True when this process is a rank of an initialized process group."""
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def get_rank() -> int:
    """This process's rank (the process group's, else the environment's; 0 in a plain run)."""
    if is_initialized():
        import torch.distributed as dist

        return dist.get_rank()
    return env_rank()


def get_world_size() -> int:
    """The number of ranks (1 in a plain run)."""
    if is_initialized():
        import torch.distributed as dist

        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """True on rank 0, which alone writes the run directory's shared files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a plain run)."""
    if get_world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place."""
    if get_world_size() > 1:
        import torch.distributed as dist

        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), so all evaluate the same model."""
    if get_world_size() > 1:
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def agree_on_signal(signum: int | None, device: Any = None) -> int | None:
    """The stop signal any rank holds (the largest number), or None when none does: every rank stops together."""
    if get_world_size() <= 1:
        return signum
    import torch
    import torch.distributed as dist

    flag = torch.tensor([signum or 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    value = int(flag.item())
    return value or None


def wrap_ddp(
    model: torch.nn.Module, device: torch.device, sync_batchnorm: bool = False
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(model, what training calls)``: the latter is ``DistributedDataParallel(model)`` when there are ranks.

    With ``sync_batchnorm`` (CUDA only) BatchNorm layers become SyncBatchNorm first (same parameters).
    """
    if get_world_size() <= 1:
        return model, model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm:
        if device.type != "cuda":
            from tipi.core.errors import ConfigError

            raise ConfigError(
                "SyncBatchNorm works on CUDA devices only",
                key="distributed.sync_batchnorm",
                hint="Set distributed.sync_batchnorm=false on CPU.",
            )
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def shard(indices: list[int]) -> list[int]:
    """This rank's share of ``indices`` for evaluation: every world-size-th, no padding, none twice."""
    world = get_world_size()
    return indices[get_rank() :: world] if world > 1 else indices
