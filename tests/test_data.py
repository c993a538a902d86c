"""Datasets and loaders, on tiny files written in the standard layouts (offline, CPU, fast)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from archspec.data import datasets
from archspec.data.datasets import Download, load_dataset, read_idx
from archspec.data.loader import epoch_order, make_loaders
from archspec.errors import ArchspecError

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"


# ---------------------------------------------------------------------------------------------
# fixture writers: the on-disk formats, written the way the official files are


def cifar_batch(n: int, rng: np.random.Generator, label_key: bytes = b"labels", classes: int = 10) -> dict:
    return {b"batch_label": b"test", label_key: [int(v) for v in rng.integers(0, classes, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)]}


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, dict]:
    """cifar-10-batches-py with 5 train batches and a test batch; returns what was written."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        written[name] = cifar_batch(per_batch, rng)
        with open(folder / name, "wb") as f:
            pickle.dump(written[name], f)
    return written


class _Py2StylePickler(pickle._Pickler):
    """Writes strings as python-2 `str` (SHORT_BINSTRING/BINSTRING), like the official CIFAR files,
    which python 3 reads back as bytes with encoding="bytes"."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def py2_style_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    # python 2 numpy named its module numpy.core.multiarray
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(root: Path, n_train: int = 12, n_test: int = 6, gz: bool = False, folder: str = "MNIST/raw",
                seed: int = 0) -> dict[str, np.ndarray]:
    raw = root / folder
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (raw / name).write_bytes(idx_bytes(array))
    return arrays


def tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_layout_round_trips_pixels_and_labels(tmp_path):
    written = write_cifar10(tmp_path)
    train = load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    test = load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and test.images.shape == (4, 3, 32, 32)
    expected = np.concatenate([written[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert np.array_equal(train.images.numpy().reshape(20, 3072), expected)
    # CHW row-major: the first 1024 values of a row are the red plane
    assert np.array_equal(train.images[0, 0].numpy().reshape(-1), expected[0, :1024])
    assert train.labels.tolist() == sum((written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert test.labels.tolist() == written["test_batch"][b"labels"]
    assert train.class_names[0] == "airplane" and train.info.num_classes == 10


def test_cifar_reads_python2_style_pickles(tmp_path):
    """The official CIFAR files are python-2 pickles: bytes keys and numpy.core names."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batches = {name: cifar_batch(5, rng, b"fine_labels", classes=100) for name in ("train", "test")}
    for name, batch in batches.items():
        data = py2_style_pickle(batch)
        assert b"cnumpy.core.multiarray\n_reconstruct" in data and b"U\x04data" in data
        (folder / name).write_bytes(data)
    test = load_dataset("cifar100", "test", data_dir=tmp_path, download=False)
    assert np.array_equal(test.images.numpy().reshape(5, -1), batches["test"][b"data"])
    assert test.labels.tolist() == batches["test"][b"fine_labels"]
    assert test.info.num_classes == 100 and test.class_names[:2] == ("apple", "aquarium_fish")


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}))
    with pytest.raises(ArchspecError, match=r"refusing to unpickle .*(posix|os)\.system"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    assert not marker.exists()


def test_damaged_pickle_gives_a_clear_error(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArchspecError, match="test_batch: not a readable python pickle"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False)


def test_missing_files_without_download_name_folder_and_files(tmp_path):
    with pytest.raises(ArchspecError) as e:
        load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    text = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in text and "data_batch_1" in text and "data_batch_5" in text
    assert "cifar-10-python.tar.gz" in text


def test_data_dir_defaults_to_archspec_data_env(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setenv("ARCHSPEC_DATA", str(tmp_path))
    assert datasets.default_data_dir() == tmp_path
    assert len(load_dataset("cifar10", "test", download=False)) == 4


# ---------------------------------------------------------------------------------------------
# MNIST IDX


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    train = load_dataset("mnist", "train", data_dir=tmp_path, download=False)
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert len(load_dataset("mnist", "test", data_dir=tmp_path, download=False)) == 6


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    arrays = write_mnist(tmp_path, folder="FashionMNIST/raw", seed=3)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False)
    assert np.array_equal(test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert test.class_names[0] == "t-shirt"


def test_truncated_idx_is_an_archspec_error(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ArchspecError, match=r"truncated IDX file: header says 6x28x28 \(4704 bytes"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ArchspecError, match="truncated IDX file"):
        read_idx(path)


def test_idx_with_bad_magic_or_trailing_bytes(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ArchspecError, match="not an IDX file of unsigned bytes"):
        read_idx(path)
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)) + b"extra")
    with pytest.raises(ArchspecError, match="corrupt IDX file"):
        read_idx(path)
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8)))[:-12])
    with pytest.raises(ArchspecError, match="cannot read"):
        read_idx(path)


def test_mnist_labels_out_of_range_are_reported(tmp_path):
    write_mnist(tmp_path)
    labels = np.array([0, 1, 2, 3, 4, 12], dtype=np.uint8)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(ArchspecError, match=r"label 12 is outside 0\.\.9"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)


def test_images_and_labels_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ArchspecError, match="expected N images of HxW and N labels"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False)


# ---------------------------------------------------------------------------------------------
# downloads (file:// URLs standing in for the internet)


def _cifar_tarball(tmp_path: Path) -> tuple[Path, dict]:
    src = tmp_path / "src"
    written = write_cifar10(src, per_batch=2)
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in (src / "cifar-10-batches-py").iterdir()}
    return tarball(tmp_path / "cifar-10-python.tar.gz", members), written


def test_download_cifar_from_url_checks_md5_and_unpacks(tmp_path, monkeypatch):
    archive, written = _cifar_tarball(tmp_path)
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", (
        Download("cifar-10-python.tar.gz", md5(archive), (archive.as_uri(),), archive=True),))
    data_dir = tmp_path / "data"
    test = load_dataset("cifar10", "test", data_dir=data_dir, download=True)
    assert np.array_equal(test.images.numpy().reshape(2, -1), written["test_batch"][b"data"])
    assert len(load_dataset("cifar10", "train", data_dir=data_dir, download=False)) == 10
    assert not (data_dir / "cifar-10-python.tar.gz").exists()  # the downloaded archive is removed once unpacked
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-py"]  # no temp files left


def test_download_with_wrong_md5_keeps_nothing(tmp_path, monkeypatch):
    archive, _ = _cifar_tarball(tmp_path)
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", (
        Download("cifar-10-python.tar.gz", "0" * 32, (archive.as_uri(),), archive=True),))
    data_dir = tmp_path / "data"
    with pytest.raises(ArchspecError, match=f"has MD5 {md5(archive)}, expected 0{{32}}"):
        load_dataset("cifar10", "test", data_dir=data_dir)
    assert list(data_dir.iterdir()) == []


def test_unreachable_url_names_directory_and_files(tmp_path, monkeypatch):
    url = (tmp_path / "no-such-file.tar.gz").as_uri()
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", (
        Download("cifar-10-python.tar.gz", "0" * 32, (url,), archive=True),))
    with pytest.raises(ArchspecError) as e:
        load_dataset("cifar10", "test", data_dir=tmp_path / "data")
    text = str(e.value)
    assert "cannot download cifar-10-python.tar.gz" in text and url in text
    assert f"put test_batch in {tmp_path / 'data' / 'cifar-10-batches-py'}" in text


def test_mnist_gz_download_tries_mirrors_in_order(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    images, labels = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([1, 2, 3], np.uint8)
    items = []
    for name, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        path = src / f"{name}.gz"
        path.write_bytes(gzip.compress(idx_bytes(array)))
        dead = (tmp_path / "dead" / path.name).as_uri()
        items.append(Download(path.name, md5(path), (dead, path.as_uri())))
    monkeypatch.setitem(datasets.DOWNLOADS, "mnist", tuple(items))
    test = load_dataset("mnist", "test", data_dir=tmp_path / "data")
    assert np.array_equal(test.images[:, 0].numpy(), images) and test.labels.tolist() == [1, 2, 3]
    assert (tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()


def test_hand_placed_archive_is_unpacked_without_md5(tmp_path, monkeypatch):
    archive, written = _cifar_tarball(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive.rename(data_dir / archive.name)
    test = load_dataset("cifar10", "test", data_dir=data_dir, download=False)
    assert test.labels.tolist() == written["test_batch"][b"labels"]


@pytest.mark.parametrize("member", ["../evil", "/abs/evil", "cifar-10-batches-py/../../evil"])
def test_archive_members_escaping_the_folder_are_refused(tmp_path, member):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tarball(data_dir / "cifar-10-python.tar.gz", {"cifar-10-batches-py/test_batch": b"x", member: b"boom"})
    with pytest.raises(ArchspecError, match="refusing to unpack"):
        load_dataset("cifar10", "test", data_dir=data_dir, download=False)
    assert not (tmp_path / "evil").exists() and not Path("/abs/evil").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-python.tar.gz"]


def test_svhn_without_scipy_says_so(tmp_path):
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        with pytest.raises(ArchspecError, match="SVHN needs scipy"):
            load_dataset("svhn", "test", data_dir=tmp_path, download=False)
    else:
        with pytest.raises(ArchspecError, match="svhn test data not found"):
            load_dataset("svhn", "test", data_dir=tmp_path, download=False)


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ArchspecError, match='unknown dataset "cifar11".*did you mean "cifar10"'):
        load_dataset("cifar11", "train", data_dir=tmp_path)
    with pytest.raises(ArchspecError, match='unknown split "val"'):
        load_dataset("synthetic", "val")


# ---------------------------------------------------------------------------------------------
# imagefolder


def write_png(path: Path, image: torch.Tensor) -> None:
    from torchvision.io import encode_png

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 suggests TorchCodec
        path.write_bytes(bytes(encode_png(image).numpy()))


def test_imagefolder_reads_classes_sorted_by_name(tmp_path):
    g = torch.Generator().manual_seed(0)
    written = {}
    for split, per_class in (("train", 2), ("test", 1)):
        for cls in ("zebra", "ant", "moth"):
            for i in range(per_class):
                image = torch.randint(0, 256, (3, 8, 6), dtype=torch.uint8, generator=g)
                write_png(tmp_path / split / cls / f"{i}.png", image)
                written[(split, cls, i)] = image
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    train = load_dataset(f"imagefolder:{tmp_path}", "train")
    assert train.class_names == ("ant", "moth", "zebra") and train.info.input_shape == (3, 8, 6)
    assert train.images.shape == (6, 3, 8, 6) and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(train.images[5], written[("train", "zebra", 1)])
    assert train.info.mean == (0.5, 0.5, 0.5) and train.info.num_classes == 3
    test = load_dataset(f"imagefolder:{tmp_path}", "test")
    assert test.labels.tolist() == [0, 1, 2] and torch.equal(test.images[1], written[("test", "moth", 0)])
    info = datasets.imagefolder_info(f"imagefolder:{tmp_path}")
    assert info.input_shape == (3, 8, 6) and info.class_names == ("ant", "moth", "zebra")


def test_imagefolder_grey_images_decode_to_one_channel(tmp_path):
    image = torch.arange(64, dtype=torch.uint8).view(1, 8, 8)
    for split in ("train", "test"):
        write_png(tmp_path / split / "a" / "x.png", image)
        write_png(tmp_path / split / "b" / "y.png", 255 - image)
    train = load_dataset(f"imagefolder:{tmp_path}", "train")
    assert train.images.shape == (2, 1, 8, 8) and torch.equal(train.images[0], image)
    # a spec that wants colour gets the grey images replicated into 3 channels
    colour = load_dataset(f"imagefolder:{tmp_path}", "train", input_shape=(3, 8, 8))
    assert colour.images.shape == (2, 3, 8, 8) and torch.equal(colour.images[0, 2], image[0])


def test_imagefolder_size_mismatch_names_the_file(tmp_path):
    write_png(tmp_path / "train" / "a" / "1.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    write_png(tmp_path / "train" / "b" / "2.png", torch.zeros(3, 9, 8, dtype=torch.uint8))
    with pytest.raises(ArchspecError, match=r"b/2\.png: image is 3x9x8 but .*a/1\.png is 3x8x8"):
        load_dataset(f"imagefolder:{tmp_path}", "train")


def test_imagefolder_errors(tmp_path):
    write_png(tmp_path / "train" / "a" / "1.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ArchspecError, match=r"test: not found; an imagefolder dataset needs"):
        load_dataset(f"imagefolder:{tmp_path}", "test")
    write_png(tmp_path / "test" / "zzz" / "1.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ArchspecError, match='class "zzz" has no folder in'):
        load_dataset(f"imagefolder:{tmp_path}", "test")
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ArchspecError, match=r"broken\.png: cannot decode image"):
        load_dataset(f"imagefolder:{tmp_path}", "train")


# ---------------------------------------------------------------------------------------------
# synthetic and mnist-mini


def test_synthetic_is_deterministic_per_seed_and_shaped_by_the_spec():
    a = load_dataset("synthetic", "train", seed=1)
    b = load_dataset("synthetic", "train", seed=1)
    c = load_dataset("synthetic", "train", seed=2)
    assert a.images.shape == (512, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert torch.bincount(a.labels).tolist() == [52] * 2 + [51] * 8
    small = load_dataset("synthetic", "test", input_shape=(1, 12, 10), num_classes=4)
    assert small.images.shape == (128, 1, 12, 10) and small.info.num_classes == 4
    assert small.info.input_shape == (1, 12, 10) and small.class_names == ("class0", "class1", "class2", "class3")
    assert int(small.labels.max()) == 3


def test_synthetic_labels_are_learnable():
    """Nearest class mean, fitted on train, classifies the test split far above chance (10%)."""
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    x_train, x_test = train.images.flatten(1).float(), test.images.flatten(1).float()
    means = torch.stack([x_train[train.labels == k].mean(0) for k in range(10)])
    predicted = torch.cdist(x_test, means).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.8


def test_mnist_mini_is_shipped_balanced_and_small():
    train, test = load_dataset("mnist-mini", "train"), load_dataset("mnist-mini", "test")
    assert train.images.shape == (6000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [600] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert 0.05 < train.images.float().mean() / 255 < 0.25  # digits: mostly black background
    path = Path(datasets.__file__).with_name("mnist_mini.npz")
    assert path.stat().st_size < 2 * 1024 * 1024


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="../shared/data/mnist.npz not available")
def test_mnist_mini_is_an_exact_subset_of_mnist():
    mini = np.load(Path(datasets.__file__).with_name("mnist_mini.npz"))
    full = np.load(SHARED_MNIST)
    for split in ("train", "test"):
        index = mini[f"{split}_index"]
        assert len(np.unique(index)) == len(index)
        assert np.array_equal(full[f"x_{split}"][index], mini[f"x_{split}"])
        assert np.array_equal(full[f"y_{split}"][index], mini[f"y_{split}"])


# ---------------------------------------------------------------------------------------------
# loaders


def _all_batches(batches):
    xs, ys = zip(*list(batches), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_batch_counts_and_last_batch():
    bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=100, eval_batch_size=50)
    assert (bundle.num_train, bundle.num_test, len(bundle.train), len(bundle.test)) == (512, 128, 6, 3)
    sizes = [len(y) for _, y in bundle.train]
    assert sizes == [100] * 5 + [12]
    assert [len(y) for _, y in bundle.test] == [50, 50, 28]
    dropped = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=100, drop_last=True)
    assert len(dropped.train) == 5 and [len(y) for _, y in dropped.train] == [100] * 5
    assert bundle.class_names == tuple(f"class{i}" for i in range(10)) and bundle.info.name == "synthetic"


def test_normalisation_with_explicit_mean_and_std():
    norm = {"mean": [0.25, 0.5, 0.75], "std": [0.5, 0.25, 2.0]}
    bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=64, normalize=norm)
    x, y = _all_batches(bundle.test)  # the test set is not shuffled
    raw = load_dataset("synthetic", "test")
    expected = (raw.images.float() / 255 - torch.tensor([0.25, 0.5, 0.75]).view(3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]).view(3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, expected, atol=1e-6) and torch.equal(y, raw.labels)
    plain = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=64, normalize=False)
    assert torch.allclose(_all_batches(plain.test)[0], raw.images.float() / 255)
    # one value applies to every channel (the PyTorch tutorial's 0.5/0.5)
    half = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=64,
                        normalize={"mean": [0.5], "std": 0.5})
    assert torch.allclose(_all_batches(half.test)[0], raw.images.float() / 255 * 2 - 1, atol=1e-6)


def test_dataset_statistics_are_the_default_normalisation():
    bundle = make_loaders("mnist-mini", input_shape=(1, 28, 28), num_classes=10, batch_size=500, limit_test=500)
    x, _ = next(iter(bundle.test))
    # mnist's published mean/std give roughly zero-mean, unit-variance batches
    assert abs(float(x.mean())) < 0.15 and 0.85 < float(x.std()) < 1.15


@pytest.mark.parametrize("norm, message", [
    ({"mean": [0.5, 0.5], "std": [0.5]}, "mean needs one number for all channels or 3"),
    ({"mean": [0.5] * 3, "std": [0.5, 0.0, 0.5]}, "std values must be > 0"),
    ({"mean": 0.5}, 'exactly the keys "mean" and "std"'),
    ("yes", "normalize must be true, false or"),
])
def test_bad_normalize_values(norm, message):
    with pytest.raises(ArchspecError, match=message):
        make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=8, normalize=norm)


def test_set_epoch_makes_the_order_a_function_of_seed_and_epoch():
    def run(epoch, seed=0):
        bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=64, seed=seed)
        bundle.train.set_epoch(epoch)
        return _all_batches(bundle.train)

    x3, y3 = run(3)
    x3b, y3b = run(3)
    assert torch.equal(x3, x3b) and torch.equal(y3, y3b)
    assert not torch.equal(y3, run(4)[1]) and not torch.equal(y3, run(3, seed=1)[1])
    # without set_epoch, each pass moves on to the next epoch: the same as an explicit set_epoch
    bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=64)
    first, second = _all_batches(bundle.train), _all_batches(bundle.train)
    assert torch.equal(first[1], run(0)[1]) and torch.equal(second[1], run(1)[1])
    # every epoch is a permutation of the whole training set
    assert torch.equal(torch.sort(y3).values, torch.sort(load_dataset("synthetic", "train").labels).values)


def test_augmented_batches_are_reproducible_and_independent_of_workers():
    def run(workers, epoch):
        bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=16,
                              augment="flip_crop", limit_train=48, num_workers=workers)
        bundle.train.set_epoch(epoch)
        return _all_batches(bundle.train)

    x0, y0 = run(0, epoch=2)
    x1, y1 = run(1, epoch=2)
    assert x0.shape == (48, 3, 32, 32) and x0.dtype == torch.float32 and y0.dtype == torch.int64
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(x0, run(0, epoch=3)[0])


def test_augmentation_does_not_move_the_training_rng():
    bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=16,
                          augment="heavy", limit_train=16, num_workers=0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _all_batches(bundle.train)
    assert torch.equal(torch.rand(3), expected)


def test_sharding_covers_the_training_set_once_across_ranks():
    def rows(rank, world_size, limit):
        bundle = make_loaders("synthetic", input_shape=(3, 32, 32), num_classes=10, batch_size=7, normalize=False,
                              limit_train=limit, rank=rank, world_size=world_size)
        bundle.train.set_epoch(5)
        return bundle, _all_batches(bundle.train)[0]

    full = load_dataset("synthetic", "train").images.float() / 255
    position = {bytes(row.numpy().tobytes()): i for i, row in enumerate(full)}
    bundle, _ = rows(0, 1, 60)
    seen = []
    for rank in range(3):
        shard_bundle, x = rows(rank, 3, 60)
        assert len(shard_bundle.train) == 3 and x.shape[0] == 20
        seen += [position[bytes(row.numpy().tobytes())] for row in x]
    assert len(seen) == 60 and len(set(seen)) == 60
    # uneven: every rank gets ceil(n / world_size), the set is covered, padding repeats a few samples
    orders = [epoch_order(10, seed=0, epoch=1, rank=r, world_size=4) for r in range(4)]
    assert [len(o) for o in orders] == [3, 3, 3, 3]
    assert set(torch.cat(orders).tolist()) == set(range(10))


def test_limits_are_class_balanced_and_deterministic():
    a = make_loaders("mnist-mini", input_shape=(1, 28, 28), num_classes=10, batch_size=1000, limit_train=100,
                     limit_test=55, seed=4, normalize=False)
    b = make_loaders("mnist-mini", input_shape=(1, 28, 28), num_classes=10, batch_size=1000, limit_train=100,
                     limit_test=55, seed=4, normalize=False)
    assert (a.num_train, a.num_test) == (100, 55)
    xa, ya = _all_batches(a.test)
    xb, yb = _all_batches(b.test)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.bincount(ya, minlength=10).tolist()) == [5] * 5 + [6] * 5
    assert torch.bincount(_all_batches(a.train)[1], minlength=10).tolist() == [10] * 10
    c = make_loaders("mnist-mini", input_shape=(1, 28, 28), num_classes=10, batch_size=1000, limit_test=55,
                     seed=5, normalize=False)
    assert not torch.equal(_all_batches(c.test)[0], xa)


def test_spec_shape_or_classes_mismatch_suggests_retargeting():
    with pytest.raises(ArchspecError, match='"mnist-mini" has 1x28x28 images but the model expects 3x32x32') as e:
        make_loaders("mnist-mini", input_shape=(3, 32, 32), num_classes=10, batch_size=8)
    assert "--data mnist-mini" in e.value.hint
    with pytest.raises(ArchspecError, match="has 10 classes but the model has 100 outputs"):
        make_loaders("mnist-mini", input_shape=(1, 28, 28), num_classes=100, batch_size=8)


def test_a_tiny_model_learns_from_the_synthetic_loader():
    torch.manual_seed(0)
    bundle = make_loaders("synthetic", input_shape=(3, 16, 16), num_classes=10, batch_size=64)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(3):
        bundle.train.set_epoch(epoch)
        for x, y in bundle.train:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in bundle.test)
    assert correct / bundle.num_test > 0.5



@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="../shared/data/mnist.npz not available")
def test_reads_the_real_mnist_idx_files(tmp_path):
    """The shared folder's materialize.py writes the official IDX layout; we read back every digit."""
    import subprocess
    import sys

    script = SHARED_MNIST.with_name("materialize.py")
    subprocess.run([sys.executable, str(script), str(tmp_path), "--only", "mnist"], check=True, capture_output=True)
    full = np.load(SHARED_MNIST)
    test = load_dataset("mnist", "test", data_dir=tmp_path, download=False)
    assert np.array_equal(test.images[:, 0].numpy(), full["x_test"])
    assert np.array_equal(test.labels.numpy(), full["y_test"])
    assert len(load_dataset("mnist", "train", data_dir=tmp_path, download=False)) == 60000
