"""The runs browser (``tipi-runs``, ``python -m tipi.runs``): every run and sweep on disk, read back.

It reads what runs leave behind (``run.json``, ``.hydra/``, ``metrics.jsonl``,
a sweep's ``manifest.json``) and never imports torch (but to compare the weights
of two checkpoints that differ, ``reproduce``); listing reads plain JSON
and YAML only, so a thousand run directories list in well under a second.
:mod:`tipi.runs.summary` is the one home of the sweep summary that a multirun
writes when it ends and that ``tipi-runs multirun status`` refreshes.
"""
