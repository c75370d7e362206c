"""The data permanence: datasets and deterministic, resumable DataLoaders.

Each epoch's order comes from a generator seeded with ``(seed, epoch)``, so a
run resumed mid-epoch sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tipi.core.errors import DataError
from tipi.core.permanence import Permanence
from tipi.distributed import get_rank, get_world_size, shard

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

    def __init__(
        self,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_classes: int = 4,
        seed: int = 0,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"must be at least 1, got {batch_size}", key="permanences.data.batch_size")
        for split, limit in (("train", limit_train), ("val", limit_val), ("test", limit_test)):
            if limit is not None and limit < 1:
                raise DataError(f"must be at least 1 (or null for all), got {limit}", key=f"data.limit_{split}")
        # At most this many samples a split (the debug presets' quick path, whatever the data).
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
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
            self.datasets = self._limited(self.make_datasets())
            for split in SPLITS:
                if split not in self.datasets or len(self.datasets[split]) == 0:  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so
                    raise DataError(f"the '{split}' split is empty", key="permanences.data")
        return {split: len(ds) for split, ds in self.datasets.items()}  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so

    def _limited(self, datasets: dict[str, Dataset[Any]]) -> dict[str, Dataset[Any]]:
        """The first ``limit_<split>`` samples of each split that has a limit."""
        from torch.utils.data import Subset

        out = dict(datasets)
        for split, limit in self.limits.items():
            if limit is not None and split in out and len(out[split]) > limit:  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so
                out[split] = Subset(out[split], range(limit))
        return out

    def steps_per_epoch(self) -> int:
        """Training batches per epoch and rank (the last partial batch is dropped)."""
        self.prepare()
        return max(1, len(self.datasets["train"]) // (self.batch_size * get_world_size()))  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so

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
            if get_world_size() > 1:  # this rank's share: every world-th sample, none padded, none twice
                from torch.utils.data import Subset

                dataset = Subset(dataset, shard(list(range(len(dataset)))))  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **common)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(dataset), generator=generator).tolist()  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so
        steps = self.steps_per_epoch()
        # DistributedSampler's split of this seeded order (rank r takes every world-th index), so the ranks'
        # batches of batch_size together are the one-process batch of batch_size * world_size
        order = order[get_rank() :: get_world_size()]
        batches = [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(start_batch, steps)]
        return DataLoader(dataset, batch_sampler=batches, generator=generator, **common)

    def get_state(self) -> dict[str, Any]:
        """Split sizes (once prepared)."""
        return {split: len(ds) for split, ds in self.datasets.items()}  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so

    def cleanup(self) -> None:
        """Drop the datasets (they may hold the whole data in memory)."""
        self.datasets = {}


@contextlib.contextmanager
def _as_data_error() -> Iterator[None]:
    """A folder dataset's own error as a ``DataError`` at ``data.root``, the key the user set."""
    from tipi.vision.folder import FolderDataError

    try:
        yield
    except FolderDataError as exc:
        raise DataError(exc.message, key="data.root", hint=exc.hint) from exc


class _DataErrors:
    """A dataset whose items' errors (a file damaged after the checks) name ``data.root``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with _as_data_error():
            return self.dataset[index]


class ShapesData(Data):
    """The procedurally generated shapes segmentation data (``data=shapes``)."""

    # Every parameter is spelled out (no **kwargs), so the builder can check a
    # config against the signature before the run: data.batchsize=8 is refused.
    def __init__(
        self,
        num_train: int = 512,
        num_val: int = 128,
        num_test: int = 128,
        image_size: int = 64,
        noise: float = 0.1,
        max_shapes: int = 4,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_classes: int = 4,
        seed: int = 0,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            num_classes=num_classes,
            seed=seed,
            limit_train=limit_train,
            limit_val=limit_val,
            limit_test=limit_test,
        )
        for key, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise DataError(f"must be at least 1, got {value}", key=f"permanences.data.{key}")
        # Samples are drawn one by one from the seed, so generating only the first `limit` is the same as a subset.
        sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.sizes = {s: min(n, self.limits[s] or n) for s, n in sizes.items()}
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
            split: ShapesDataset(
                n,
                image_size=self.image_size,
                seed=self.seed * 3 + offset + 1,
                noise=self.noise,
                max_shapes=self.max_shapes,
            )
            for offset, (split, n) in enumerate(self.sizes.items())
        }


class FolderData(Data):
    """Images and masks from a folder (``data=folder data.root=...``), split by fraction."""

    def __init__(
        self,
        root: str,
        image_size: int | None = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_classes: int = 4,
        seed: int = 0,
        mask_values: list[int] | None = None,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            num_classes=num_classes,
            seed=seed,
            limit_train=limit_train,
            limit_val=limit_val,
            limit_test=limit_test,
        )
        if mask_values is not None and len(mask_values) > num_classes:
            raise DataError(
                f"lists {len(mask_values)} values, one a class, but data.num_classes is {num_classes}",
                key="data.mask_values",
                hint=f"Set data.num_classes={len(mask_values)}.",
            )
        self.mask_values = mask_values
        self.root = Path(str(root)).expanduser()
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise DataError(
                "val_fraction and test_fraction must be in [0, 1) and sum to less than 1",
                key="permanences.data.val_fraction",
            )
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        # The layout (root, images/, masks/, pairing) is checked now, without
        # torch, so a wrong folder stops the run before anything is written;
        # the files' contents are checked when the data is loaded.
        from tipi.vision.folder import find_pairs

        with _as_data_error():
            find_pairs(self.root)

    def make_datasets(self) -> dict[str, Dataset[Any]]:
        """Read the folder once, check every mask's values, then split it with a seeded permutation."""
        import torch
        from torch.utils.data import Subset

        from tipi.vision.folder import FolderDataset

        with _as_data_error():
            folder = FolderDataset(
                self.root, image_size=self.image_size, num_classes=self.num_classes, mask_values=self.mask_values
            )
            folder.check_masks()  # a mask value that is no class stops the run here, not batches into training
        full: Any = _DataErrors(folder)  # map-style: all Subset and DataLoader need
        n = len(full)
        n_val = max(1, round(n * self.val_fraction)) if self.val_fraction else 0
        n_test = max(1, round(n * self.test_fraction)) if self.test_fraction else 0
        if n - n_val - n_test < 1:
            raise DataError(
                f"{n} image(s) in '{self.root}' are too few to split into train/val/test", key="permanences.data.root"
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
        # With a fraction of 0 a split reuses the training images rather than being empty.
        return {"train": Subset(full, train), "val": Subset(full, val or train), "test": Subset(full, test or train)}
