"""The baselines tipi is measured against: a bare ``@hydra.main`` app and a plain PyTorch script."""
