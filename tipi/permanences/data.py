"""The data permanence: datasets and deterministic, resumable DataLoaders.

Each epoch's order comes from a generator seeded with ``(seed, epoch)``, so a
run resumed mid-epoch sees exactly the batches an uninterrupted run would.

Every value is checked when the permanence is constructed, by the builder,
before anything runs, with the range that is valid (the ranges are in
:mod:`tipi.permanences.data_checks`); so is a batch larger than
the training set, where the set's size is known from the config (the shapes
data) or the folder's listing: a warning (one short batch an epoch), or, with
``drop_last``, a refusal (no batch at all).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tipi.core.errors import DataError
from tipi.core.permanence import Permanence
from tipi.core.slot import slot_threads
from tipi.distributed import get_rank, get_world_size, shard
from tipi.permanences.data_checks import check_data, check_folder_data, check_shapes_data, whole

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def _seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    import numpy as np
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class Data(Permanence):
    """Base class: subclasses implement ``make_datasets()``; loaders come from here.

    ``drop_last``: never train on a batch smaller than ``batch_size``, so a
    training set smaller than one batch is refused. Without it such a set is
    trained as one short batch an epoch, with a warning. (The short last batch
    of a larger set is dropped either way, so every epoch and every rank has
    the same number of steps.)
    """

    #: the parameters that set one sample's shape (:meth:`input_shape`), named when a model does not fit it
    shape_keys: ClassVar[tuple[str, ...]] = ()
    #: the targets are per-pixel masks of the images' size (a model must give per-pixel logits)
    per_pixel_targets: ClassVar[bool] = True

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
        drop_last: bool = False,
    ) -> None:
        # At most this many samples a split (the debug presets' quick path, whatever the data).
        limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        check_data(batch_size, eval_batch_size, num_workers, num_classes, seed, limits)
        self.limits = limits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.num_classes = num_classes
        self.seed = seed
        self.drop_last = drop_last
        self.datasets: dict[str, Dataset[Any]] = {}
        self._batches_checked_for: tuple[int, int] | None = None  # (training samples, ranks) last checked
        self._batches_warned = False

    @classmethod
    def input_shape(cls, params: Mapping[str, Any]) -> tuple[int, ...] | None:
        """One sample's image shape ``(channels, height, width)`` under ``params``; None when only the data knows.

        The network's probe pushes one batch of this shape through the model before anything is built.
        """
        return None

    def check_batches(self, train_size: int) -> None:
        """A batch larger than the training set: warn once (one short batch an epoch); with ``drop_last``, refuse.

        Called when the set's size is known: from the config at construction (where a subclass can
        tell it), and again when the datasets are built (with the number of ranks then known).
        """
        world = get_world_size()
        if self._batches_checked_for == (train_size, world):
            return
        self._batches_checked_for = (train_size, world)
        per_step = self.batch_size * world
        if train_size >= per_step:
            return
        ranks = f" x {world} ranks" if world > 1 else ""
        if self.drop_last:
            raise DataError(
                f"{self.batch_size}{ranks} is larger than the training set ({train_size} samples): with "
                "data.drop_last=true no full batch is left to train on",
                key="data.batch_size",
                hint=f"Set data.batch_size to at most {train_size // world}, or data.drop_last=false to train "
                f"the {train_size} samples as one batch an epoch.",
            )
        if not self._batches_warned:
            self._batches_warned = True
            log.warning(
                "data.batch_size=%d%s is larger than the training set (%d samples): each epoch trains 1 batch "
                "of %d samples (set data.drop_last=true to refuse this)",
                self.batch_size,
                ranks,
                train_size,
                train_size,
            )

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
            self.check_batches(len(self.datasets["train"]))  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so
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
        """Training batches per epoch and rank (the last partial batch is dropped; a set smaller than one
        batch is one short batch, refused with ``drop_last`` by :meth:`check_batches`)."""
        self.prepare()
        return max(1, len(self.datasets["train"]) // (self.batch_size * get_world_size()))  # type: ignore[arg-type]  # map-style datasets have a length; torch's Dataset type does not say so

    def _loader_workers(self) -> int:
        """``num_workers``, within the cores of a pool slot (its torch threads plus these workers)."""
        threads = slot_threads()
        if threads is None or self.num_workers < threads:
            return self.num_workers
        if not getattr(self, "_capped_noted", False):
            self._capped_noted = True
            note = "data.num_workers %d -> %d: this pool job's slot has %d core(s)"
            log.info(note, self.num_workers, threads - 1, threads)
        return threads - 1

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
        workers = self._loader_workers()
        common: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": self._pin_memory(),
            "worker_init_fn": _seed_worker if workers else None,
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

    shape_keys = ("image_size",)

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
        drop_last: bool = False,
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
            drop_last=drop_last,
        )
        sizes = {"train": num_train, "val": num_val, "test": num_test}
        check_shapes_data(sizes, image_size, noise, max_shapes, num_classes)
        # Samples are drawn one by one from the seed, so generating only the first `limit` is the same as a subset.
        self.sizes = {s: min(n, self.limits[s] or n) for s, n in sizes.items()}
        self.image_size = image_size
        self.noise = noise
        self.max_shapes = max_shapes
        self.check_batches(self.sizes["train"])

    @classmethod
    def input_shape(cls, params: Mapping[str, Any]) -> tuple[int, ...] | None:
        """RGB images of ``image_size`` squared."""
        size = params.get("image_size", 64)
        return (3, size, size) if whole(size) else None

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

    shape_keys = ("image_size",)

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
        drop_last: bool = False,
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
            drop_last=drop_last,
        )
        check_folder_data(image_size, mask_values, num_classes, val_fraction, test_fraction)
        self.mask_values = mask_values
        self.root = Path(str(root)).expanduser()
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        # The layout (root, images/, masks/, pairing) is checked now, without
        # torch, so a wrong folder stops the run before anything is written;
        # the files' contents are checked when the data is loaded.
        from tipi.vision.folder import find_pairs

        with _as_data_error():
            pairs = find_pairs(self.root)
        train, _, _ = self._split_sizes(len(pairs))
        self.check_batches(min(train, self.limits["train"] or train))

    @classmethod
    def input_shape(cls, params: Mapping[str, Any]) -> tuple[int, ...] | None:
        """RGB images of ``image_size`` squared; None with ``image_size: null`` (each image keeps its size)."""
        size = params.get("image_size", 64)
        return (3, size, size) if whole(size) else None

    def _split_sizes(self, n: int) -> tuple[int, int, int]:
        """``(train, val, test)`` sample counts of ``n`` images; a ``DataError`` when no image is left to train."""
        n_val = max(1, round(n * self.val_fraction)) if self.val_fraction else 0
        n_test = max(1, round(n * self.test_fraction)) if self.test_fraction else 0
        if n - n_val - n_test < 1:
            raise DataError(
                f"{n} image(s) in '{self.root}' are too few to split into train/val/test", key="permanences.data.root"
            )
        return n - n_val - n_test, n_val, n_test

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
        _, n_val, n_test = self._split_sizes(n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
        # With a fraction of 0 a split reuses the training images rather than being empty.
        return {"train": Subset(full, train), "val": Subset(full, val or train), "test": Subset(full, test or train)}
