"""Image building blocks for the examples: datasets, a U-Net, metrics and figures.

Kept free of imports on purpose: ``import tipi`` must not pull in torch, so
each module here imports torch, numpy or Pillow itself, when it is used.
"""
