"""6. DDP on CPU: 2 ranks against 1 process, and tipi's DDP step against a plain torchrun DDP script.

All sides train ``+experiment=seg`` (U-Net, 64 px shapes), one thread a
process (``OMP_NUM_THREADS=1``), gloo, timed by the same
:class:`~benchmarks.probes.step_clock.StepClock` (fetch to next fetch; the
first steps are warm-up):

- Scaling, the same run: 1 process with batch 2b against 2 ranks with batch b
  each (the same global batch, so the same weights, tests/integration/test_distributed.py).
  Training samples per second = 2b / step period. Goal: 2 ranks ≥ 1.6×.
- Overhead: tipi's 2-rank step (``python -m tipi distributed=ddp``) against
  this file run as a plain DDP script under ``torchrun`` (same model, data,
  batch b a rank, DistributedSampler, DDP, the textbook loop). Goal ≤ 1.02×.

The plain script: ``torchrun --standalone --nproc_per_node=2 benchmarks/ddp.py --setup JSON --steps N --report OUT``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by torchrun: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.probes.timed_train import TimedTrainingProcess
from benchmarks.report import Row, Section
from benchmarks.seg import seg_setup
from benchmarks.startup import tipi_cmd
from benchmarks.stats import check, child_env, python, rounds, run_timed, summarize

SCALING_GOAL = 1.6
OVERHEAD_GOAL = 1.02
RANK_TIMED_TRAIN = "benchmarks.ddp.RankTimedTraining"


def _cpu_clock(stamps: list[float]) -> Any:
    """An optimizer step post-hook that records this process's CPU time (robust to a busy machine)."""
    return lambda *_: stamps.append(time.process_time())


class RankTimedTraining(TimedTrainingProcess):
    """The timed training process, plus CPU time a step; on rank N > 0 the report goes to ``<report_to>.rankN``."""

    def __init__(self, controller: Any, force: bool = False, report_to: str = "", **kwargs: Any) -> None:
        rank = int(os.environ.get("RANK", "0"))
        super().__init__(controller, force, report_to=f"{report_to}.rank{rank}" if report_to and rank else report_to,
                         **kwargs)
        self.cpu_stamps: list[float] = []

    def execute(self) -> float | None:
        """Train with both clocks attached."""
        assert self.network.optimizer is not None
        hook = self.network.optimizer.register_step_post_hook(_cpu_clock(self.cpu_stamps))
        try:
            return super().execute()
        finally:
            hook.remove()

    def _report(self, extra: dict[str, Any]) -> None:
        super()._report({**extra, "cpu": self.cpu_stamps})


def plain_ddp(setup: dict[str, Any], steps: int, report: Path) -> None:
    """The baseline: a plain DDP training script over tipi's model and data (one process of torchrun's)."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    from benchmarks.baselines.plain_train import _construct, load_vision
    from benchmarks.probes.step_clock import StepClock

    dist.init_process_group("gloo")
    unet_cls, dataset_cls = load_vision()
    torch.manual_seed(setup["seed"])
    data = setup["data"]
    train = dataset_cls(data["num_train"], image_size=data["image_size"], seed=setup["seed"] * 3 + 1,
                        noise=data["noise"], max_shapes=data["max_shapes"])
    model = unet_cls(**setup["model"])
    ddp = DistributedDataParallel(model)
    optimizer = _construct(setup["optimizer"], model.parameters())
    if setup.get("scheduler"):
        _construct(setup["scheduler"], optimizer)
    sampler: DistributedSampler[Any] = DistributedSampler(train, shuffle=True, seed=setup["seed"], drop_last=True)
    loader = DataLoader(train, batch_size=data["batch_size"], sampler=sampler, drop_last=True)
    clock = StepClock()
    cpu: list[float] = []
    model.register_forward_pre_hook(clock.on_forward)
    optimizer.register_step_post_hook(clock.on_step_end)
    optimizer.register_step_post_hook(_cpu_clock(cpu))
    ddp.train()
    for taken, (images, masks) in enumerate(clock.timed(loader), start=1):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(ddp(images), masks)
        loss.backward()
        optimizer.step()
        if taken >= steps:
            break
    if dist.get_rank() == 0:
        report.write_text(json.dumps({"threads": torch.get_num_threads(), "steps": clock.breakdown(), "cpu": cpu}),
                          encoding="utf-8")
    dist.destroy_process_group()


def _periods(report: Path, what: str, timed: Any, warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock step periods and CPU seconds a step (rank 0), after ``warmup`` steps."""
    check(timed, what)
    if not report.exists():
        raise RuntimeError(f"{what}: no report written\n{timed.stderr[-2000:]}")
    data = json.loads(report.read_text())
    if data["threads"] != 1:
        raise RuntimeError(f"{what}: ran {data['threads']} threads, not 1")
    cpu = data["cpu"][warmup:]
    return list(data["steps"]["period"][warmup:]), [b - a for a, b in itertools.pairwise(cpu)]


def run(quick: bool) -> Section:
    """All of section 6."""
    section = Section("6. DDP on CPU (gloo, 1 thread a process, `+experiment=seg`)")
    warmup, measured, repeats = (3, 16, 1) if quick else (5, 30, 3)
    setup = seg_setup()
    per_rank = setup["data"]["batch_size"] // 2
    total = warmup + measured
    setup["data"].update(num_train=total * 2 * per_rank, batch_size=per_rank)
    env = child_env(OMP_NUM_THREADS="1")
    counter = iter(range(10_000))
    with tempfile.TemporaryDirectory(prefix="tipi-bench-ddp-") as tmp:
        work = Path(tmp)

        def tipi(ranks: int) -> tuple[list[float], list[float]]:
            i = next(counter)
            report = work / f"tipi-{ranks}-{i}.json"
            cmd = tipi_cmd("+experiment=seg", "progress=none", "device=cpu", f"hydra.run.dir={work / f'run-{i}'}",
                           f"processes.train._target_={RANK_TIMED_TRAIN}", f"+processes.train.report_to={report}",
                           "processes.train.epochs=1", f"data.limit_train={total * 2 * per_rank}",
                           f"data.limit_val={2 * per_rank}", f"data.batch_size={per_rank * (3 - ranks)}",
                           "~processes.validate", "~processes.test", "~processes.result", "run.objective=val/mean_iou",
                           *(("distributed=ddp", f"distributed.nproc_per_node={ranks}") if ranks > 1 else ()))
            return _periods(report, f"tipi, {ranks} rank(s)", run_timed(cmd, work, env=env, timeout=900), warmup)

        def plain() -> tuple[list[float], list[float]]:
            report = work / f"plain-{next(counter)}.json"
            cmd = [python(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
                   "--setup", json.dumps(setup), "--steps", str(total), "--report", str(report)]
            return _periods(report, "plain torchrun DDP", run_timed(cmd, work, env=env, timeout=900), warmup)

        one, two, base = rounds([lambda: tipi(1), lambda: tipi(2), plain], repeats, warmup=0)
    p1, p2, pb = ([x for run in runs for x in run[0]] for runs in (one, two, base))
    c2, cb = ([x for run in runs for x in run[1]] for runs in (two, base))
    s1, s2, sb = summarize(p1, "ms", 1e3), summarize(p2, "ms", 1e3), summarize(pb, "ms", 1e3)
    batch = 2 * per_rank
    speedup = s1.median / s2.median
    section.rows.append(Row(f"training samples/s, 2 ranks × batch {per_rank} vs 1 process × batch {batch}",
                            f"{batch / s2.median * 1e3:.1f}/s", f"{batch / s1.median * 1e3:.1f}/s",
                            f"{speedup:.2f}×", f"≥ {SCALING_GOAL}×", speedup >= SCALING_GOAL, speedup))
    overhead = s2.median / sb.median
    section.rows.append(Row(f"DDP training step (2 ranks × batch {per_rank}), tipi vs plain torchrun script",
                            s2, sb, f"{overhead:.3f}×", f"≤ {OVERHEAD_GOAL}×", overhead <= OVERHEAD_GOAL, overhead))
    cpu_t, cpu_b = summarize(c2, "ms", 1e3), summarize(cb, "ms", 1e3)
    section.rows.append(Row("…its CPU time a step on rank 0 (what a busy machine does not change)", cpu_t, cpu_b,
                            f"{cpu_t.median / cpu_b.median:.3f}×", "", None, cpu_t.median / cpu_b.median))
    section.rows.append(Row(f"one process, batch {batch} (the scaling baseline)", s1, "", "", "", None))
    section.raw = {"one_process": one, "two_ranks": two, "plain_ddp": base, "warmup": warmup,
                   "median_ratio_per_round": [statistics.median(a[0]) / statistics.median(b[0])
                                              for a, b in zip(two, base, strict=True)]}
    section.notes.append(f"{repeats} round(s) of the three runs, {measured - 1} timed steps each after {warmup} "
                         f"warm-up steps; step period from fetch to next fetch on rank 0, median over all steps.")
    return section


def main(argv: list[str] | None = None) -> None:
    """The plain DDP script's entry point (under torchrun)."""
    parser = argparse.ArgumentParser(description="plain DDP baseline")
    parser.add_argument("--setup", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    plain_ddp(json.loads(args.setup), args.steps, args.report)


if __name__ == "__main__":
    main()
