"""A generated stand-in for CIFAR-100 (docs/design.md §6, the `synthetic` dataset) written in
exactly the
official archive's format, so the real loader reads it: the same member names, dict keys and
dtypes, and Python 2-style protocol-2 pickles. Its meta carries `SYNTHETIC_MARK`, and every
result computed on it is labelled synthetic."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from workers.data.cifar import CIFAR100, SYNTHETIC_MARK, CifarSplits, read_archive

SYNTHETIC_DIR = "synthetic"  # <data_dir>/synthetic/cifar-100-python.tar.gz


class ArchiveSize(TypedDict):
    n_train: int
    n_test: int
    num_classes: int
    seed: int


DEFAULT_SIZE: ArchiveSize = {"n_train": 12_000, "n_test": 2_000, "num_classes": 100, "seed": 0}
_CHUNK_IMAGES = 1024


def write_cifar100_archive(
    path_or_dir: str | Path,
    *,
    n_train: int,
    n_test: int,
    num_classes: int = 100,
    seed: int = 0,
    learnable: bool = True,
) -> Path:
    """Write a `cifar-100-python.tar.gz` (into the folder, unless the path ends in `.tar.gz`)
    and return its path. With `learnable`, each class has its own colour cast and coarse 4x4
    pattern under pixel noise, so a small CNN can learn it; otherwise labels and pixels are
    independent noise. Same arguments -> the same bytes."""
    if min(n_train, n_test) < 1 or num_classes < 2:
        raise ValueError("need n_train, n_test >= 1 and num_classes >= 2")
    path = Path(path_or_dir)
    if not path.name.endswith(".tar.gz"):
        path = path / CIFAR100.archive
    rng = np.random.default_rng(seed)
    signals = _class_signals(rng, num_classes) if learnable else None
    n_coarse = min(20, num_classes)
    members = {
        "train": _py2_pickle(_batch(rng, "train", n_train, num_classes, n_coarse, signals)),
        "test": _py2_pickle(_batch(rng, "test", n_test, num_classes, n_coarse, signals)),
        "meta": _py2_pickle(
            {
                b"fine_label_names": [f"synthetic_{c:03d}".encode() for c in range(num_classes)],
                b"coarse_label_names": [
                    f"synthetic_group_{c:02d}".encode() for c in range(n_coarse)
                ],
                SYNTHETIC_MARK: True,
            }
        ),
    }
    _write_tar_gz(path, CIFAR100.folder, members)
    return path


def synthetic_archive(data_dir: str | Path) -> Path:
    """`<data_dir>/synthetic/cifar-100-python.tar.gz`, generated with `DEFAULT_SIZE` when
    missing."""
    path = Path(data_dir).expanduser() / SYNTHETIC_DIR / CIFAR100.archive
    if not path.is_file():
        write_cifar100_archive(path, **DEFAULT_SIZE)
    return path


def load_synthetic(data_dir: str | Path) -> CifarSplits:
    """The synthetic stand-in from `synthetic_archive(data_dir)`; always flagged
    `synthetic=True`."""
    return read_archive(synthetic_archive(data_dir), CIFAR100, name="synthetic", synthetic=True)


def _class_signals(rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """float32 (classes, 3, 32, 32): a colour cast plus a pattern of 8x8-pixel cells (coarse
    enough to survive a 4-pixel crop shift)."""
    colour = rng.uniform(-48, 48, size=(num_classes, 3, 1, 1))
    cells = rng.normal(0, 24, size=(num_classes, 3, 4, 4))
    return (colour + np.kron(cells, np.ones((8, 8)))).astype(np.float32)


def _batch(
    rng: np.random.Generator,
    split: str,
    n: int,
    num_classes: int,
    n_coarse: int,
    signals: np.ndarray | None,
) -> dict[bytes, Any]:
    fine = rng.permutation(np.arange(n) % num_classes)
    data = np.empty((n, 3 * 32 * 32), dtype=np.uint8)
    for start in range(0, n, _CHUNK_IMAGES):
        rows = slice(start, min(start + _CHUNK_IMAGES, n))
        if signals is None:
            data[rows] = rng.integers(0, 256, size=(rows.stop - start, 3072), dtype=np.uint8)
            continue
        x = 128 + signals[fine[rows]] + rng.normal(0, 40, size=(rows.stop - start, 3, 32, 32))
        data[rows] = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 3072)
    label = "training" if split == "train" else "testing"
    return {
        b"filenames": [f"synthetic_{split}_{i:06d}.png".encode() for i in range(n)],
        b"batch_label": f"{label} batch 1 of 1".encode(),
        b"fine_labels": [int(c) for c in fine],
        b"coarse_labels": [int(c) * n_coarse // num_classes for c in fine],
        b"data": data,
    }


# -- the official files' byte format ------------------------------------------------------


def _py2_pickle(obj: Any) -> bytes:
    """A protocol-2 pickle laid out as Python 2's cPickle wrote the official batches: `str`
    (bytes here) as BINSTRING, numpy arrays reduced through `numpy.core.multiarray._reconstruct`.
    Python 3's own protocol-2 pickler would write bytes as `_codecs.encode` calls instead."""
    out = io.BytesIO()
    out.write(pickle.PROTO + b"\x02")
    _save(obj, out)
    out.write(pickle.STOP)
    return out.getvalue()


def _save(obj: Any, out: io.BytesIO) -> None:
    if isinstance(obj, dict):
        out.write(pickle.EMPTY_DICT)
        if obj:
            out.write(pickle.MARK)
            for key, value in obj.items():
                _save(key, out)
                _save(value, out)
            out.write(pickle.SETITEMS)
    elif isinstance(obj, list):
        out.write(pickle.EMPTY_LIST)
        if obj:
            out.write(pickle.MARK)
            for item in obj:
                _save(item, out)
            out.write(pickle.APPENDS)
    elif isinstance(obj, tuple):
        out.write(pickle.MARK)
        for item in obj:
            _save(item, out)
        out.write(pickle.TUPLE)
    elif isinstance(obj, bytes):
        if len(obj) < 256:
            out.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            out.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
    elif isinstance(obj, bool):
        out.write(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
        out.write(pickle.BININT + struct.pack("<i", obj))
    elif obj is None:
        out.write(pickle.NONE)
    elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8:
        # numpy's ndarray.__reduce__, as numpy 1 wrote it.
        state = (1, tuple(obj.shape), _UINT8, False, np.ascontiguousarray(obj).tobytes())
        _save(
            _Reduce(
                _Global("numpy.core.multiarray", "_reconstruct"),
                (_Global("numpy", "ndarray"), (0,), b"b"),
                state,
            ),
            out,
        )
    elif isinstance(obj, _Global):
        out.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    elif isinstance(obj, _Reduce):
        _save(obj.func, out)
        _save(obj.args, out)
        out.write(pickle.REDUCE)
        _save(obj.state, out)
        out.write(pickle.BUILD)
    else:
        raise TypeError(f"cannot write {type(obj).__name__} in the CIFAR batch format")


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Reduce:
    """`func(*args)`, then `__setstate__(state)`."""

    func: _Global
    args: tuple[Any, ...]
    state: tuple[Any, ...]


# numpy's dtype.__reduce__ for uint8: dtype('u1', 0, 1) with the version-3 state.
_UINT8 = _Reduce(_Global("numpy", "dtype"), (b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0))


def _write_tar_gz(path: Path, folder: str, members: dict[str, bytes]) -> None:
    """A gzipped tar of `folder/` and its members, with fixed times (reproducible bytes), moved
    into place only once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            top = tarfile.TarInfo(folder)
            top.type, top.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(top)
            for name, blob in members.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size, info.mode = len(blob), 0o644
                tar.addfile(info, io.BytesIO(blob))
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
