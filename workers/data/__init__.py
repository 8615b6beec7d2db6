"""Training data: the CIFAR archives, the synthetic stand-in, the validation split and batched
on-device augmentation."""

from __future__ import annotations

from pathlib import Path

from workers.data.augment import Batches, normalize, random_crop, random_hflip
from workers.data.cifar import (
    CIFAR10,
    CIFAR100,
    CifarFormat,
    CifarSplits,
    DatasetError,
    DownloadReport,
    ImageSet,
    Progress,
    cifar_source,
    default_data_dir,
    ensure_archive,
    load_cifar10,
    load_cifar100,
    read_archive,
    split_train_val,
    stratified_sample,
)
from workers.data.synthetic import load_synthetic, synthetic_archive, write_cifar100_archive

DATASETS = ("cifar100", "cifar10", "synthetic")


def load_dataset(
    name: str, data_dir: str | Path | None = None, *, download: bool = True
) -> CifarSplits:
    """A dataset by name (`DATASETS`) from `data_dir` (default: `default_data_dir()`)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "cifar100":
        return load_cifar100(root, download=download)
    if name == "cifar10":
        return load_cifar10(root, download=download)
    if name == "synthetic":
        return load_synthetic(root)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def prepare_dataset(
    name: str, data_dir: str | Path | None = None, *, download: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Make dataset `name` ready under `data_dir` (default: `default_data_dir()`) without
    decoding it, and return that folder as an absolute path: a CIFAR archive is found (or its
    extracted folder) and md5-checked, or downloaded when missing and `download`; the synthetic
    archive is generated when missing. Raises `DatasetError` saying where to put a missing
    archive. A download is reported to `progress`. A study's driver calls it once before any
    trial starts (`workers.tune.run_study`)."""
    root = (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()).resolve()
    if name in ("cifar100", "cifar10"):
        fmt = CIFAR100 if name == "cifar100" else CIFAR10
        cifar_source(fmt, root, download=download, progress=progress)
    elif name == "synthetic":
        synthetic_archive(root)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return root


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "Batches",
    "CifarFormat",
    "CifarSplits",
    "DatasetError",
    "DownloadReport",
    "ImageSet",
    "Progress",
    "default_data_dir",
    "ensure_archive",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_synthetic",
    "normalize",
    "prepare_dataset",
    "random_crop",
    "random_hflip",
    "read_archive",
    "split_train_val",
    "stratified_sample",
    "write_cifar100_archive",
]
