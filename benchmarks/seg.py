"""The ``+experiment=seg`` settings both sides of a training comparison use, composed by Hydra from tipi's tree."""

from __future__ import annotations

from typing import Any


def seg_setup(overrides: list[str] | None = None) -> dict[str, Any]:
    """Model, optimizer, data and seed of ``+experiment=seg`` (plus ``overrides``), as plain JSON-able values.

    What ``plain_train.py --setup`` takes. Composed with Hydra's compose API,
    the same composition ``python -m tipi +experiment=seg --cfg job`` shows.
    """
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from tipi.core.config import CONFIG_NAME, register_resolvers

    register_resolvers()
    with initialize_config_module("tipi.conf", version_base="1.3"):
        cfg = compose(CONFIG_NAME, overrides=["experiment=seg", *(overrides or [])])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(model, dict) and isinstance(optimizer, dict) and isinstance(data, dict)
    if not str(data.get("_target_", "")).endswith("ShapesData"):
        raise ValueError(f"the per-step comparison needs the shapes data, got {data.get('_target_')}")
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") is not None else None
    model.pop("_target_")

    def partial(node: dict[str, Any]) -> dict[str, Any]:
        return {"_target_": node["_target_"],
                "kwargs": {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}}

    return {
        "seed": int(cfg.seed),
        "model": model,
        "optimizer": partial(optimizer),
        # Built on both sides: a scheduler wraps optimizer.step(), which the step timing sees.
        "scheduler": partial(scheduler) if isinstance(scheduler, dict) else None,
        "data": {k: data[k] for k in ("num_train", "num_val", "num_test", "image_size", "noise", "max_shapes",
                                      "batch_size")},
    }
