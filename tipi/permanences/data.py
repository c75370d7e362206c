"""The data permanence: datasets and deterministic, resumable DataLoaders.

Each epoch's order comes from a generator seeded with ``(seed, epoch)``, so a
run resumed mid-epoch sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tipi.core.errors import DataError
from tipi.core.permanence import Permanence

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "val", "test")


def _seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    import numpy as np
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class Data(Permanence):
    """Base class: subclasses implement ``make_datasets()``; loaders come from here."""

    def __init__(self, batch_size: int = 16, eval_batch_size: int | None = None, num_workers: int = 0,
                 num_classes: int = 4, seed: int = 0) -> None:
        if batch_size < 1:
            raise DataError(f"must be at least 1, got {batch_size}", key="permanences.data.batch_size")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.num_classes = num_classes
        self.seed = seed
        self.datasets: dict[str, Dataset[Any]] = {}

    @property
    def class_names(self) -> list[str]:
        """A name per class index, for per-class metrics."""
        return [f"class_{i}" for i in range(self.num_classes)]

    def make_datasets(self) -> dict[str, Dataset[Any]]:
        """Build the train / val / test datasets."""
        raise NotImplementedError

    def prepare(self) -> dict[str, int]:
        """Build the datasets once (idempotent); return the size of each split."""
        if not self.datasets:
            self.datasets = self.make_datasets()
            for split in SPLITS:
                if split not in self.datasets or len(self.datasets[split]) == 0:  # type: ignore[arg-type]
                    raise DataError(f"the '{split}' split is empty", key="permanences.data")
        return {split: len(ds) for split, ds in self.datasets.items()}  # type: ignore[arg-type]

    def steps_per_epoch(self) -> int:
        """Training batches per epoch (the last partial batch is dropped)."""
        self.prepare()
        return max(1, len(self.datasets["train"]) // self.batch_size)  # type: ignore[arg-type]

    def _pin_memory(self) -> bool:
        device = self.controller.permanences.get("device") if "_tipi_controller" in self.__dict__ else None
        return getattr(device, "type", "cpu") == "cuda"

    def loader(self, split: str, epoch: int = 0, start_batch: int = 0) -> DataLoader[Any]:
        """A DataLoader for ``split``; training batches are shuffled per ``(seed, epoch)``.

        ``start_batch`` skips the batches a resumed run already trained on.
        """
        import torch
        from torch.utils.data import DataLoader

        self.prepare()
        dataset = self.datasets[split]
        common: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self._pin_memory(),
            "worker_init_fn": _seed_worker if self.num_workers else None,
        }
        if split != "train":
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **common)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(dataset), generator=generator).tolist()  # type: ignore[arg-type]
        steps = self.steps_per_epoch()
        batches = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(start_batch, steps)]
        return DataLoader(dataset, batch_sampler=batches, generator=generator, **common)

    def get_state(self) -> dict[str, Any]:
        """Split sizes (once prepared)."""
        return {split: len(ds) for split, ds in self.datasets.items()}  # type: ignore[arg-type]

    def cleanup(self) -> None:
        """Drop the datasets (they may hold the whole data in memory)."""
        self.datasets = {}


class ShapesData(Data):
    """The procedurally generated shapes segmentation data (``data=shapes``)."""

    # Every parameter is spelled out (no **kwargs), so the builder can check a
    # config against the signature before the run: data.batchsize=8 is refused.
    def __init__(self, num_train: int = 512, num_val: int = 128, num_test: int = 128, image_size: int = 64,
                 noise: float = 0.1, max_shapes: int = 4, batch_size: int = 16, eval_batch_size: int | None = None,
                 num_workers: int = 0, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         num_classes=num_classes, seed=seed)
        for key, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise DataError(f"must be at least 1, got {value}", key=f"permanences.data.{key}")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.image_size = image_size
        self.noise = noise
        self.max_shapes = max_shapes

    @property
    def class_names(self) -> list[str]:
        """background, circle, rectangle, triangle."""
        from tipi.vision.shapes import CLASS_NAMES

        return list(CLASS_NAMES)

    def make_datasets(self) -> dict[str, Dataset[Any]]:
        """Three disjoint seeded splits."""
        from tipi.vision.shapes import ShapesDataset

        return {
            split: ShapesDataset(n, image_size=self.image_size, seed=self.seed * 3 + offset + 1,
                                 noise=self.noise, max_shapes=self.max_shapes)
            for offset, (split, n) in enumerate(self.sizes.items())
        }


class FolderData(Data):
    """Images and masks from a folder (``data=folder data.root=...``), split by fraction."""

    def __init__(self, root: str, image_size: int | None = 64, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, batch_size: int = 16, eval_batch_size: int | None = None,
                 num_workers: int = 0, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         num_classes=num_classes, seed=seed)
        self.root = Path(str(root)).expanduser()
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise DataError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1",
                            key="permanences.data.val_fraction")
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        # The layout (root, images/, masks/, pairing) is checked now, without
        # torch, so a wrong folder stops the run before anything is written;
        # the files' contents are checked when the data is loaded.
        from tipi.vision.folder import find_pairs

        find_pairs(self.root)

    def make_datasets(self) -> dict[str, Dataset[Any]]:
        """Read the folder once, then split it with a seeded permutation."""
        import torch
        from torch.utils.data import Subset

        from tipi.vision.folder import FolderDataset

        full = FolderDataset(self.root, image_size=self.image_size, num_classes=self.num_classes)
        n = len(full)
        n_val = max(1, round(n * self.val_fraction)) if self.val_fraction else 0
        n_test = max(1, round(n * self.test_fraction)) if self.test_fraction else 0
        if n - n_val - n_test < 1:
            raise DataError(f"{n} image(s) in '{self.root}' are too few to split into train/val/test",
                            key="permanences.data.root")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
        # With a fraction of 0 a split reuses the training images rather than being empty.
        return {"train": Subset(full, train), "val": Subset(full, val or train), "test": Subset(full, test or train)}
