"""The data permanences' parameter checks: the range each value must be in, refused at its key.

The constructors of :mod:`tipi.permanences.data` call these first, and the
builder constructs the permanences at its gate, so a value out of range stops
the run before anything is written. A ``DataError`` names
``permanences.data.<name>``; the builder reports it at the key the user typed
(``data.batch_size``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tipi.core.errors import DataError

# The smallest image tipi.vision.shapes draws its shapes on (it imports torch: not imported here).
SHAPES_MIN_IMAGE_SIZE = 16
SHAPES_NUM_CLASSES = 4  # background, circle, rectangle, triangle


def whole(value: Any) -> bool:
    """Whether ``value`` is a whole number (an ``int``, not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def require(ok: bool, name: str, message: str, hint: str | None = None) -> None:
    """A ``DataError`` at ``data.<name>`` (the builder names the key the user typed) unless ``ok``."""
    if not ok:
        raise DataError(message, key=f"permanences.data.{name}", hint=hint)


def at_least(name: str, value: Any, low: int, *, none: str | None = None) -> None:
    """``value`` is a whole number ``>= low`` (or None, when ``none`` says what None means)."""
    if value is None and none is not None:
        return
    also = f" (or null for {none})" if none is not None else ""
    require(whole(value) and value >= low, name, f"must be at least {low}{also}, got {value!r}")


def check_data(
    batch_size: Any,
    eval_batch_size: Any,
    num_workers: Any,
    num_classes: Any,
    seed: Any,
    limits: Mapping[str, Any],
) -> None:
    """The parameters every ``Data`` has; ``limits`` maps each split to its ``limit_<split>``."""
    at_least("batch_size", batch_size, 1)
    at_least("eval_batch_size", eval_batch_size, 1, none="batch_size")
    at_least("num_workers", num_workers, 0)
    at_least("num_classes", num_classes, 1)
    at_least("seed", seed, 0)
    for split, limit in limits.items():
        at_least(f"limit_{split}", limit, 1, none="all")


def check_shapes_data(sizes: Mapping[str, Any], image_size: Any, noise: Any, max_shapes: Any, num_classes: Any) -> None:
    """``ShapesData``'s own parameters; ``sizes`` maps each split to its ``num_<split>``."""
    for split, value in sizes.items():
        at_least(f"num_{split}", value, 1)
    at_least("image_size", image_size, SHAPES_MIN_IMAGE_SIZE)
    require(
        isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0,
        "noise",
        f"must be a number >= 0 (the noise's standard deviation), got {noise!r}",
    )
    at_least("max_shapes", max_shapes, 1)
    require(
        num_classes == SHAPES_NUM_CLASSES,
        "num_classes",
        f"must be {SHAPES_NUM_CLASSES} for the shapes data (background, circle, rectangle, triangle), "
        f"got {num_classes!r}",
    )


def check_folder_data(
    image_size: Any, mask_values: Any, num_classes: Any, val_fraction: Any, test_fraction: Any
) -> None:
    """``FolderData``'s own parameters (its folder's layout is checked when it is listed)."""
    at_least("image_size", image_size, 1, none="each image's own size")
    if mask_values is not None:
        require(
            all(whole(v) and v >= 0 for v in mask_values) and len(set(mask_values)) == len(mask_values),
            "mask_values",
            f"must be distinct pixel values >= 0, one a class in class order (e.g. [0,255]), got {mask_values}",
        )
        require(
            len(mask_values) <= num_classes,
            "mask_values",
            f"lists {len(mask_values)} values, one a class, but data.num_classes is {num_classes}",
            hint=f"Set data.num_classes={len(mask_values)}.",
        )
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        require(0 <= fraction < 1, name, f"must be a number in [0, 1), got {fraction!r}")
    require(
        val_fraction + test_fraction < 1,
        "val_fraction",
        f"val_fraction + test_fraction must be less than 1 (the rest trains), got {val_fraction} + {test_fraction}",
    )
