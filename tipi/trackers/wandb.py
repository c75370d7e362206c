"""The WandB tracker: one WandB run per tipi run (``logger=wandb``, alone or in ``logger=[wandb,...]``).

The WandB run's files live in ``<run dir>/wandb/``, its id goes into
``run.json`` (``wandb_run_id``, and ``trackers.wandb.run_id``), and a run
directory that is run again (resume, SLURM requeue) continues the same WandB
run. ``wandb`` is imported in :meth:`WandBTracker.start`, never at import time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError, TipiError
from tipi.trackers.base import RunOutcome, Tracker, TrackerContext

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
# Older spellings WandB still accepts in WANDB_MODE.
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}
MODE_KEY = "logger.trackers.wandb.mode"
LEGACY_TARGET = "tipi.permanences.wandb.WandBManager"


def requested_mode(config_mode: str | None) -> str | None:
    """The mode asked for: ``WANDB_MODE`` when set, else the config's; None means "online if possible".

    The environment wins because it is the per-machine switch (a compute node
    without network sets ``WANDB_MODE=offline`` once, whatever the configs say).
    """
    if "WANDB_MODE" in os.environ and not os.environ["WANDB_MODE"].strip():
        # Empty means unset here; wandb's own settings reject an empty WANDB_MODE outright.
        del os.environ["WANDB_MODE"]
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    raw = env or (str(config_mode).strip().lower() if config_mode is not None else "")
    mode = _MODE_ALIASES.get(raw, raw)
    if mode and mode not in MODES:
        key = "WANDB_MODE" if env else MODE_KEY
        raise ConfigError(
            f"unknown WandB mode '{raw}'. Valid: {', '.join(MODES)}",
            key=key,
            hint="Leave it unset to log online when an API key is configured, else offline.",
        )
    return mode or None


def has_credentials() -> bool:
    """Whether a WandB API key is configured (env, netrc, settings); never prompts, never dials out."""
    import wandb

    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:  # noqa: BLE001 - an unreadable netrc is "no key" here, not a crash
        return False


def resolve_mode(config_mode: str | None) -> str:
    """``online``, ``offline`` or ``disabled``: the mode a run will actually use before it starts.

    With no mode asked for, a machine without an API key logs offline (one
    line says so); a config that demands ``online`` there is an error.
    """
    mode = requested_mode(config_mode)
    if mode in ("offline", "disabled"):
        return mode
    if has_credentials():
        return "online"
    if mode == "online":
        raise TipiError(
            "WandB mode is 'online' but no API key is configured",
            key=MODE_KEY,
            hint="Run `wandb login` (or set WANDB_API_KEY), or use logger.trackers.wandb.mode=offline "
            "and `wandb sync` the run later.",
        )
    log.warning("WandB: no API key configured, logging offline (sync later with `wandb sync`)")
    return "offline"


def sweep_parameter_names() -> set[str]:
    """Names of the parameters a WandB sweep agent set for the current run (empty outside a sweep).

    ``wandb.agent`` hands a run its parameters in the file named by
    ``WANDB_SWEEP_PARAM_PATH``; ``wandb.init`` reads the same file.
    """
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path or not os.environ.get("WANDB_SWEEP_ID"):
        return set()
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return set()
    return {str(k) for k in data if k not in ("wandb_version", "_wandb")}


def wandb_settings(cfg: DictConfig) -> dict[str, Any] | None:
    """The WandB tracker's settings in a composed config (``logger.trackers.wandb``), or None without one.

    A config whose ``logger`` is the older single-tracker ``WandBManager`` node counts too.
    """
    node = OmegaConf.select(cfg, "logger.trackers.wandb")
    if node is None and str(OmegaConf.select(cfg, "logger._target_") or "") == LEGACY_TARGET:
        node = OmegaConf.select(cfg, "logger")
    if not isinstance(node, DictConfig):
        return None
    try:
        container = OmegaConf.to_container(node, resolve=True)
    except Exception:  # noqa: BLE001 - an unresolvable leaf elsewhere in the node must not hide the mode
        container = OmegaConf.to_container(node, resolve=False)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


class WandBTracker(Tracker):
    """Sends every metric and figure to one WandB run.

    Args:
        project: WandB project (ignored inside a WandB sweep, which sets its own).
        entity: WandB user or team; None uses the account's default.
        mode: ``online``, ``offline``, ``disabled``, or None (online when an
            API key is configured, else offline). ``WANDB_MODE`` wins when set.
        name, tags, group: the WandB run's name, tags and group (``run.*`` by default).
        job_type, notes: passed to ``wandb.init``.
        init_timeout: seconds to wait for the server; then a run with ``mode``
            None falls back to offline, and ``mode: online`` is an error.
        log_images: send figures (prediction grids, curves) as ``wandb.Image``.
        settings: extra ``wandb.Settings`` fields (e.g. ``console: "off"``).
    """

    kind = "wandb"

    def __init__(
        self,
        project: str | None = "tipi",
        entity: str | None = None,
        mode: str | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        group: str | None = None,
        job_type: str | None = None,
        notes: str | None = None,
        init_timeout: float = 30.0,
        log_images: bool = True,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        requested_mode(mode)  # a misspelt mode is a config error before anything runs
        self.project = project
        self.entity = entity
        self.mode = mode
        self.run_name = name
        self.tags = list(tags or [])
        self.group = group
        self.job_type = job_type
        self.notes = notes
        self.init_timeout = float(init_timeout)
        self.log_images = log_images
        self.settings = dict(settings or {})
        self.run: Any = None  # a wandb Run (a no-op run when disabled)
        self.run_mode: str | None = None

    def start(self, context: TrackerContext) -> dict[str, Any]:
        """Start (or, for a run directory that ran before, continue) the WandB run."""
        mode = resolve_mode(self.mode)
        try:
            self.run = self._init(mode, context)
        except TipiError:
            raise
        except Exception as exc:  # wandb.errors.Error (CommError on timeout), UsageError, ...
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            if mode != "online" or requested_mode(self.mode) == "online":
                raise TipiError(
                    f"WandB could not start a {mode} run: {first_line}",
                    key=MODE_KEY,
                    hint="Check the network and `wandb login`, or use logger.trackers.wandb.mode=offline.",
                ) from exc
            log.warning("WandB: server unreachable (%s), logging offline (sync later with `wandb sync`)", first_line)
            mode = "offline"
            self.run = self._init(mode, context)
        self.run_mode = mode
        if mode == "disabled":
            return {"mode": mode}
        return {"run_id": self.run.id, "mode": mode}

    def record_fields(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """``wandb_run_id`` and ``wandb_mode`` at the top of ``run.json``, where sweeps and tools read them."""
        if "run_id" not in info:
            return {}
        return {"wandb_run_id": info["run_id"], "wandb_mode": info["mode"]}

    def _init(self, mode: str, context: TrackerContext) -> Any:
        import wandb

        run_dir = Path(context.run_dir).absolute()
        previous_id = context.previous.get("run_id") or context.record_data.get("wandb_run_id")
        in_sweep = bool(os.environ.get("WANDB_SWEEP_ID"))
        config = dict(context.config)
        # Inside a sweep the agent's parameters own their keys (``model: unet``);
        # sending the composed node under the same key only earns a WandB warning.
        for key in sweep_parameter_names():
            config.pop(key, None)
        kwargs: dict[str, Any] = {
            "dir": str(run_dir),
            "mode": mode,
            "name": self.run_name,
            "tags": self.tags or None,
            "group": self.group,
            "job_type": self.job_type,
            "notes": self.notes,
            "config": config,
            # Never finish or reuse a run that someone else started in this process.
            "reinit": "create_new",
            "settings": wandb.Settings(init_timeout=self.init_timeout, **self.settings),
        }
        if not in_sweep:  # a sweep run belongs to the sweep's project; WandB warns otherwise
            kwargs.update(project=self.project, entity=self.entity)
        if previous_id:
            kwargs.update(id=previous_id, resume="allow")
        return wandb.init(**kwargs)

    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        """One ``run.log`` call with every value at ``step``."""
        if self.run is not None:
            self.run.log(dict(values), step=step)

    def log_image(self, key: str, path: Path, step: int, caption: str | None = None) -> None:
        """The PNG as a ``wandb.Image``."""
        if self.run is None or not self.log_images:
            return
        import wandb

        self.run.log({key: wandb.Image(str(path), caption=caption)}, step=step)

    def finish(self, outcome: RunOutcome) -> dict[str, Any]:
        """Finish the WandB run with the run's exit code (a requeued run is marked preempting).

        Finishing here is what gives each job of a multirun its own WandB run.
        """
        run, self.run = self.run, None
        if run is not None:
            if outcome.requeue:
                run.mark_preempting()  # a WandB sweep hands a preempted run out again
            run.finish(exit_code=outcome.exit_code)
        return {}

    def abort(self) -> None:
        """Finish the WandB run as failed."""
        run, self.run = self.run, None
        if run is not None:
            run.finish(exit_code=1)
