"""Reproducible overhead measurements of tipi against baselines, run side by side.

``python -m benchmarks`` (or ``python benchmarks/run.py``) measures start-up,
per-step overhead, multirun per-job overhead, memory over many jobs and, where
a SLURM cluster is up, submit-to-summary time; each against its baseline in
the same run, interleaved A B A B. ``--quick`` finishes in under 3 minutes.

Layout: :mod:`benchmarks.run` (the command line), :mod:`benchmarks.stats`
(timing and statistics), :mod:`benchmarks.report` (goals, JSON and Markdown),
:mod:`benchmarks.docs_page` (``docs/performance.md``), one module per
measurement (``startup``, ``steps``, ``multirun``, ``memory``, ``slurm``),
``probes/`` (instruments that run inside tipi or a baseline: a timed training
process, a step clock, a no-op process, a job-clock callback), ``baselines/``
(a bare ``@hydra.main`` app and a plain PyTorch script) and ``conf/`` (a
config dir for tipi's trivial multirun jobs).
"""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
