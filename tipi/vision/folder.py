"""A segmentation dataset read from a folder of image and mask files.

Layout::

    root/
      images/  a.png  b.jpg  ...      RGB (or greyscale) images, .png/.jpg/.jpeg
      masks/   a.png  b.png  ...      single-channel PNG of class indices, same stem

Every problem a user can cause (a wrong path, a missing mask, an unreadable
file, a mask value that is no class) is a :class:`FolderDataError` naming the
files involved, with a hint; the data permanence reports it against the config
key ``data.root``. Pairing and readability are checked in the constructor and
mask values by :meth:`FolderDataset.check_masks`, so a mistake shows before
any training starts; pixels are read item by item.

The module imports no torch: :func:`find_pairs` checks a folder's layout in
milliseconds, so ``data=folder`` reports a wrong folder before a run starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

log = logging.getLogger(__name__)


class FolderDataError(ValueError):
    """A folder dataset that cannot be read as it is; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
MASK_EXTENSION = ".png"
_MASK_MODES = ("1", "L", "P", "I", "I;16")  # single-channel modes Pillow reads as indices
_DIRECT_MODES = ("1", "L", "P")  # read as is; wider integer modes are widened to "I" first
_SHOWN = 5  # file names listed in one message before "... and N more"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _files(folder: Path) -> list[Path]:
    """Regular, non-hidden files of ``folder`` sorted by name (hidden ones like .DS_Store are skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """The ``(image, mask)`` file pairs of ``root``, sorted by name; reads no pixels, imports no torch.

    Raises:
        FolderDataError: the root or ``images/`` is missing or empty, a file in
            ``images/`` or ``masks/`` has the wrong extension, two images
            share a name, or an image has no mask or a mask no image.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise FolderDataError(
            f"dataset folder '{root}' {what}",
            hint="Point data.root at a folder holding images/ and masks/ (absolute, or relative to where you run).",
        )
    image_dir = root / "images"
    mask_dir = root / "masks"
    if not image_dir.is_dir():
        raise FolderDataError(
            f"no 'images' folder in '{root}'",
            hint=f"Expected {image_dir}/<name>{{{','.join(IMAGE_EXTENSIONS)}}} and {mask_dir}/<name>.png.",
        )
    stems = _image_stems(image_dir)
    mask_stems = _mask_stems(mask_dir)
    unmatched_images = [stems[s].name for s in stems if s not in mask_stems]
    if unmatched_images:
        raise FolderDataError(
            f"{len(unmatched_images)} image(s) in '{image_dir}' have no mask in '{mask_dir}': "
            f"{_listing(unmatched_images)}",
            hint=f"Each images/<name>.* needs masks/<name>{MASK_EXTENSION}.",
        )
    unmatched_masks = [mask_stems[s].name for s in mask_stems if s not in stems]
    if unmatched_masks:
        raise FolderDataError(
            f"{len(unmatched_masks)} mask(s) in '{mask_dir}' have no image in '{image_dir}': "
            f"{_listing(unmatched_masks)}",
            hint=f"Each masks/<name>{MASK_EXTENSION} needs images/<name> with one of {', '.join(IMAGE_EXTENSIONS)}.",
        )
    return [(stems[s], mask_stems[s]) for s in sorted(stems)]


def _image_stems(image_dir: Path) -> dict[str, Path]:
    """Image file by name stem; refuses other files, an empty folder and two images of one name."""
    images = _files(image_dir)
    foreign = [p.name for p in images if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if foreign:
        raise FolderDataError(
            f"'{image_dir}' holds files that are not images: {_listing(foreign)}",
            hint=f"Supported image extensions: {', '.join(IMAGE_EXTENSIONS)}. Move other files elsewhere.",
        )
    if not images:
        raise FolderDataError(
            f"no image files in '{image_dir}'",
            hint=f"Add images with extensions {', '.join(IMAGE_EXTENSIONS)}.",
        )
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise FolderDataError(
                f"two images share the name '{path.stem}': {stems[path.stem].name} and {path.name}",
                hint="Each image needs a unique name so that it matches exactly one mask.",
            )
        stems[path.stem] = path
    return stems


def _mask_stems(mask_dir: Path) -> dict[str, Path]:
    """PNG mask by name stem (none when there is no masks/ folder); refuses other files."""
    masks = _files(mask_dir) if mask_dir.is_dir() else []
    not_png = [p.name for p in masks if p.suffix.lower() != MASK_EXTENSION]
    if not_png:
        raise FolderDataError(
            f"'{mask_dir}' holds files that are not PNG masks: {_listing(not_png)}",
            hint="Masks must be lossless single-channel PNGs of class indices.",
        )
    return {p.stem: p for p in masks if p.suffix.lower() == MASK_EXTENSION}


class FolderDataset:
    """Image/mask pairs from ``root/images`` and ``root/masks``.

    A map-style dataset (``len`` and indexing), which is all ``DataLoader``
    and ``Subset`` need; it does not derive from torch's ``Dataset`` so that
    this module, and :func:`find_pairs`, import without torch.

    Args:
        root: the folder holding ``images/`` and ``masks/``.
        image_size: when given, images are resized to ``image_size`` squared
            (bilinear) and masks likewise with nearest neighbour, so class
            indices are never blended. Otherwise each image keeps its size and
            its mask must have the same size.
        num_classes: when given, a mask value ``>= num_classes`` is an error
            (:meth:`check_masks` finds every one before training).
        mask_values: the pixel value that stands for each class, in class
            order (``[0, 255]``: 0 is class 0, 255 class 1), for masks stored
            as 0/255 images; None: pixel values are the class indices.

    Items are ``(image, mask)``: image float32 ``[3, H, W]`` in ``[-1, 1]``,
    mask int64 ``[H, W]``.

    Raises:
        FolderDataError: the root or ``images/`` is missing or empty, an image has no
            mask or a mask no image, or a file is not a readable image.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int | None = None,
        num_classes: int | None = None,
        mask_values: Sequence[int] | None = None,
    ) -> None:
        from PIL import Image

        self.root = Path(root).expanduser()
        self.image_size = image_size
        self.num_classes = num_classes
        self.mask_values = list(mask_values) if mask_values is not None else None
        self._lookup = _lookup_table(self.mask_values)
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels or None, got {image_size}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.pairs: list[tuple[Path, Path]] = find_pairs(self.root)

        # Read headers now, so a broken file stops the run before training starts.
        mismatched: list[tuple[Path, tuple[int, int], tuple[int, int]]] = []
        for image_path, mask_path in self.pairs:
            sizes = []
            for path in (image_path, mask_path):
                try:
                    with Image.open(path) as picture:
                        picture.verify()
                        mode = picture.mode
                        sizes.append(picture.size)
                # Pillow signals a broken file with several exception types.
                except Exception as error:
                    raise FolderDataError(
                        f"'{path}' is not a readable image ({error})",
                        hint="Replace or remove the file together with its image/mask partner.",
                    ) from error
                if path is mask_path and mode not in _MASK_MODES:
                    raise FolderDataError(
                        f"mask '{path}' has mode {mode}; masks must be single-channel images of class indices",
                        hint="Save masks as 8-bit greyscale ('L') or palette ('P') PNGs whose values are the classes.",
                    )
            if sizes[0] != sizes[1]:
                mismatched.append((image_path, sizes[0], sizes[1]))
        self._check_mask_sizes(mismatched)

    def _check_mask_sizes(self, mismatched: list[tuple[Path, tuple[int, int], tuple[int, int]]]) -> None:
        """Masks of another size than their image: refused, unless ``image_size`` resizes both to one size.

        Resizing keeps a mask on its image only when both have the same aspect ratio: a mask
        of another shape (turned, cropped) is refused whatever ``image_size`` says; one of
        another scale is resized with its image, with a warning naming ``data.image_size`` and the first.
        """
        if not mismatched:
            return

        def turned(sizes: tuple[Path, tuple[int, int], tuple[int, int]]) -> bool:
            _, (iw, ih), (mw, mh) = sizes
            # another aspect ratio than its image's, beyond a pixel of rounding on a side
            return abs(iw * mh - ih * mw) > max(iw, mw) + max(ih, mh)

        shaped = [m for m in mismatched if turned(m)]
        path, (iw, ih), (mw, mh) = (shaped or mismatched)[0]
        first = f"image '{path.name}' is {iw}x{ih} but its mask is {mw}x{mh}"
        count = f"{len(mismatched)} of {len(self.pairs)} mask(s) differ in size from their image"
        if shaped:
            raise FolderDataError(
                f"{first}, another shape: resizing would move the mask off its image ({count}, {len(shaped)} in shape)",
                hint="Give each mask its image's size and shape.",
            )
        if self.image_size is None:
            raise FolderDataError(
                f"{first} ({count})",
                hint="Give each mask its image's size, or set data.image_size to resize both (masks by nearest "
                "neighbour).",
            )
        log.warning(
            "%s (first: %s); data.image_size=%d resizes both to %dx%d (masks by nearest neighbour)",
            count,
            first.replace("image ", "", 1),
            self.image_size,
            self.image_size,
            self.image_size,
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np
        import torch
        from PIL import Image

        from tipi.vision.transforms import normalize_image

        image_path, mask_path = self.pairs[index]
        try:
            with Image.open(image_path) as picture:
                image = picture.convert("RGB")
            with Image.open(mask_path) as picture:
                mask = picture if picture.mode in _DIRECT_MODES else picture.convert("I")
                mask.load()
        except Exception as error:  # truncated or corrupt beyond the header
            raise FolderDataError(f"cannot read '{image_path}' or '{mask_path}': {error}") from error
        if self.image_size is not None:
            size = (self.image_size, self.image_size)
            image = image.resize(size, Image.Resampling.BILINEAR)
            mask = mask.resize(size, Image.Resampling.NEAREST)
        elif image.size != mask.size:
            raise FolderDataError(
                f"image '{image_path.name}' is {image.size[0]}x{image.size[1]} but its mask is "
                f"{mask.size[0]}x{mask.size[1]}",
                hint="Give the mask the image's size, or set data.image_size to resize both.",
            )
        labels = self._classes(np.asarray(mask, dtype=np.int64), mask_path)
        return normalize_image(np.asarray(image)), torch.from_numpy(labels)

    def _classes(self, values: Any, mask_path: Path) -> Any:
        """Pixel values -> class indices (through ``mask_values``), refusing values that are no class."""
        import numpy as np

        if self._lookup is not None:
            in_range = values.max(initial=0) < len(self._lookup) and values.min(initial=0) >= 0
            labels = self._lookup[values.clip(0, len(self._lookup) - 1)] if in_range else np.full_like(values, -1)
            if labels.size and labels.min() < 0:
                bad = sorted(set(np.unique(values).tolist()) - set(self.mask_values or []))
                raise FolderDataError(
                    f"mask '{mask_path}' holds values {bad[:8]} that data.mask_values {self.mask_values} does not list",
                    hint="List every pixel value that stands for a class in data.mask_values, in class order.",
                )
            return labels
        if self.num_classes is not None and values.size and values.max() >= self.num_classes:
            found = np.unique(values).tolist()
            raise FolderDataError(
                f"mask '{mask_path}' holds class {int(values.max())} (masks hold {found[:8]}), but num_classes is "
                f"{self.num_classes} (valid: 0..{self.num_classes - 1})",
                hint=_mask_hint(found, self.num_classes),
            )
        return values

    def check_masks(self) -> None:
        """Read every mask once and refuse values that are no class: the run stops before training, not in it.

        The message names the first mask at fault and the values found across all masks, so the
        remedy it suggests (``data.mask_values=[0,255]``) fits the whole folder.
        """
        import numpy as np
        from PIL import Image

        found: set[int] = set()
        first_bad: Path | None = None
        for _, mask_path in self.pairs:
            with Image.open(mask_path) as picture:
                mask = picture if picture.mode in _DIRECT_MODES else picture.convert("I")
                values = set(np.unique(np.asarray(mask, dtype=np.int64)).tolist())
            found |= values
            if first_bad is None and not self._all_classes(values):
                first_bad = mask_path
        if first_bad is not None:
            self._classes(np.array(sorted(found), dtype=np.int64), first_bad)

    def _all_classes(self, values: set[int]) -> bool:
        if self.mask_values is not None:
            return values <= set(self.mask_values)
        return self.num_classes is None or max(values, default=0) < self.num_classes

    def __repr__(self) -> str:
        return f"FolderDataset(root='{self.root}', n={len(self)}, image_size={self.image_size})"


def _lookup_table(mask_values: Sequence[int] | None) -> Any:
    """A pixel value -> class index array (-1: not a class) for ``mask_values``; None for identity."""
    if mask_values is None:
        return None
    import numpy as np

    if len(set(mask_values)) != len(mask_values) or min(mask_values, default=0) < 0:
        raise FolderDataError(f"data.mask_values must be distinct values >= 0, got {list(mask_values)}")
    table = np.full(max(mask_values, default=0) + 1, -1, dtype=np.int64)
    for index, value in enumerate(mask_values):
        table[value] = index
    return table


def _mask_hint(found: list[int], num_classes: int) -> str:
    """The remedy for masks whose values are not class indices (0/255 masks above all)."""
    listed = ",".join(str(v) for v in found)
    if len(found) <= num_classes:
        classes = f" data.num_classes={len(found)}" if len(found) != num_classes else ""
        return (
            f"Masks hold the values {found}: store class indices 0..{num_classes - 1} in the masks, or map "
            f"the values to classes with data.mask_values=[{listed}]{classes}."
        )
    return (
        f"Masks hold {len(found)} distinct values: store class indices 0..{num_classes - 1}, or raise data.num_classes."
    )


def write_folder_dataset(
    root: str | Path,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    n: int,
) -> Path:
    """Write the first ``n`` samples of ``dataset`` as ``root/images/NNNNN.png`` and ``root/masks/NNNNN.png``.

    The dataset must yield ``(image [3, H, W] in [-1, 1], mask [H, W])``, as
    :class:`~tipi.vision.shapes.ShapesDataset` does. Returns ``root``.
    """
    import numpy as np
    import torch
    from PIL import Image

    from tipi.vision.transforms import denormalize_image

    total = len(dataset)  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so
    if not 0 <= n <= total:
        raise ValueError(f"cannot write {n} samples from a dataset of {total}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for index in range(n):
        image, mask = dataset[index]
        labels = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if labels.min() < 0 or labels.max() > 255:
            raise ValueError(f"sample {index}: mask values must fit 8 bits (0..255) to be written as PNG")
        name = f"{index:05d}.png"
        Image.fromarray(denormalize_image(image)).save(root / "images" / name)
        Image.fromarray(labels.astype(np.uint8)).save(root / "masks" / name)
    return root
