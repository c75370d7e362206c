"""Checks that run torch work, each in worker processes: the smoke training and the 2-rank all-reduces."""

from __future__ import annotations

import socket
from typing import Any

from tipi.doctor.context import DoctorContext
from tipi.doctor.procs import ChildResult, child_env, start_worker, wait_all
from tipi.doctor.result import CheckResult, failed, ok, skipped

NO_SMOKE = "not run (--no-smoke)"
RANKS = 2


def _smoke_row(device: str, outcome: ChildResult) -> CheckResult:
    name, groups = f"smoke {device}", ("smoke",) if device == "cpu" else ("smoke", device.split(":")[0])
    data: dict[str, Any] = outcome.data
    if outcome.error:
        return failed(
            name,
            f"training on {device} failed: {outcome.error}",
            "run `python -m tipi +experiment=seg debug=fast device=...` to see the full error",
            groups,
        )
    amp = f"AMP {data['amp_dtype']}" if data["amp_dtype"] != "float32" else "float32 (no AMP off CUDA)"
    detail = (
        f"loss {data['first_loss']:.3f} -> {data['last_loss']:.3f} in {data['steps']} steps, {amp}, "
        f"{data['seconds']:.1f} s"
    )
    if not data["last_loss"] < data["first_loss"]:
        return failed(
            name,
            f"the loss did not fall: {detail}",
            "the training step does not learn on this device: check the torch build and driver",
            groups,
        )
    if not data["reloaded_on_cpu"]:
        return failed(
            name,
            f"{detail}; the checkpoint saved on {device} does not reload on the CPU",
            "check the torch version that saved and that loads the checkpoint",
            groups,
        )
    return ok(name, f"{detail}; checkpoint reloads on CPU", groups)


def check_smoke(ctx: DoctorContext) -> list[CheckResult]:
    """A few training steps of the seg model on the CPU and on every CUDA (and MPS) device, in parallel."""
    if not ctx.options.smoke:
        return [skipped("smoke cpu", NO_SMOKE, "smoke"), skipped("smoke cuda", NO_SMOKE, ("smoke", "cuda"))]
    # One CPU thread: on a shared, loaded machine torch's thread pool spins against the other
    # processes and a run of a second becomes tens of seconds (measured on the 2-core dev box).
    env = child_env(OMP_NUM_THREADS="1")
    cpu_worker = start_worker("smoke", "cpu", env=env)  # needs nothing from the torch probe: starts at once
    cuda = [f"cuda:{dev['index']}" for dev in ctx.cuda_devices()]
    mps = ["mps"] if (ctx.torch_data() or {}).get("mps_available") else []
    devices = ["cpu", *cuda, *mps]
    procs = [cpu_worker, *(start_worker("smoke", device, env=env) for device in devices[1:])]
    rows = [
        _smoke_row(device, outcome)
        for device, outcome in zip(devices, wait_all(procs, ctx.options.timeout), strict=True)
    ]
    if not cuda:
        rows.append(skipped("smoke cuda", "no CUDA device", ("smoke", "cuda")))
    return rows


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def allreduce(backend: str, timeout: float) -> list[ChildResult]:
    """A ``RANKS``-rank all-reduce over ``backend`` on this machine, one worker process a rank."""
    port = str(_free_port())
    procs = [
        start_worker(
            "allreduce",
            backend,
            env=child_env(
                RANK=str(rank),
                WORLD_SIZE=str(RANKS),
                LOCAL_RANK=str(rank),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
                TIPI_DOCTOR_TIMEOUT=str(timeout),
                OMP_NUM_THREADS="1",
            ),
        )
        for rank in range(RANKS)
    ]
    return wait_all(procs, timeout)


def _allreduce_row(backend: str, outcomes: list[ChildResult], remedy: str, group: str) -> CheckResult:
    errors = [f"rank {rank}: {o.error}" for rank, o in enumerate(outcomes) if o.error]
    if errors:
        return failed(backend, f"{RANKS}-rank all-reduce failed: {'; '.join(errors)}", remedy, group)
    sums = {o.data["sum"] for o in outcomes}
    expected = outcomes[0].data["expected"]
    if sums != {expected}:
        return failed(backend, f"{RANKS}-rank all-reduce gave {sorted(sums)}, expected {expected}", remedy, group)
    return ok(backend, f"{RANKS}-rank all-reduce correct ({expected:g})", group)


def check_distributed(ctx: DoctorContext) -> list[CheckResult]:
    """A 2-rank gloo all-reduce on the CPU always; a 2-rank NCCL all-reduce with 2+ GPUs."""
    if not ctx.options.smoke:
        return [skipped("gloo", NO_SMOKE, "distributed"), skipped("nccl", NO_SMOKE, "nccl")]
    timeout = ctx.options.timeout
    rows = [
        _allreduce_row(
            "gloo",
            allreduce("gloo", timeout),
            "set GLOO_SOCKET_IFNAME to a working interface (e.g. lo or eth0) and check that MASTER_ADDR resolves",
            "distributed",
        )
    ]
    gpus = len(ctx.cuda_devices())
    data = ctx.torch_data() or {}
    if gpus < RANKS:
        rows.append(skipped("nccl", f"needs {RANKS}+ CUDA devices (found {gpus})", "nccl"))
    elif not data.get("nccl"):
        rows.append(failed("nccl", "this torch has no NCCL", "install a CUDA build of torch with NCCL", "nccl"))
    else:
        rows.append(
            _allreduce_row(
                "nccl",
                allreduce("nccl", timeout),
                "set NCCL_DEBUG=INFO to see why; NCCL_P2P_DISABLE=1 or NCCL_SOCKET_IFNAME help on some machines",
                "nccl",
            )
        )
    return rows
