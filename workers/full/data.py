"""ImageNet in the standard folder layout (docs/design.md §6): `train/<wnid>/*.JPEG`,
`val/<wnid>/*.JPEG`,
class index = position of the wnid in the sorted folder names. The driver scans the folders once
(and fails early, naming the path, on a missing directory, an empty class or a val set whose
classes differ from train's); the training workers decode with Pillow in DataLoader workers.

Determinism: the sampler yields `(epoch, index)` keys and a sample's augmentation is drawn from
a generator seeded by `(seed, epoch, index)`, so an epoch's batches depend only on the seed and
the epoch: not on the number of loader processes, nor on whether the run was resumed."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from workers.data.cifar import DatasetError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
# A file of this name at the data root marks a generated dataset (see `workers.full.synthetic`):
# its accuracies are labelled synthetic wherever they appear.
SYNTHETIC_MARK = "CLNAS_SYNTHETIC"
# Seed streams: one for the epoch's sample order, one for per-sample augmentation.
_ORDER, _AUGMENT = 0, 1

Key = tuple[int, int]  # (epoch, index)
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class ImageFolderError(DatasetError):
    """An image-folder dataset that cannot be used; `path` is the offending file or folder."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class ImageFolder:
    """One split: image paths and their class indices."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class ImageNetFolders:
    root: Path
    classes: tuple[str, ...]
    train: ImageFolder
    val: ImageFolder
    synthetic: bool  # generated data: its accuracies are not real ImageNet numbers

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_split(root: str | Path) -> ImageFolder:
    """The `<root>/<class>/<image>` files of one split, classes sorted by folder name."""
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(root, "no such directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ImageFolderError(root, "no class folders (expected <split>/<wnid>/*.JPEG)")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        images = sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
        if not images:
            raise ImageFolderError(
                folder, f"class {name!r} has no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        paths += (str(folder / f) for f in images)
        labels += [label] * len(images)
    return ImageFolder(root, tuple(classes), tuple(paths), tuple(labels))


def scan_imagenet(data_dir: str | Path) -> ImageNetFolders:
    """Both splits of `data_dir`; val must have exactly train's classes. The image paths are
    absolute: Ray Train's workers run in their own working directories."""
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise ImageFolderError(root, "no such data directory")
    train = scan_split(root / "train")
    val = scan_split(root / "val")
    if val.classes != train.classes:
        missing = sorted(set(train.classes) - set(val.classes))
        extra = sorted(set(val.classes) - set(train.classes))
        parts = []
        if missing:
            parts.append(f"{len(missing)} train classes missing ({_few(missing)})")
        if extra:
            parts.append(f"{len(extra)} classes not in train ({_few(extra)})")
        raise ImageFolderError(root / "val", "val classes do not match train: " + "; ".join(parts))
    return ImageNetFolders(root, train.classes, train, val, (root / SYNTHETIC_MARK).exists())


def _few(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def sample_seed(seed: int, stream: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one `(stream, epoch, index)` (numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, stream, epoch, index]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def read_image(path: str) -> torch.Tensor | None:
    """uint8 `(3, H, W)` RGB, or None (logged) when Pillow cannot read the file."""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        log.warning("skipping unreadable image %s: %s", path, exc)
        return None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


class ImageFolderDataset(Dataset[tuple[torch.Tensor | None, int]]):
    """`dataset[(epoch, index)]` -> (transformed uint8 image, or None if unreadable; label)."""

    def __init__(self, folder: ImageFolder, transform: Transform, seed: int = 0):
        self.folder = folder
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor | None, int]:
        epoch, index = key
        label = self.folder.labels[index]
        image = read_image(self.folder.paths[index])
        if image is None:
            return None, label
        g = torch.Generator().manual_seed(sample_seed(self.seed, _AUGMENT, epoch, index))
        return self.transform(image, g), label


class EpochSampler(Sampler[Key]):
    """This rank's share of one epoch as `(epoch, index)` keys. Shuffled: a permutation seeded
    by `(seed, epoch)`, padded by wrapping around to a multiple of `world_size` so every rank
    gets as many samples (DistributedSampler's rule). Not shuffled: indices `rank::world_size`,
    unpadded, so evaluation counts every image exactly once."""

    def __init__(
        self, n: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = False, seed: int = 0
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.n = n
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)[self.rank :: self.world_size]
        g = torch.Generator().manual_seed(sample_seed(self.seed, _ORDER, self.epoch, 0))
        order = torch.randperm(self.n, generator=g)
        total = math.ceil(self.n / self.world_size) * self.world_size
        order = order.repeat(math.ceil(total / self.n))[:total]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[Key]:
        return ((self.epoch, int(i)) for i in self._indices())


@dataclass(frozen=True)
class CollateReadable:
    """Stack the readable images of a batch; the third element counts the skipped ones."""

    image_size: int

    def __call__(
        self, batch: Sequence[tuple[torch.Tensor | None, int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kept = [(x, y) for x, y in batch if x is not None]
        skipped = torch.tensor(len(batch) - len(kept))
        if not kept:
            empty = torch.empty((0, 3, self.image_size, self.image_size), dtype=torch.uint8)
            return empty, torch.empty(0, dtype=torch.int64), skipped
        images = torch.stack([x for x, _ in kept])
        return images, torch.tensor([y for _, y in kept], dtype=torch.int64), skipped
