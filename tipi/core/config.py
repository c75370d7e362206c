"""Where tipi's config tree lives and the resolvers it uses.

Kept free of torch so composing a config (``--help``, ``--cfg job``) stays cheap.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from tipi.core.rundir import claim_fresh_dir

# The config tree lives in the package as ``tipi.conf`` (``conf/`` at the top of
# the repository links to it), so a checkout and a wheel install both find it.
CONFIG_PATH = "pkg://tipi.conf"
CONFIG_NAME = "config"


def _resumable(resume: str | None) -> Path | None:
    """The run directory ``resume`` names, or None when it names none (the runner then says why)."""
    if not resume:
        return None
    path = Path(resume).expanduser().absolute()
    return path if (path / ".hydra" / "config.yaml").is_file() else None


def _run_dir(resume: str | None, default: str) -> str:
    """``hydra.run.dir``: the directory being resumed, else a fresh one claimed from the default name.

    A ``resume`` that is not a run directory is left alone (Hydra would
    create it and write ``.hydra/`` into it); the runner reports it.
    """
    path = _resumable(resume)
    if path is not None:
        return str(path)
    if resume:
        return default
    return claim_fresh_dir(default)


def _output_subdir(resume: str | None) -> str:
    """``hydra.output_subdir``: a resumed run keeps its original ``.hydra/`` untouched."""
    if _resumable(resume) is not None:
        return f".hydra/resume-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    return ".hydra"


def register_resolvers() -> None:
    """Register tipi's OmegaConf resolvers (idempotent)."""
    # Cached: a multirun's jobs get the master config's cache (Hydra copies it), so
    # every job sees the one sweep directory the launching process claimed.
    for name, fn in (("tipi_run_dir", _run_dir), ("tipi_fresh_dir", claim_fresh_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)
    if not OmegaConf.has_resolver("tipi_output_subdir"):
        OmegaConf.register_new_resolver("tipi_output_subdir", _output_subdir)


# Groups that sit in the primary defaults list as `null` (so that `debug=...`
# overlays come after an experiment and win), but that users may also select
# with a leading `+`, as Hydra's docs write it.
PLUS_OPTIONAL_GROUPS = ("experiment",)


def normalize_overrides(overrides: list[str]) -> list[str]:
    """``+experiment=seg`` -> ``experiment=seg``: both spellings select an experiment."""
    out = []
    for item in overrides:
        for group in PLUS_OPTIONAL_GROUPS:
            if item.startswith(f"+{group}="):
                item = item[1:]
        out.append(item)
    return out
