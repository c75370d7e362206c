"""``docs/performance.md``: how the numbers are made, what they mean, and the latest full run's table."""

from __future__ import annotations

INTRO = """# Performance

What tipi costs on top of what it replaces, measured by `benchmarks/`. Run it
yourself from a checkout with tipi installed:

```
python -m benchmarks            # the full run (10-15 minutes on a 2-core machine); rewrites this page
python -m benchmarks --quick    # under 3 minutes: fewer repeats, 10-20 jobs, no SLURM
python -m benchmarks --only steps multirun --threads 1   # some sections; one torch thread
```

A quick run is a smoke test of the harness and a rough reading: its
per-step and first-step rows rest on two to four runs a side, which on two
cores move by ±10% from one run to the next; judge the goals on a full run.

Every figure is measured against its baseline in the same run, the two
interleaved (A B A B ...), and reported as the median with the min–max of the
repeats as the noise. Results of every run land in `benchmarks/results/`
(JSON with all raw samples, and the Markdown table; git-ignored).

On a machine shared with other work, run with `--threads 1`: torch's default
(one thread per core) makes every operator wait for all its threads, so a
training step slows down many times over, and erratically, whenever another
process holds a core. On the 2-core machine of the table below, with two
other training processes running, a `+experiment=seg` step took about 3 s
with two threads and 0.23 s with one. Both sides always run with the same
number of threads.

1. **Start-up**: `python -m tipi --help`, `--cfg job` and errors Hydra
   detects, against a bare `@hydra.main` app that composes tipi's config tree
   with the same defaults list (`benchmarks/baselines/bare_hydra_app.py`); a
   check that none of these paths imports torch; and the time from launch to
   the first training step of `+experiment=seg` (to its forward, where the
   goal is judged, and to its end) against a plain script that imports torch,
   builds the same model, data, optimizer and scheduler and takes one step
   (`benchmarks/baselines/plain_train.py`).
2. **Per-step overhead**: tipi's training process of `+experiment=seg`, as a
   user watches it (Rich progress bars drawn as on a terminal,
   `metrics.jsonl`, WandB offline), against the plain script's textbook loop
   over the same model, data, batch size and thread count. Both are timed by
   the same hooks (`benchmarks/probes/step_clock.py`), attached to tipi's
   unmodified `TrainingProcess` through a subclass
   (`benchmarks/probes/timed_train.py`): a forward pre-hook and an optimizer
   step post-hook bound the compute, a wrapped DataLoader the fetch, and the
   rest of each iteration is the loop's own code. tipi's own per-step code is
   that rest in tipi minus the same in the plain loop (which also moves the
   batch and zeroes the gradients). Warm-up steps are not counted.
3. **Multirun**: per-job overhead of `python -m tipi -m` over trivial jobs
   (`experiment=bench_noop` from `benchmarks/conf`: one process that does
   nothing, no data, no network) against the bare Hydra app's multirun, both
   timed in-process by a Hydra callback (`benchmarks/probes/job_clock.py`).
   A third variant runs tipi with Hydra's own basic launcher
   (`hydra/launcher=basic`), to show what tipi's launcher saves.
4. **Memory**: resident memory at the end of each job of one in-process
   multirun of a small training pipeline.
5. **SLURM** (full runs, where `sinfo` answers): launch to exit of a 4-job
   sweep of trivial jobs, tipi (to its `summary.csv`) against the bare app's
   submitit sweep; and a detached submit of 50 jobs (`launcher.wait=false`).
6. **DDP on CPU**: `distributed=ddp` with 2 gloo ranks against one process
   (samples/s), and tipi's DDP step against a plain `torchrun` script
   (`benchmarks/baselines/`).
7. **Trackers**: section 2's measurement once per logger (none, WandB,
   TensorBoard, MLflow where the extra is installed, and WandB with
   TensorBoard at once, where the goal is judged), all in rounds with the
   plain loop.
8. **Pool**: a 4-job CPU sweep of small training jobs with `launcher=pool
   launcher.workers=2` (two jobs at a time, each on half the cores) against
   `launcher=local` (one after another in one process, torch's threads on
   every core), launch to exit; and the pool's own cost per job, read from
   the jobs' records: the slot handoff (release to the next job holding the
   slot) and the launcher's submit.
9. **Search**: tipi's search (`search=asha`) on small CPU trials. Pruning:
   the same seeded random search of the learning rate run twice, with ASHA
   and with `search.pruner=none`, one worker each: the epochs each spent
   (a pruned trial's epochs up to its pruning) until a complete trial first
   scored within 0.01 of the unpruned search's best, trials in the order
   they ended (goal: ASHA ≤ 0.4×), with the unpruned trials' learning curves
   replayed through Optuna's pruner in 200 other orders as context. Workers:
   a search of uneven trials (1, 3 or 6 epochs) with `launcher=pool
   launcher.workers=2`: the workers' busy fraction (each trial's span from
   its ask to its tell, in the study's journal, over the workers × the time
   from the first trial's start to the last one's end; goal ≥ 0.95), beside
   a stand-in for Hydra's Optuna sweeper that runs the same spans in batches
   of two, each batch as long as its slowest trial. Cost per trial: tipi's
   own steps around each trial (ask, compose, gate, tell, the trial's entry
   in `run.json`, each epoch's report and the pruner's decision), timed
   in-process inside a real search (`benchmarks/probes/search_clock.py`);
   goal ≤ 50 ms.

## What the figures mean

- **`--help`, `--cfg job`, errors**: both apps import Hydra and compose the
  same tree; tipi adds its own package (the engine's modules, no torch) and
  Hydra's scan of tipi's launcher plugin. Once tipi is installed that plugin
  is scanned by every Hydra app in the environment, the bare one included.
- **First training step**: both sides pay `import torch` and the import of
  `torch._dynamo` that building a `torch.optim` optimizer triggers (the two
  context rows). tipi adds Hydra: its import (about 0.14 s) and one
  composition of the config (about 0.12 s; Hydra composes a run's config
  twice, once only to read `hydra.mode`, and tipi keeps the first for the
  run: `tipi/_hydra/compose_once.py`). tipi's own work before the first step,
  timed in-process, is about 0.09 s: checking and building the pipeline
  (30 ms), the progress display (15 ms), the checkpoint after the data-load
  process (15 ms, fsynced), `run.json` (6 ms), seeding (1 ms). That tipi
  still lands within the goal is because it pauses Python's cyclic garbage
  collector while it builds and initializes the pipeline and then freezes
  what the imports created (`tipi/core/controller.py`, `cyclic_gc_paused`):
  the plain script spends about 0.36 s in five full collections that walk
  torch's objects while importing it (counted with `gc.callbacks`); tipi
  skips them.
- **Bytecode**: every measured process caches compiled modules as Python
  does by default; the harness drops a `PYTHONDONTWRITEBYTECODE` set around
  it (this sandbox sets it), which otherwise made every launch compile
  tipi's sources anew (about 40 ms more to the first step, on both sides for
  the modules they share).
- **Per-step**: tipi's own Python per step is the `atomic()` block (one
  reusable object entered and left), the step counters, keeping the step's
  loss on the device (appended to a list, summed when the loss is logged)
  and the bar's counter: about 20 µs timed inside the loop, far more than
  the same code timed alone (about 3 µs), because each step's compute has
  just evicted the interpreter's caches; a context manager built and torn
  down per step (`contextlib`'s generator) and an in-place add on the device
  per step cost about 35 µs of that before they were replaced. The rest of
  the in-loop median comes from running beside the other threads of tipi's
  process (the Rich display redrawing four times a second, WandB's). Logging
  every n steps (a host sync, a line of `metrics.jsonl`, handing the values
  to the trackers' thread) and checkpointing cost more, on those steps only
  (their own row, and the mean). On a shared machine, torch's threads wait
  on each other whenever another process takes a core, and that noise can
  exceed the overhead being measured: compare the min–max columns, or run
  `--threads 1`.
- **Multirun**: Hydra's basic sweeper composes every job's config to check
  it before the first job runs, and Hydra's basic launcher composes it again
  to run it (about 78 ms each for tipi's tree here); the bare app pays both.
  tipi's launcher (`launcher=local`, `tipi/_hydra/launchers/in_process.py`) runs each job with
  the config the check composed, and jobs that choose the same config groups
  and differ in values only (`seed=...`, `optimizer.lr=...`) are copies of one
  composed base with the job's overrides applied by Hydra's own function
  (about 5 ms), after the base reproduced the first job's config exactly.
  What remains per job is Hydra's `run_job` (copying the config, writing
  `.hydra/`, configuring logging) and tipi's task, which builds, records and
  runs the pipeline. The first job also imports torch (seeding, the device).
- **Memory**: glibc keeps memory freed by a job (tensors, datasets) for reuse
  instead of returning it, so resident memory crept up over many jobs in one
  process even when everything was released (+5.2% over 50 jobs); tipi's
  runner now hands it back after every run (`malloc_trim`), and what remains
  is the `JobReturn` (with each job's config) that Hydra's launcher keeps for
  every job until the sweep ends.
- **SLURM**: each job is a fresh process on the node; a trivial tipi job
  still imports torch (seeding and the device), which dominates its run time.
- **Pool**: on this machine two single-thread training jobs side by side
  each take about 1.5 times as long as one alone (5.9 s against 3.9 s), so
  its two cores give about 1.3 times the throughput of one at most; two
  threads in one job gain about as much (3.6 s). The pool then matches the
  in-process launcher (1.00×, missed: ≥ 1.5×) and pays a process start per
  job; with batch 16 it was 0.82× (2.1 s jobs, shorter than a process start).
  It is for GPUs and for machines whose cores are cores. Its own cost, the
  handoff of a slot to the job waiting for it, is about 10 ms; the submit of
  a job (about 0.2 s while the other jobs start up, 7 ms on an idle machine)
  runs while jobs train.
- **Search**: ASHA spent 0.27× the unpruned search's epochs, but it pruned
  the trial that would have been best (it starts slowly: it trailed at the
  first rung, epoch 1), so it never came within 0.01 of the unpruned best
  (0.312 against 0.344); replaying the unpruned trials in 200 orders through
  the same pruner, it does in 46. `search.min_epochs` (the first rung) is the
  setting that trades the two. Workers are busy 0.99 of the time while trials
  remain (batches of two: 0.89). tipi's own cost per trial is about 80 ms,
  of which the gate (checking and building the trial's pipeline, as every
  run does) is 54 ms and the search's own steps (ask, tell, journal, report)
  about 6 ms.

## Latest full run

"""


SUPPLEMENTARY = """

## Supplementary runs

Other runs on the same machine, each headed by its command, date and load.
An earlier run may predate changes to the harness; its rows say what it measured.

"""


def render(table: str, extra: list[str] | None = None) -> str:
    """The page: the fixed text above, a full run's Markdown table and any supplementary runs' tables.

    The tables' section headings move one level down, under this page's own.
    """
    page = INTRO + table.replace("### ", "#### ")
    if extra:
        page = page.rstrip() + SUPPLEMENTARY + "\n\n".join(t.replace("### ", "#### ").rstrip() for t in extra) + "\n"
    return page
