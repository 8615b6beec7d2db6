"""ImageNet folders, decoding and augmentation (no Ray)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from workers.full.data import (
    CollateReadable,
    EpochSampler,
    ImageFolderDataset,
    ImageFolderError,
    read_image,
    scan_imagenet,
)
from workers.full.transforms import (
    EvalTransform,
    TrainTransform,
    color_jitter,
    random_resized_crop_box,
)

CLASSES = 4


@pytest.fixture
def folder_copy(image_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(image_folder, tmp_path / "imagenet"))


def test_scan_reads_the_standard_layout(image_folder: Path) -> None:
    data = scan_imagenet(image_folder)
    assert data.classes == tuple(f"n{c:08d}" for c in range(CLASSES))
    assert (len(data.train), len(data.val)) == (32, 16)
    assert data.synthetic
    # class index = position of the folder name in sorted order
    for path, label in zip(data.train.paths, data.train.labels, strict=True):
        assert Path(path).parent.name == data.classes[label]
        assert path.endswith(".JPEG")


def test_missing_directories_name_the_path(folder_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError, match="no such data directory") as info:
        scan_imagenet(tmp_path / "nowhere")
    assert info.value.path == tmp_path / "nowhere"
    shutil.rmtree(folder_copy / "val")
    with pytest.raises(ImageFolderError, match="no such directory") as info:
        scan_imagenet(folder_copy)
    assert info.value.path == folder_copy / "val"
    assert str(folder_copy / "val") in str(info.value)


def test_split_without_class_folders(folder_copy: Path) -> None:
    shutil.rmtree(folder_copy / "train")
    (folder_copy / "train").mkdir()
    with pytest.raises(ImageFolderError, match="no class folders") as info:
        scan_imagenet(folder_copy)
    assert info.value.path == folder_copy / "train"


def test_empty_class_names_the_class_folder(folder_copy: Path) -> None:
    empty = folder_copy / "train" / "n00000002"
    for f in empty.iterdir():
        f.unlink()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(ImageFolderError, match="class 'n00000002' has no images") as info:
        scan_imagenet(folder_copy)
    assert info.value.path == empty


def test_val_classes_must_match_train(folder_copy: Path) -> None:
    shutil.rmtree(folder_copy / "val" / "n00000001")
    (folder_copy / "val" / "n09999999").mkdir()
    shutil.copy(
        next((folder_copy / "val" / "n00000000").iterdir()), folder_copy / "val" / "n09999999"
    )
    with pytest.raises(ImageFolderError) as info:
        scan_imagenet(folder_copy)
    message = str(info.value)
    assert info.value.path == folder_copy / "val"
    assert "val classes do not match train" in message
    assert "1 train classes missing (n00000001)" in message
    assert "1 classes not in train (n09999999)" in message


def test_unreadable_images_are_skipped_and_counted(folder_copy: Path) -> None:
    cls = folder_copy / "val" / "n00000000"
    (cls / "garbage.JPEG").write_bytes(b"this is not a JPEG")
    good = next(cls.iterdir()).read_bytes()
    (cls / "truncated.JPEG").write_bytes(good[: len(good) // 3])
    assert read_image(str(cls / "garbage.JPEG")) is None
    data = scan_imagenet(folder_copy)
    assert len(data.val) == 18  # scanning does not open the files
    dataset = ImageFolderDataset(data.val, EvalTransform(32, 36))
    loader = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=5,
        sampler=EpochSampler(len(data.val)),
        collate_fn=CollateReadable(32),
        num_workers=1,  # decoding in a DataLoader worker process
    )
    images = labels = skipped = 0
    for x, y, s in loader:
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8
        images += x.shape[0]
        labels += y.numel()
        skipped += int(s)
    assert (images, labels, skipped) == (16, 16, 2)


def test_a_batch_of_only_unreadable_images_is_empty() -> None:
    x, y, skipped = CollateReadable(8)([(None, 0), (None, 1)])
    assert x.shape == (0, 3, 8, 8) and y.shape == (0,) and int(skipped) == 2


def test_eval_transform_is_resize_then_centre_crop() -> None:
    image = torch.randint(0, 256, (3, 36, 50), dtype=torch.uint8)
    # the shorter side is already 36: resizing is the identity, the crop is the centre window
    out = EvalTransform(32, 36)(image)
    assert torch.equal(out, image[:, 2:34, 9:41])
    tall = EvalTransform(32, 36)(torch.zeros((3, 90, 45), dtype=torch.uint8))
    assert tall.shape == (3, 32, 32)


def test_train_transform_depends_only_on_the_generator_seed() -> None:
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    t = TrainTransform(32, jitter=0.4)

    def run(seed: int) -> torch.Tensor:
        return t(image, torch.Generator().manual_seed(seed))

    out = run(7)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert torch.equal(out, run(7))
    assert not torch.equal(out, run(8))


def test_random_resized_crop_box_bounds_and_fallback() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(60, 80, 0.08, g)
        assert top >= 0 and left >= 0 and top + h <= 60 and left + w <= 80
        assert 0.08 * 4800 * 0.9 <= h * w <= 4800
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
    # a 4 x 400 strip admits no crop of ratio <= 4/3 and full area: the central fallback
    assert random_resized_crop_box(4, 400, 1.0, g) == (0, 197, 4, 5)


def test_color_jitter_zero_strength_is_identity() -> None:
    x = torch.rand(3, 8, 8) * 255
    assert torch.allclose(color_jitter(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_epoch_sampler_shards_and_orders() -> None:
    n, world = 11, 3
    shards = [EpochSampler(n, rank=r, world_size=world, shuffle=True, seed=5) for r in range(world)]
    for s in shards:
        s.set_epoch(1)
    keys = [list(s) for s in shards]
    assert all(len(k) == len(s) == 4 for k, s in zip(keys, shards, strict=True))
    assert all(epoch == 1 for k in keys for epoch, _ in k)
    indices = [i for k in keys for _, i in k]
    assert set(indices) == set(range(n)) and len(indices) == 12  # padded by one repeat
    assert [list(s) for s in shards] == keys  # the same seed and epoch: the same order
    shards[0].set_epoch(2)
    assert [i for _, i in shards[0]] != [i for _, i in keys[0]]
    val = [EpochSampler(n, rank=r, world_size=world) for r in range(world)]
    assert sorted(i for s in val for _, i in s) == list(range(n))  # unpadded, each once
    assert sum(len(s) for s in val) == n


def test_synthetic_images_are_real_jpegs(image_folder: Path) -> None:
    path = next((image_folder / "train" / "n00000000").iterdir())
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert min(np.asarray(im).shape[:2]) >= 40
