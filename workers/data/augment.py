"""Batched augmentation and normalisation on the training device (docs/design.md §6: no
torchvision).
Crops and flips work on whole uint8 batches by indexing; the random draws come from one CPU
`torch.Generator`, so a seed gives the same augmentations on every device."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from workers.data.cifar import CIFAR100


def normalize(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """float32 `(x - mean) / std` per channel; uint8 images are first scaled to [0, 1]."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def random_crop(
    images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by `padding` pixels and cut a random window of the original size from each image
    (the CIFAR "4-pixel pad random crop")."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(images.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_hflip(
    images: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image left-right with probability `p`."""
    flip = (torch.rand(images.shape[0], generator=generator) < p).to(images.device)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


class Batches:
    """Mini-batches `(x, y)` of an in-memory image set on `device`: x float32 normalised (after
    crop + flip when `augment`), y int64. The uint8 images are moved to the device once.
    `generator` (CPU) drives shuffling and augmentation; None uses torch's global RNG."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        augment: bool = False,
        mean: Sequence[float] = CIFAR100.mean,
        std: Sequence[float] = CIFAR100.std,
        drop_last: bool = False,
        padding: int = 4,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment
        self.drop_last = drop_last
        self.padding = padding
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device)

    @property
    def num_images(self) -> int:
        """Images per pass (the dropped last partial batch excluded)."""
        n = int(self.labels.shape[0])
        return n - n % self.batch_size if self.drop_last else n

    def __len__(self) -> int:
        return math.ceil(self.num_images / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = int(self.labels.shape[0])
        order = (
            torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        ).to(self.device)
        for start in range(0, self.num_images, self.batch_size):
            index = order[start : start + self.batch_size]
            x = self.images[index]
            if self.augment:
                x = random_hflip(
                    random_crop(x, self.padding, self.generator), generator=self.generator
                )
            yield normalize(x, self._mean, self._std), self.labels[index]
