"""Runnable examples. Importable (``examples.journey.level4_function.train``) so configs can name them."""
