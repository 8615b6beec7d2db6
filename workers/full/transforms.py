"""ImageNet augmentation on tensors, one image at a time in the DataLoader workers (docs/design.md
§6: no
torchvision). Training: random-resized crop + horizontal flip (+ colour jitter); evaluation:
resize the shorter side + centre crop. Images are uint8 `(3, H, W)` in and out; every random
draw comes from the `torch.Generator` passed in, so a sample's augmentation depends only on
the seed the dataset derives for it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Inception-style crop aspect ratios (Szegedy et al. 2015; torchvision's RandomResizedCrop).
_RATIO = (3 / 4, 4 / 3)
_ATTEMPTS = 10
# ITU-R 601 luma, the grayscale that colour jitter blends towards.
_LUMA = (0.299, 0.587, 0.114)


def _uniform(low: float, high: float, g: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(high: int, g: torch.Generator) -> int:
    """Uniform in [0, high)."""
    return int(torch.randint(high, (), generator=g))


def random_resized_crop_box(
    height: int, width: int, scale_min: float, g: torch.Generator
) -> tuple[int, int, int, int]:
    """`(top, left, h, w)` of a crop covering a random fraction in [scale_min, 1] of the area
    with a log-uniform aspect ratio in [3/4, 4/3]; after 10 failed tries, the largest central
    crop with the ratio clamped to that range."""
    area = height * width
    log_lo, log_hi = math.log(_RATIO[0]), math.log(_RATIO[1])
    for _ in range(_ATTEMPTS):
        target = area * _uniform(scale_min, 1.0, g)
        aspect = math.exp(_uniform(log_lo, log_hi, g))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(height - h + 1, g), _randint(width - w + 1, g), h, w
    ratio = width / height
    if ratio < _RATIO[0]:
        w, h = width, round(width / _RATIO[0])
    elif ratio > _RATIO[1]:
        h, w = height, round(height * _RATIO[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a `(3, H, W)` image to `size`; float32 in [0, 255]."""
    x = image.float()[None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation, each by a factor uniform in
    [1 - strength, 1 + strength], applied in random order (fb.resnet.torch's ColorJitter).
    `x` is float in [0, 255]."""
    factors = [_uniform(max(0.0, 1 - strength), 1 + strength, g) for _ in range(3)]
    luma = torch.tensor(_LUMA, dtype=x.dtype).view(3, 1, 1)
    for op in torch.randperm(3, generator=g).tolist():
        f = factors[op]
        if op == 0:  # brightness: blend with black
            x = x * f
        elif op == 1:  # contrast: blend with the mean grey level
            x = x * f + (x * luma).sum(0).mean() * (1 - f)
        else:  # saturation: blend with the grayscale image
            x = x * f + (x * luma).sum(0, keepdim=True) * (1 - f)
        x = x.clamp(0, 255)
    return x


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class TrainTransform:
    """Random-resized crop to `size` + horizontal flip + optional colour jitter."""

    size: int
    scale_min: float = 0.08
    jitter: float = 0.0

    def __call__(self, image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        top, left, h, w = random_resized_crop_box(image.shape[1], image.shape[2], self.scale_min, g)
        x = resize(image[:, top : top + h, left : left + w], (self.size, self.size))
        if self.jitter > 0:
            x = color_jitter(x, self.jitter, g)
        if float(torch.rand((), generator=g)) < 0.5:
            x = x.flip(-1)
        return to_uint8(x)


@dataclass(frozen=True)
class EvalTransform:
    """Resize the shorter side to `resize`, then cut the central `size` x `size` window."""

    size: int
    resize: int

    def __call__(self, image: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        h, w = image.shape[1], image.shape[2]
        if h <= w:
            new = (self.resize, max(self.resize, round(w * self.resize / h)))
        else:
            new = (max(self.resize, round(h * self.resize / w)), self.resize)
        x = resize(image, new)
        top = round((new[0] - self.size) / 2)
        left = round((new[1] - self.size) / 2)
        return to_uint8(x[:, top : top + self.size, left : left + self.size])
