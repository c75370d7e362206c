"""The WandB check: the mode a run would use (tipi's own rules), the API key (never shown), the server.

The mode follows ``tipi.trackers.wandb``: ``WANDB_MODE`` wins; else online
with an API key, offline without. The server is tried with a socket connect
in a thread that is given up after ``net_timeout`` seconds, because a name
lookup on a machine without network is not bounded by the socket's timeout.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlsplit

from tipi.core.errors import TipiError
from tipi.doctor.context import DoctorContext
from tipi.doctor.procs import start_worker, wait_all
from tipi.doctor.result import CheckResult, failed, ok, warning

DEFAULT_BASE_URL = "https://api.wandb.ai"
SYNC = "runs log to <run dir>/wandb; `wandb sync` them later"


def server_address() -> tuple[str, int, str]:
    """The host and port a connection to WandB's server goes to first (an HTTPS proxy, if set), and what it is."""
    base = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or 3128, f"proxy {p.hostname}:{p.port or 3128} for {base.hostname}"
    port = base.port or (443 if base.scheme == "https" else 80)
    return base.hostname or "", port, f"{base.hostname}:{port}"


def reachable(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to ``host:port`` opens within ``timeout`` seconds, else why not."""
    answer: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(None)
        except OSError as exc:
            answer.append(f"{type(exc).__name__}: {exc.strerror or exc}")

    start = time.monotonic()
    thread = threading.Thread(target=connect, daemon=True, name="tipi-doctor-wandb")
    thread.start()
    thread.join(timeout)
    if not answer:
        return f"no answer within {timeout:g} s"
    return answer[0] if answer[0] is None else f"{answer[0]} after {time.monotonic() - start:.1f} s"


def check_wandb(ctx: DoctorContext) -> list[CheckResult]:
    """The mode a ``logger=wandb`` run would use here, and whether WandB's server can be reached."""
    from tipi.trackers.wandb import requested_mode

    try:
        mode = requested_mode(None)
    except TipiError as exc:
        return [failed("wandb", exc.message, f"{exc.key}: {exc.hint}", "wandb")]
    if mode == "disabled":
        return [ok("wandb", "disabled (WANDB_MODE=disabled): runs log to metrics.jsonl only", "wandb")]
    host, port, target = server_address()
    if mode == "offline":
        blocked = reachable(host, port, ctx.options.net_timeout)
        net = f"{target} unreachable ({blocked})" if blocked else f"{target} reachable"
        return [ok("wandb", f"offline (WANDB_MODE=offline): {SYNC}; {net}", "wandb")]
    key_worker = start_worker("wandb-key")  # looks for the key while the server is tried
    blocked = reachable(host, port, ctx.options.net_timeout)
    [key_outcome] = wait_all([key_worker], ctx.options.timeout)
    has_key = bool(key_outcome.data.get("has_key"))
    return [_online_row(mode, has_key, target, blocked)]


def _online_row(mode: str | None, has_key: bool, target: str, blocked: str | None) -> CheckResult:
    """The row when a run would try to log online (``WANDB_MODE=online``, or unset)."""
    asked = "WANDB_MODE=online" if mode == "online" else "WANDB_MODE unset"
    if not has_key:
        detail = f"no API key configured ({asked})"
        if mode == "online":
            return failed(
                "wandb",
                f"{detail}: a run would stop with an error",
                "run `wandb login` (or set WANDB_API_KEY), or set WANDB_MODE=offline",
                "wandb",
            )
        return warning(
            "wandb",
            f"{detail}: runs log offline to <run dir>/wandb; `wandb sync` them later",
            "run `wandb login` to log online, or set WANDB_MODE=offline to make offline the rule",
            "wandb",
        )
    if blocked:
        detail = f"API key configured ({asked}) but {target} unreachable ({blocked})"
        if mode == "online":
            return failed(
                "wandb",
                f"{detail}: a run would fail when WandB's init times out",
                "check the network or proxy, or set WANDB_MODE=offline and `wandb sync` later",
                "wandb",
            )
        return warning(
            "wandb",
            f"{detail}: a run waits logger.init_timeout, then logs offline",
            "set WANDB_MODE=offline on this machine (no network), and `wandb sync` later",
            "wandb",
        )
    return ok("wandb", f"online: API key configured ({asked}), {target} reachable", "wandb")
