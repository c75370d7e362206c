"""The script-to-pipeline journey, level 0 to 5: see docs/journey.md.

Each ``levelN_*.py`` runs on its own (``python examples/journey/level0_script.py``)
and differs from the level before by the few lines docs/journey.md shows;
``level5/conf`` runs the level-4 function as a pipeline
(``python -m tipi --config-dir examples/journey/level5/conf +experiment=journey``).
"""
