"""Read image-classification datasets from their standard on-disk layouts into uint8 tensors.

Why not `torchvision.datasets`: those classes decode one sample at a time (through PIL) and insist
on the official MD5 sums of files already on disk, which refuses perfectly good re-encoded copies.
Here each reader goes from the file format straight to one numpy array and `torch.from_numpy`, and
MD5 sums are checked only right after a download, where they catch a broken transfer.

Layouts (under `data_dir`, default `$ARCHSPEC_DATA` or `~/.cache/archspec/data`) are the ones the
official archives unpack to, the same that torchvision uses, so an existing download can be shared:

    cifar10        cifar-10-batches-py/data_batch_1..5, test_batch        (python pickles)
    cifar100       cifar-100-python/train, test                           (python pickles)
    mnist          MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte  (IDX, or the same + .gz)
    fashion-mnist  FashionMNIST/raw/... as mnist
    svhn           svhn/train_32x32.mat, test_32x32.mat                   (needs scipy)

plus `mnist-mini` (shipped inside the package), `synthetic` (generated) and `imagefolder:PATH`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.client
import io
import os
import pickle
import shutil
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from archspec.catalog import IMAGEFOLDER_PREFIX, DatasetInfo, dataset_info
from archspec.data.download_progress import DownloadProgress
from archspec.data.seeding import derive_seed
from archspec.errors import ArchspecError

SPLITS = ("train", "test")
SYNTHETIC_SIZES = {"train": 512, "test": 128}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DOWNLOAD_TIMEOUT_S = 30


@dataclass
class ImageTensors:
    """One split of a dataset, decoded: `images` uint8 [N, C, H, W], `labels` int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------------------------
# Where files live and where they come from


@dataclass(frozen=True)
class Layout:
    """The files one dataset needs, relative to the data directory."""

    folder: str
    files: dict[str, tuple[str, ...]]  # split -> file names inside `folder`
    gz_ok: bool = False  # a file may also be present gzip-compressed, as name + ".gz"


@dataclass(frozen=True)
class Download:
    """One official file. `archive` files are tarballs that unpack to the layout's folder."""

    filename: str
    md5: str
    urls: tuple[str, ...]  # mirrors, tried in order
    archive: bool = False


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

LAYOUTS: dict[str, Layout] = {
    "cifar10": Layout("cifar-10-batches-py",
                      {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}),
    "cifar100": Layout("cifar-100-python", {"train": ("train",), "test": ("test",)}),
    "mnist": Layout("MNIST/raw", _MNIST_FILES, gz_ok=True),
    "fashion-mnist": Layout("FashionMNIST/raw", _MNIST_FILES, gz_ok=True),
    "svhn": Layout("svhn", {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)}),
}

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def _gz_downloads(mirrors: tuple[str, ...], md5s: dict[str, str]) -> tuple[Download, ...]:
    return tuple(Download(f"{name}.gz", md5, tuple(f"{m}{name}.gz" for m in mirrors)) for name, md5 in md5s.items())


# URLs and MD5 sums as torchvision lists them.
DOWNLOADS: dict[str, tuple[Download, ...]] = {
    "cifar10": (Download("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",), archive=True),),
    "cifar100": (Download("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",), archive=True),),
    "mnist": _gz_downloads(_MNIST_MIRRORS, {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion-mnist": _gz_downloads(_FASHION_MIRRORS, {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "svhn": (
        Download("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                 ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",)),
        Download("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3",
                 ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",)),
    ),
}


def default_data_dir() -> Path:
    """`$ARCHSPEC_DATA` if set, else `~/.cache/archspec/data`."""
    env = os.environ.get("ARCHSPEC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archspec" / "data"


# --------------------------------------------------------------------------------------------
# The entry point


def load_dataset(
    name: str,
    split: str,
    *,
    data_dir: Path | str | None = None,
    download: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> ImageTensors:
    """Decode one split of a dataset into uint8 tensors.

    `input_shape` and `num_classes` shape the `synthetic` dataset (and pick grey or colour decoding
    for `imagefolder:`); the real datasets ignore them (the loader checks the spec against the data).
    `seed` only affects `synthetic`.
    """
    if split not in SPLITS:
        raise ArchspecError(f'unknown split "{split}"; use train or test')
    if name.startswith(IMAGEFOLDER_PREFIX):
        return _load_imagefolder(name, split, input_shape)
    info = dataset_info(name)
    key = info.name
    if key == "synthetic":
        return _synthetic(info, split, input_shape, num_classes, seed)
    if key == "mnist-mini":
        return _mnist_mini(info, split)
    if key == "svhn":
        _require_scipy()
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    _ensure_local(key, split, root, download)
    folder = root / LAYOUTS[key].folder
    if key in ("cifar10", "cifar100"):
        images, labels = _read_cifar(folder, LAYOUTS[key].files[split], key)
    elif key in ("mnist", "fashion-mnist"):
        images, labels = _read_mnist(folder, split, key)
    else:
        images, labels = _read_svhn(folder / LAYOUTS[key].files[split][0])
    _check_labels(labels, info.num_classes, f"{folder} ({split})")
    return ImageTensors(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), info, info.class_names)


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ArchspecError(f"{source}: label {int(bad)} is outside 0..{num_classes - 1}")


# --------------------------------------------------------------------------------------------
# Finding, downloading and unpacking files


def _present(folder: Path, name: str, gz_ok: bool) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz") if gz_ok else (folder / name,):
        if candidate.is_file():
            return candidate
    return None


def _missing(key: str, split: str, root: Path) -> list[str]:
    layout = LAYOUTS[key]
    return [f for f in layout.files[split] if _present(root / layout.folder, f, layout.gz_ok) is None]


def _where_to_put(key: str, split: str, root: Path, missing: list[str]) -> str:
    layout = LAYOUTS[key]
    text = f"put {', '.join(missing)} in {root / layout.folder}"
    if layout.gz_ok:
        text += " (plain or .gz)"
    archive = next((d for d in DOWNLOADS[key] if d.archive), None)
    if archive:
        text += f", or the archive {archive.filename} in {root}"
    return text + "; or set ARCHSPEC_DATA to a folder that has them"


def _ensure_local(key: str, split: str, root: Path, download: bool) -> None:
    """Make the split's files exist under `root`: unpack a hand-placed archive, else download."""
    missing = _missing(key, split, root)
    if not missing:
        return
    archive = next((d for d in DOWNLOADS[key] if d.archive), None)
    if archive and (root / archive.filename).is_file():
        # Placed by hand: unpack without an MD5 check, since local copies may be re-encodings.
        _extract(root / archive.filename, root, LAYOUTS[key].folder)
    elif not download:
        raise ArchspecError(f"{key} {split} data not found: {_where_to_put(key, split, root, missing)}")
    else:
        for item in DOWNLOADS[key]:
            if item.archive or item.filename.removesuffix(".gz") in missing:
                dest = root / item.filename if item.archive else root / LAYOUTS[key].folder / item.filename
                _fetch(item, dest, key, split, root, missing)
                if item.archive:
                    _extract(dest, root, LAYOUTS[key].folder)
                    dest.unlink()
    still = _missing(key, split, root)
    if still:
        raise ArchspecError(f"{key} {split} data incomplete: {_where_to_put(key, split, root, still)}")


def _fetch(item: Download, dest: Path, key: str, split: str, root: Path, missing: list[str]) -> None:
    """Try each mirror; with no network, say exactly which files to place where."""
    failures = []
    for url in item.urls:
        try:
            _download(url, dest, item.md5)
            return
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
    raise ArchspecError(f"cannot download {item.filename} ({'; '.join(failures)}); without network, "
                        f"{_where_to_put(key, split, root, missing)}")


def _download(url: str, dest: Path, md5: str) -> None:
    """Stream `url` to a temp file next to `dest`, check its MD5, then rename it into place."""
    import hashlib

    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url} -> {dest}", file=sys.stderr)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            with DownloadProgress(dest.name, int(length) if length and length.isdigit() else None) as progress:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    progress.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ArchspecError(f"{url}: downloaded file has MD5 {digest.hexdigest()}, expected {md5} "
                                "(a broken transfer or a changed file); nothing was kept, try again")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Tar filter: refuse absolute paths, `..` and links (no dataset archive has them)."""
    name = member.name
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        raise ArchspecError(f'refusing to unpack "{name}": archive paths must stay inside the data folder')
    if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
        raise ArchspecError(f'refusing to unpack "{name}": only plain files and folders are allowed')
    return tarfile.data_filter(member, dest)


def _extract(archive: Path, root: Path, folder: str) -> None:
    """Unpack into a temp folder, then move the layout's files into place one by one (atomic renames)."""
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        try:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter=_safe_member)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise ArchspecError(f"{archive}: cannot unpack ({e})") from None
        source = tmp / folder
        if not source.is_dir():
            raise ArchspecError(f"{archive}: expected a {folder}/ folder inside the archive")
        dest = root / folder
        dest.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            os.replace(path, dest / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# CIFAR: python pickles, read with an unpickler that can build numpy arrays and nothing else


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a dataset pickle may name: numpy's array/scalar rebuilders.

    The functions are taken from numpy's own `__reduce__` so this works for numpy 1.x (`numpy.core`)
    and 2.x (`numpy._core`) alike without importing the deprecated module names.
    """
    sample = np.zeros(1, dtype=np.uint8)
    reconstruct = sample.__reduce__()[0]
    frombuffer = sample.__reduce_ex__(5)[0]
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Pickles can run arbitrary code on load; these files come from the internet, so refuse anything
    but numpy array reconstruction."""

    def __init__(self, file, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise ArchspecError(f'{self.source}: refusing to unpickle "{module}.{name}": a dataset file may '
                                "only contain numpy arrays (the file is corrupt or not what it claims)") from None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f, path).load()
    except ArchspecError:
        raise
    except Exception as e:  # a damaged pickle can fail in many ways (UnpicklingError, EOFError, ...)
        raise ArchspecError(f"{path}: not a readable python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ArchspecError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    # encoding="bytes" gives bytes keys for the official (python 2) files, str keys for python 3 copies.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


def _read_cifar(folder: Path, files: tuple[str, ...], key: str) -> tuple[np.ndarray, np.ndarray]:
    label_key = "labels" if key == "cifar10" else "fine_labels"
    images, labels = [], []
    for name in files:
        path = folder / name
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise ArchspecError(f'{path}: missing "data" or "{label_key}"; found keys {", ".join(map(str, batch))}')
        data = np.asarray(batch["data"])
        y = np.asarray(batch[label_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or y.shape != (data.shape[0],):
            raise ArchspecError(f"{path}: expected uint8 data of shape (N, 3072) and N labels, "
                                f"got {data.dtype} {data.shape} and {y.shape[0] if y.ndim else 0} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST: IDX files


def _read_bytes(path: Path) -> bytearray:
    """File contents (gunzipped for .gz), as a writable buffer so torch.from_numpy needs no copy."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return bytearray(f.read())
        return bytearray(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:
        raise ArchspecError(f"{path}: cannot read ({e})") from None


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes: 2 zero bytes, type 0x08, ndim, ndim big-endian uint32 dims, data."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ArchspecError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] == 0:
        raise ArchspecError(f"{path}: not an IDX file of unsigned bytes (magic {bytes(raw[:4]).hex()}, "
                            "expected 000008 then the number of dimensions)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ArchspecError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    body = len(raw) - header
    if body != expected:
        what = "truncated" if body < expected else "corrupt"
        raise ArchspecError(f"{path}: {what} IDX file: header says {'x'.join(map(str, dims))} "
                            f"({expected} bytes of data) but {body} bytes follow")
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def _read_mnist(folder: Path, split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    image_name, label_name = LAYOUTS[key].files[split]
    image_path = _present(folder, image_name, True)
    label_path = _present(folder, label_name, True)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ArchspecError(f"{image_path}: expected N images of HxW and N labels, "
                            f"got images {images.shape} and labels {labels.shape}")
    return images[:, None], labels


# --------------------------------------------------------------------------------------------
# SVHN: MATLAB files


def _require_scipy() -> None:
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        raise ArchspecError("reading SVHN needs scipy (its files are MATLAB .mat): pip install scipy") from None


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
        x, y = mat["X"], mat["y"]
    except Exception as e:  # scipy raises assorted errors for damaged files
        raise ArchspecError(f"{path}: not a readable SVHN .mat file ({type(e).__name__}: {e})") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ArchspecError(f"{path}: expected X of shape (32, 32, 3, N), got {x.shape}")
    labels = y.astype(np.int64).reshape(-1)
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8), labels


# --------------------------------------------------------------------------------------------
# mnist-mini: shipped inside the package


def _mnist_mini(info: DatasetInfo, split: str) -> ImageTensors:
    with resources.files("archspec.data").joinpath("mnist_mini.npz").open("rb") as f:
        with np.load(io.BytesIO(f.read()), allow_pickle=False) as z:
            images, labels = z[f"x_{split}"], z[f"y_{split}"]
    return ImageTensors(torch.from_numpy(np.ascontiguousarray(images[:, None])),
                        torch.from_numpy(labels.astype(np.int64)), info, info.class_names)


# --------------------------------------------------------------------------------------------
# synthetic: generated, learnable


def _synthetic(info: DatasetInfo, split: str, input_shape, num_classes, seed: int) -> ImageTensors:
    """Each class has its own colour and coarse pattern; samples add pixel noise.

    Why learnable: a smoke test must see accuracy rise above chance within a few steps, which pure
    noise never allows. Train and test share the class prototypes and differ in the noise.
    """
    c, h, w = (int(v) for v in (input_shape or info.input_shape))
    k = int(num_classes or info.num_classes)
    protos_rng = torch.Generator().manual_seed(derive_seed(seed, "synthetic", "prototypes"))
    colours = torch.rand(k, c, 1, 1, generator=protos_rng) * 0.6 + 0.2
    coarse = torch.rand(k, c, 4, 4, generator=protos_rng) - 0.5
    patterns = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    prototypes = colours + 0.4 * patterns

    n = SYNTHETIC_SIZES[split]
    rng = torch.Generator().manual_seed(derive_seed(seed, "synthetic", split))
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=rng)]
    noise = torch.randn(n, c, h, w, generator=rng) * 0.15
    images = (prototypes[labels] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    names = tuple(f"class{i}" for i in range(k))
    meta = dataclasses.replace(info, input_shape=(c, h, w), num_classes=k, class_names=names,
                               mean=(0.5,) * c, std=(0.5,) * c)
    return ImageTensors(images, labels, meta, names)


# --------------------------------------------------------------------------------------------
# imagefolder:PATH


def _imagefolder_root(name: str) -> Path:
    text = name[len(IMAGEFOLDER_PREFIX):] if name.startswith(IMAGEFOLDER_PREFIX) else name
    if not text:
        raise ArchspecError("imagefolder: needs a path, e.g. imagefolder:~/data/flowers")
    return Path(text).expanduser()


def _class_dirs(root: Path, split: str) -> list[Path]:
    folder = root / split
    if not folder.is_dir():
        raise ArchspecError(f"{folder}: not found; an imagefolder dataset needs {root}/train/<class>/*.png "
                            f"and {root}/test/<class>/*.png (also .jpg, .jpeg)")
    dirs = sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: d.name)
    if not dirs:
        raise ArchspecError(f"{folder}: no class folders inside (expected {folder}/<class>/*.png)")
    return dirs


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _decode(path: Path, mode) -> torch.Tensor:
    from torchvision.io import decode_image

    try:
        with warnings.catch_warnings():
            # torchvision 0.29 points to TorchCodec for decoding; decode_image still works and is what
            # the pinned stack ships, so the per-image warning would only be noise for users.
            warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
            return decode_image(str(path), mode=mode)
    except (RuntimeError, ValueError, OSError) as e:
        raise ArchspecError(f"{path}: cannot decode image ({e})") from None


def _imagefolder_mode(root: Path, input_shape):
    """Grey or colour decoding: what the spec asks for if it says 1 or 3 channels, else what the
    first training image is. Decoding every file in one mode keeps the channel count uniform."""
    from torchvision.io import ImageReadMode

    channels = int(input_shape[0]) if input_shape is not None and int(input_shape[0]) in (1, 3) else None
    if channels is None:
        first = next((f for d in _class_dirs(root, "train") for f in _image_files(d)), None)
        if first is None:
            raise ArchspecError(f"{root / 'train'}: no .png/.jpg/.jpeg images found")
        channels = 1 if _decode(first, ImageReadMode.UNCHANGED).shape[0] in (1, 2) else 3
    return (ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB), channels


def imagefolder_info(name: str, input_shape=None) -> DatasetInfo:
    """Metadata for `imagefolder:PATH` (classes from train/, shape from its first image), for the spec
    compiler to infer shapes. Decodes one image."""
    root = _imagefolder_root(name)
    mode, channels = _imagefolder_mode(root, input_shape)
    classes = _class_dirs(root, "train")
    first = next((f for d in classes for f in _image_files(d)), None)
    if first is None:
        raise ArchspecError(f"{root / 'train'}: no .png/.jpg/.jpeg images found")
    _, h, w = _decode(first, mode).shape
    names = tuple(d.name for d in classes)
    return DatasetInfo(f"{IMAGEFOLDER_PREFIX}{root}", (channels, int(h), int(w)), len(names), names,
                       (0.5,) * channels, (0.5,) * channels, f"images under {root}")


def _load_imagefolder(name: str, split: str, input_shape) -> ImageTensors:
    root = _imagefolder_root(name)
    mode, channels = _imagefolder_mode(root, input_shape)
    class_names = tuple(d.name for d in _class_dirs(root, "train"))
    files: list[tuple[Path, int]] = []
    for folder in _class_dirs(root, split):
        if folder.name not in class_names:
            raise ArchspecError(f'{folder}: class "{folder.name}" has no folder in {root / "train"}')
        files += [(f, class_names.index(folder.name)) for f in _image_files(folder)]
    if not files:
        raise ArchspecError(f"{root / split}: no .png/.jpg/.jpeg images found")
    first = _decode(files[0][0], mode)
    images = torch.empty((len(files), *first.shape), dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        image = first if i == 0 else _decode(path, mode)
        if image.shape != first.shape:
            raise ArchspecError(f"{path}: image is {'x'.join(map(str, image.shape))} but {files[0][0]} is "
                                f"{'x'.join(map(str, first.shape))}; all images must share one size (resize them first)")
        images[i] = image
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    info = DatasetInfo(f"{IMAGEFOLDER_PREFIX}{root}", (channels, *first.shape[1:]), len(class_names), class_names,
                       (0.5,) * channels, (0.5,) * channels, f"images under {root}")
    return ImageTensors(images, labels, info, class_names)
