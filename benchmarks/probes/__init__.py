"""Instruments that run inside tipi (pointed at with ``_target_``) or inside a baseline.

Each is small and stdlib-only at import time, so loading one adds nothing
measurable to what it measures.
"""
