"""CIFAR-10/100 from the official python-version archives (docs/design.md §6): find the archive (or
its
extracted folder) in a data directory or download it, check the published md5, and decode the
pickled batches into uint8 tensors. Also the held-out validation split used for selection."""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# Meta key that `workers.data.synthetic` adds so a generated archive is recognised as synthetic
# wherever it ends up (even extracted into a `cifar-100-python/` folder).
SYNTHETIC_MARK = b"clnas_synthetic"
_DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


class DatasetError(Exception):
    """A dataset that cannot be found, downloaded, verified or decoded."""


@dataclass(frozen=True)
class CifarFormat:
    """Where one of the official CIFAR python archives lives and how its batches are laid out."""

    name: str
    archive: str  # file name of the archive in the data directory
    url: str
    md5: str
    folder: str  # top-level folder inside the archive
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    meta_member: str
    label_key: bytes
    names_key: bytes
    mean: tuple[float, float, float]  # per-channel mean and std of the training images in [0, 1]
    std: tuple[float, float, float]

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train_members, *self.test_members, self.meta_member)


CIFAR100 = CifarFormat(
    name="cifar100",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    folder="cifar-100-python",
    train_members=("train",),
    test_members=("test",),
    meta_member="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)
CIFAR10 = CifarFormat(
    name="cifar10",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    folder="cifar-10-batches-py",
    train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_members=("test_batch",),
    meta_member="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 `(N, 3, 32, 32)` and their labels as int64 `(N,)`."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


@dataclass(frozen=True)
class CifarSplits:
    """A decoded dataset. `synthetic` is true for generated stand-ins: label their results so."""

    name: str
    train: ImageSet
    test: ImageSet
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    synthetic: bool
    source: Path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def default_data_dir() -> Path:
    """`$CLNAS_DATA_DIR`, else `~/.cache/clnas/data`."""
    return Path(os.environ.get("CLNAS_DATA_DIR", "~/.cache/clnas/data")).expanduser()


# -- finding, downloading and verifying the archive ---------------------------------------


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


Progress = Callable[[int, int | None], None]
"""Called as a download goes: bytes received so far, total bytes (None: not announced)."""


class DownloadReport:
    """A `Progress` for people: a bar on a terminal, else a line at every tenth of the file
    (a service study's log). Use as a context manager, which ends the bar either way."""

    def __init__(self, stream: IO[str] | None = None, label: str = "downloading"):
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self._bar: Any = None
        self._task: Any = None
        self._tenth = -1

    def __enter__(self) -> DownloadReport:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.stream.isatty():
            if self._bar is None:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                    TransferSpeedColumn,
                )

                self._bar = Progress(TextColumn(self.label), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(),
                                     console=Console(file=self.stream))
                self._task = self._bar.add_task(self.label, total=total)
                self._bar.start()
            self._bar.update(self._task, completed=done)
            return
        tenth = 10 * done // total if total else done >> 24  # no total: every 16 MiB
        if tenth != self._tenth:
            self._tenth = tenth
            of = f" of {total / 2**20:.1f}" if total else ""
            print(f"{self.label}: {done / 2**20:.1f}{of} MiB", file=self.stream, flush=True)


def ensure_archive(
    data_dir: str | Path,
    url: str,
    md5: str | None,
    *,
    download: bool = True,
    filename: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """`<data_dir>/<filename>` (default: the URL's last component), downloaded from `url` when
    missing (reported to `progress`); its md5 is checked against `md5` (None: not checked).
    Raises `DatasetError` saying where to put the file when it is missing and cannot be
    downloaded."""
    path = Path(data_dir).expanduser() / (filename or url.rstrip("/").rsplit("/", 1)[-1])
    if path.is_file():
        _check_md5(path, md5, url)
        return path
    if not download:
        raise DatasetError(_where_to_put_it(path, url, md5, "downloading is disabled"))
    log.info("downloading %s to %s", url, path)
    try:
        _download(url, path, md5, progress)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors; bad URL: ValueError
        raise DatasetError(_where_to_put_it(path, url, md5, f"download failed: {exc}")) from exc
    return path


def _where_to_put_it(path: Path, url: str, md5: str | None, reason: str) -> str:
    checksum = f" (md5 {md5})" if md5 else ""
    return f"{path} not found ({reason}). Download {url}{checksum} and put it at {path}"


def _check_md5(path: Path, md5: str | None, url: str) -> None:
    if md5 is None:
        return
    actual = file_md5(path)
    if actual != md5:
        raise DatasetError(
            f"{path} has md5 {actual}, expected {md5}: it is truncated, corrupt or not the "
            f"official archive; delete it and download it again from {url}"
        )


def _download(url: str, path: Path, md5: str | None, progress: Progress | None = None) -> None:
    """Stream `url` into a temporary file beside `path`, check the md5, then rename it into
    place (so concurrent workers never see a half-written archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if md5 is not None and digest.hexdigest() != md5:
            raise DatasetError(
                f"the file downloaded from {url} has md5 {digest.hexdigest()}, expected {md5}; "
                f"nothing was written to {path}. Download it yourself and put it at {path}"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- decoding -------------------------------------------------------------------------------

# The official batches are Python 2 protocol-2 pickles of dicts holding lists and one numpy
# array. They are read from the user's own local file, and only with this allow-list of globals,
# so a tampered archive fails to load instead of running code.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 1 (the official archives)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}") from None


def _unpickle(f: IO[bytes]) -> dict[bytes, Any]:
    # encoding="bytes": Python 2 `str` values (keys, names) come back as bytes.
    obj = _BatchUnpickler(f, encoding="bytes").load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"expected a dict, got {type(obj).__name__}")
    return obj


_CORRUPT = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    OSError,
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
)


def _archive_batches(path: Path, fmt: CifarFormat) -> Iterator[tuple[str, dict[bytes, Any]]]:
    """(member name, unpickled dict) for the members of `fmt`, in one pass over the archive."""
    wanted = {f"{fmt.folder}/{m}": m for m in fmt.members}
    with tarfile.open(path, "r:gz") as tar:
        for info in tar:
            member = wanted.get(info.name)
            if member is None:
                continue
            f = tar.extractfile(info)
            if f is not None:
                yield member, _unpickle(f)


def _folder_batches(folder: Path, fmt: CifarFormat) -> Iterator[tuple[str, dict[bytes, Any]]]:
    for m in fmt.members:
        with open(folder / m, "rb") as f:
            yield m, _unpickle(f)


def _read(
    source: Path,
    fmt: CifarFormat,
    batches: Callable[[Path, CifarFormat], Iterator[tuple[str, dict[bytes, Any]]]],
    *,
    name: str | None,
    synthetic: bool,
) -> CifarSplits:
    try:
        found = dict(batches(source, fmt))
        missing = [m for m in fmt.members if m not in found]
        if missing:
            raise DatasetError(
                f"{source} lacks {', '.join(missing)}: it is not the "
                f"{fmt.archive} archive or it is incomplete"
            )
        return _decode(found, fmt, source, name=name, synthetic=synthetic)
    except _CORRUPT as exc:
        raise DatasetError(
            f"{source} is truncated or corrupt ({type(exc).__name__}: {exc}); delete it and "
            f"download it again from {fmt.url}"
        ) from exc


def read_archive(
    path: str | Path,
    fmt: CifarFormat = CIFAR100,
    *,
    name: str | None = None,
    synthetic: bool = False,
) -> CifarSplits:
    """Decode an archive in `fmt`'s layout (no md5 check: see `ensure_archive`)."""
    if not Path(path).is_file():
        raise DatasetError(f"{path} not found")
    return _read(Path(path), fmt, _archive_batches, name=name, synthetic=synthetic)


def _images(
    batches: list[dict[bytes, Any]], label_key: bytes, num_classes: int, where: str
) -> ImageSet:
    data = np.concatenate([b[b"data"] for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{where}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != data.shape[:1]:
        raise DatasetError(f"{where}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{where}: labels outside [0, {num_classes})")
    # Rows are the R, G and B planes of a 32x32 image, each row-major.
    return ImageSet(torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels))


def _decode(
    found: dict[str, dict[bytes, Any]],
    fmt: CifarFormat,
    source: Path,
    *,
    name: str | None,
    synthetic: bool,
) -> CifarSplits:
    meta = found[fmt.meta_member]
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[fmt.names_key])
    n = len(class_names)
    return CifarSplits(
        name=name or fmt.name,
        train=_images([found[m] for m in fmt.train_members], fmt.label_key, n, f"{source} train"),
        test=_images([found[m] for m in fmt.test_members], fmt.label_key, n, f"{source} test"),
        class_names=class_names,
        mean=fmt.mean,
        std=fmt.std,
        synthetic=synthetic or bool(meta.get(SYNTHETIC_MARK, False)),
        source=source,
    )


def cifar_source(fmt: CifarFormat, data_dir: str | Path, *, download: bool = True,
                 progress: Progress | None = None) -> Path:
    """Where `load_cifar` reads `fmt` from: `<data_dir>/<fmt.folder>/` if extracted there, else
    `<data_dir>/<fmt.archive>` (downloaded when missing and `download`), md5 checked."""
    root = Path(data_dir).expanduser()
    folder = root / fmt.folder
    if all((folder / m).is_file() for m in fmt.members):
        return folder
    return ensure_archive(root, fmt.url, fmt.md5, download=download, filename=fmt.archive,
                          progress=progress)


def load_cifar(fmt: CifarFormat, data_dir: str | Path, *, download: bool = True) -> CifarSplits:
    """The dataset from `cifar_source(fmt, data_dir)`: the extracted folder or the archive."""
    source = cifar_source(fmt, data_dir, download=download)
    if source.is_dir():
        return _read(source, fmt, _folder_batches, name=None, synthetic=False)
    return read_archive(source, fmt)


def load_cifar100(data_dir: str | Path, *, download: bool = True) -> CifarSplits:
    return load_cifar(CIFAR100, data_dir, download=download)


def load_cifar10(data_dir: str | Path, *, download: bool = True) -> CifarSplits:
    return load_cifar(CIFAR10, data_dir, download=download)


# -- the held-out validation split ----------------------------------------------------------


def stratified_sample(labels: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of `k` random items with the class proportions of `labels` kept (quotas by
    largest remainder, ties to the lower class)."""
    n = int(labels.numel())
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} of {n} items")
    perm = torch.randperm(n, generator=generator)
    shuffled = labels[perm]
    counts = torch.bincount(shuffled)
    exact = counts.double() * k / n
    quota = exact.floor().long()
    short = k - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:short]] += 1
    by_class = torch.argsort(shuffled, stable=True)  # grouped by class, random within a class
    cls = shuffled[by_class]
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[cls]
    return perm[by_class[rank < quota[cls]]].sort().values


def split_train_val(
    train: ImageSet, val_size: int = 5000, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """(train minus validation, validation): `val_size` images held out of the training set,
    stratified by class; the same seed gives the same split."""
    if not 0 < val_size < len(train):
        raise ValueError(f"val_size must be in [1, {len(train) - 1}], got {val_size}")
    val_index = stratified_sample(train.labels, val_size, torch.Generator().manual_seed(seed))
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[val_index] = False
    return train.subset(keep.nonzero().squeeze(1)), train.subset(val_index)
