from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import pickletools
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from workers.data import (
    CIFAR100,
    Batches,
    DatasetError,
    DownloadReport,
    ImageSet,
    cifar,
    ensure_archive,
    load_cifar100,
    load_dataset,
    normalize,
    prepare_dataset,
    random_crop,
    random_hflip,
    read_archive,
    split_train_val,
    stratified_sample,
    synthetic,
    write_cifar100_archive,
)
from workers.data.cifar import load_cifar

ARCHIVE = CIFAR100.archive
TRAIN_KEYS = {b"filenames", b"batch_label", b"fine_labels", b"coarse_labels", b"data"}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar100_archive(tmp_path_factory.mktemp("gen"), n_train=60, n_test=20, seed=3)


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: f.read() for m in tar if (f := tar.extractfile(m)) is not None}


# -- the archive format ---------------------------------------------------------------------


def test_generated_archive_loads_like_the_real_one(archive: Path) -> None:
    splits = read_archive(archive)
    assert splits.train.images.shape == (60, 3, 32, 32)
    assert splits.test.images.shape == (20, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    assert splits.num_classes == 100 and splits.class_names[0] == "synthetic_000"
    assert int(splits.train.labels.min()) >= 0 and int(splits.train.labels.max()) < 100
    assert splits.synthetic, "the meta marker flags a generated archive as synthetic"
    # Rows of `data` are the R, G, B planes, each row-major, as the official page says.
    raw = pickle.loads(members(archive)["cifar-100-python/train"], encoding="bytes")
    blue_row_3 = raw[b"data"][1, 2048 + 3 * 32 : 2048 + 4 * 32]
    assert torch.equal(splits.train.images[1, 2, 3], torch.from_numpy(blue_row_3))
    assert splits.train.labels.tolist() == raw[b"fine_labels"]


def test_generated_archive_has_the_official_layout(archive: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        assert set(tar.getnames()) == {
            "cifar-100-python",
            "cifar-100-python/train",
            "cifar-100-python/test",
            "cifar-100-python/meta",
        }
    blobs = members(archive)
    train = pickle.loads(blobs["cifar-100-python/train"], encoding="bytes")
    meta = pickle.loads(blobs["cifar-100-python/meta"], encoding="bytes")
    assert set(train) == TRAIN_KEYS
    assert train[b"data"].dtype.name == "uint8" and train[b"data"].shape == (60, 3072)
    assert all(isinstance(x, bytes) for x in train[b"filenames"])
    assert len(meta[b"fine_label_names"]) == 100 and len(meta[b"coarse_label_names"]) == 20
    # Python 2's protocol 2: strings as BINSTRING, no Python 3 `_codecs.encode` calls.
    ops = list(pickletools.genops(blobs["cifar-100-python/train"]))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    a = write_cifar100_archive(tmp_path / "a.tar.gz", n_train=20, n_test=10, seed=1)
    b = write_cifar100_archive(tmp_path / "b.tar.gz", n_train=20, n_test=10, seed=1)
    c = write_cifar100_archive(tmp_path / "c.tar.gz", n_train=20, n_test=10, seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_loads_through_md5_check(archive: Path, tmp_path: Path) -> None:
    (tmp_path / ARCHIVE).write_bytes(archive.read_bytes())
    splits = load_cifar(replace(CIFAR100, md5=md5(archive)), tmp_path, download=False)
    assert len(splits.train) == 60 and splits.source == tmp_path / ARCHIVE


def test_extracted_folder_is_read(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    splits = load_cifar100(tmp_path, download=False)
    assert len(splits.train) == 60 and splits.synthetic
    assert splits.source == tmp_path / "cifar-100-python"


def test_md5_mismatch_names_the_file(archive: Path, tmp_path: Path) -> None:
    (tmp_path / ARCHIVE).write_bytes(archive.read_bytes())
    with pytest.raises(DatasetError, match=f"md5 .* expected {CIFAR100.md5}") as e:
        load_cifar100(tmp_path, download=False)
    assert str(tmp_path / ARCHIVE) in str(e.value)


def test_truncated_archive_is_reported(archive: Path, tmp_path: Path) -> None:
    cut = tmp_path / ARCHIVE
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt") as e:
        read_archive(cut)
    assert str(cut) in str(e.value)
    with pytest.raises(DatasetError, match="md5"):
        load_cifar100(tmp_path, download=False)


def test_not_an_archive_is_reported(tmp_path: Path) -> None:
    junk = tmp_path / ARCHIVE
    junk.write_bytes(b"<html>404</html>")
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_archive(junk)


def write_tar(path: Path, blobs: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_pickle_with_foreign_globals_is_refused(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = {k.split("/")[-1]: v for k, v in members(archive).items()}
    blobs["train"] = pickle.dumps({b"data": Payload()}, protocol=2)
    with pytest.raises(DatasetError, match=r"unexpected global (__builtin__|builtins)\.print"):
        read_archive(write_tar(tmp_path / ARCHIVE, blobs))
    assert "must never run" not in capsys.readouterr().out


def test_missing_member_is_reported(archive: Path, tmp_path: Path) -> None:
    meta = members(archive)["cifar-100-python/meta"]
    with pytest.raises(DatasetError, match="lacks train, test"):
        read_archive(write_tar(tmp_path / ARCHIVE, {"meta": meta}))


# -- finding and downloading ----------------------------------------------------------------


def test_offline_says_where_to_put_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        load_cifar100(tmp_path, download=False)
    message = str(e.value)
    assert f"put it at {tmp_path / ARCHIVE}" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message


def test_unreachable_url_says_where_to_put_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="download failed") as e:
        ensure_archive(tmp_path, "http://127.0.0.1:9/x", CIFAR100.md5, filename=ARCHIVE)
    assert f"put it at {tmp_path / ARCHIVE}" in str(e.value)
    assert "http://127.0.0.1:9/x" in str(e.value)
    assert list(tmp_path.iterdir()) == [], "no partial download is left behind"


@pytest.fixture
def server(archive: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(archive.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{archive.name}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_md5(server: str, archive: Path, tmp_path: Path) -> None:
    got = ensure_archive(tmp_path / "new", server, md5(archive))
    assert got == tmp_path / "new" / ARCHIVE and got.read_bytes() == archive.read_bytes()

    with pytest.raises(DatasetError, match=f"md5 {md5(archive)}, expected 0+") as e:
        ensure_archive(tmp_path / "bad", server, "0" * 32)
    assert "nothing was written" in str(e.value)
    assert list((tmp_path / "bad").iterdir()) == []


def test_download_reports_its_progress(
    server: str, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar, "_CHUNK", 1 << 14)  # several reads of the small test archive
    seen: list[tuple[int, int | None]] = []
    ensure_archive(tmp_path, server, md5(archive), progress=lambda d, t: seen.append((d, t)))
    size = archive.stat().st_size
    assert len(seen) == -(-size // (1 << 14)) > 1
    assert seen[-1] == (size, size)  # the server announces Content-Length
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})  # strictly increasing


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_download_report_draws_a_bar_or_writes_tenths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # rich sizes its bar to the terminal
    log = io.StringIO()  # a service study's log: a line at every tenth
    with DownloadReport(log, label="downloading cifar100") as report:
        for done in range(0, 101 << 20, 1 << 20):
            report(done, 100 << 20)
    lines = log.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0] == "downloading cifar100: 0.0 of 100.0 MiB"
    assert lines[-1] == "downloading cifar100: 100.0 of 100.0 MiB"
    unknown = io.StringIO()  # no Content-Length: every 16 MiB
    with DownloadReport(unknown) as report:
        for done in range(0, 64 << 20, 1 << 20):
            report(done, None)
    assert unknown.getvalue().splitlines()[-1] == "downloading: 48.0 MiB"
    tty = _Terminal()  # a terminal: a rich bar, ended by the context manager
    with DownloadReport(tty, label="downloading cifar100") as report:
        report(50 << 20, 100 << 20)
        report(100 << 20, 100 << 20)
    assert report._bar is None and "downloading cifar100" in tty.getvalue()
    assert "104.9/104.9 MB" in tty.getvalue()  # rich counts decimal megabytes


def test_synthetic_dataset_is_generated_and_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(synthetic.DEFAULT_SIZE, "n_train", 300)
    monkeypatch.setitem(synthetic.DEFAULT_SIZE, "n_test", 50)
    splits = load_dataset("synthetic", tmp_path)
    assert (tmp_path / "synthetic" / ARCHIVE).is_file()
    assert splits.synthetic and splits.name == "synthetic" and len(splits.train) == 300
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", tmp_path)


def test_prepare_dataset_resolves_the_folder_and_makes_the_data_ready(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a study's driver does once before any trial (workers.tune.run_study): trials run in
    Ray's working directories, so the folder comes back absolute."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(synthetic.DEFAULT_SIZE, "n_train", 300)
    monkeypatch.setitem(synthetic.DEFAULT_SIZE, "n_test", 50)
    assert prepare_dataset("synthetic", "rel") == tmp_path / "rel"
    assert (tmp_path / "rel" / "synthetic" / ARCHIVE).is_file()

    with tarfile.open(archive, "r:gz") as tar:  # an extracted folder needs no archive
        tar.extractall(tmp_path / "extracted", filter="data")
    assert prepare_dataset("cifar100", "extracted", download=False) == tmp_path / "extracted"

    with pytest.raises(DatasetError) as missing:
        prepare_dataset("cifar100", "empty", download=False)
    assert f"put it at {tmp_path / 'empty' / ARCHIVE}" in str(missing.value)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / ARCHIVE).write_bytes(archive.read_bytes())  # not the official md5
    with pytest.raises(DatasetError, match=f"md5 .* expected {CIFAR100.md5}"):
        prepare_dataset("cifar100", "corrupt", download=False)
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz"):
        prepare_dataset("cifar10", "empty", download=False)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        prepare_dataset("imagenet", "rel")
    monkeypatch.setenv("CLNAS_DATA_DIR", "from-env")
    assert prepare_dataset("synthetic") == tmp_path / "from-env"


# -- the validation split -------------------------------------------------------------------


def labelled(n: int, classes: int) -> ImageSet:
    images = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8)
    return ImageSet(images.view(n, 1, 1, 1).expand(n, 3, 32, 32).clone(), torch.arange(n) % classes)


def ids(s: ImageSet) -> set[int]:
    # Recover each image's index from its pixels (unique for n <= 256 here).
    return set(s.images[:, 0, 0, 0].tolist())


def test_val_split_is_disjoint_reproducible_and_stratified() -> None:
    data = labelled(200, 10)
    train, val = split_train_val(data, val_size=50, seed=0)
    assert len(train) == 150 and len(val) == 50
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(200))
    assert torch.bincount(val.labels).tolist() == [5] * 10
    again = split_train_val(data, val_size=50, seed=0)[1]
    other = split_train_val(data, val_size=50, seed=1)[1]
    assert torch.equal(val.images, again.images) and torch.equal(val.labels, again.labels)
    assert ids(val) != ids(other)
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(data, val_size=200)


def test_stratified_sample_keeps_uneven_proportions() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    index = stratified_sample(labels, 25, torch.Generator().manual_seed(0))
    assert len(index) == 25 and len(set(index.tolist())) == 25
    assert torch.bincount(labels[index]).tolist() == [15, 8, 2]  # 15, 7.5, 2.5 -> remainders


# -- augmentation -------------------------------------------------------------------------------


def test_random_crop_cuts_shifted_windows() -> None:
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    shifts = []
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])
        ]
        assert found, f"image {i} is not a window of its padded source"
        shifts.append(found[0])
    assert len(set(shifts)) > 10, "offsets vary from image to image"
    assert torch.equal(out, random_crop(x, 4, torch.Generator().manual_seed(0)))


def test_random_hflip_flips_about_half() -> None:
    x = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8)
    out = random_hflip(x, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 60 < sum(flipped) < 140
    assert torch.equal(out, random_hflip(x, generator=torch.Generator().manual_seed(0)))


def test_normalize_uses_per_channel_stats() -> None:
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(x, CIFAR100.mean, CIFAR100.std)
    expected = [(1 - m) / s for m, s in zip(CIFAR100.mean, CIFAR100.std, strict=True)]
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected))


def test_batches_cover_the_set_and_reproduce() -> None:
    data = labelled(100, 10)
    plain = Batches(data.images, data.labels, 32)
    assert len(plain) == 4 and plain.num_images == 100
    xs, ys = zip(*plain, strict=True)
    assert torch.equal(torch.cat(ys), data.labels)
    assert torch.allclose(torch.cat(xs), normalize(data.images, CIFAR100.mean, CIFAR100.std))

    def epoch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = Batches(
            data.images,
            data.labels,
            32,
            shuffle=True,
            augment=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(seed),
        )
        xs, ys = zip(*b, strict=True)
        return torch.cat(xs), torch.cat(ys)

    (x0, y0), (x1, y1), (x2, _) = epoch(0), epoch(0), epoch(1)
    assert x0.shape == (96, 3, 32, 32) and len(set(y0.tolist())) == 10
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(x0, x2)
