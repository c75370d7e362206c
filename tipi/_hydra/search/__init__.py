"""tipi's search (``search=...``): Optuna studies whose trials are tipi runs, taken by asynchronous workers.

- :mod:`~tipi._hydra.search.settings`: the ``search`` group (or an Optuna-sweeper file), checked.
- :mod:`~tipi._hydra.search.space`: Hydra's sweep syntax as Optuna distributions, and back to overrides.
- :mod:`~tipi._hydra.search.study`: the study's storage, sampler, pruner, and how workers take trials.
- :mod:`~tipi._hydra.search.worker`: a worker job: ask, run the trial as a tipi run, tell.
- :mod:`~tipi._hydra.search.sweeper`: the Hydra sweeper that starts the workers.

What reads a search afterwards is in :mod:`tipi.runs.search` (``tipi-runs search status``) and
:mod:`tipi.runs.search_plot` (``search.png``).
"""
