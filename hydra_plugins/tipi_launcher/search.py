"""tipi's search sweeper (``search=...``), declared where Hydra instantiates sweepers from.

The behaviour lives in :mod:`tipi._hydra.search`.
"""

from tipi._hydra.search.sweeper import Search as _Search


class SearchSweeper(_Search):
    """``search=asha|hyperband|median|tpe``: asynchronous Optuna workers with pruning (docs/search.md)."""
