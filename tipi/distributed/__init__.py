"""One run on many devices: DDP inside a job, one run directory (``distributed=ddp``; docs/distributed.md).

What other parts call (cheap to import; torch only once a process group exists):
``is_main_process``, ``get_rank``, ``get_world_size``, ``barrier``,
``all_reduce_sum``, ``broadcast_buffers``, ``wrap_ddp``, ``shard``.
"""

from tipi.distributed.comm import (
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    get_rank,
    get_world_size,
    is_initialized,
    is_main_process,
    shard,
    wrap_ddp,
)

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "get_rank",
    "get_world_size",
    "is_initialized",
    "is_main_process",
    "shard",
    "wrap_ddp",
]
