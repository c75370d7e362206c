"""Old public names keep working for a while, with a ``DeprecationWarning`` that names the new one."""

from __future__ import annotations

import warnings
from typing import Any


def renamed(module: str, name: str, old_to_new: dict[str, Any]) -> Any:
    """A module ``__getattr__`` body: the new object for an old name (warning once per use), else AttributeError.

    ``old_to_new`` maps an old name to the object now published under another
    name; the warning says which, so a user's YAML ``_target_`` or import can be updated.
    """
    if name in old_to_new:
        new = old_to_new[name]
        warnings.warn(
            f"{module}.{name} is now {new.__module__}.{new.__qualname__}; the old name will be removed",
            DeprecationWarning,
            stacklevel=3,
        )
        return new
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
