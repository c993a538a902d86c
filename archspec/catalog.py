"""The dataset catalog: what each dataset name means (shape, classes, normalisation). No torch.

Shared by the spec language (``dataset: cifar10`` implies ``input: [3, 32, 32]`` and
``classes: 10``, and `archspec validate` must not import torch), recipes (which check the name)
and `archspec.data` (which loads the images), so none of them reaches into another for these
facts. The one fact not known from the name alone, an image folder's shape and classes, is read
from disk by `archspec.data` when `describe` is asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from archspec.errors import ArchspecError, did_you_mean


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str = ""


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_DIGITS = tuple(str(i) for i in range(10))
_FASHION = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
# CIFAR-100 fine labels in label order (the official `meta` file lists them alphabetically).
_CIFAR100_CLASSES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split())

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10, _CIFAR10_CLASSES,
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "CIFAR-10, 50k/10k colour 32x32"),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100, _CIFAR100_CLASSES,
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR-100, 50k/10k colour 32x32"),
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, _DIGITS, (0.1307,), (0.3081,), "MNIST digits, 60k/10k grey 28x28"),
    "mnist-mini": DatasetInfo("mnist-mini", (1, 28, 28), 10, _DIGITS, (0.1307,), (0.3081,),
                              "6,000/1,000 MNIST digits shipped inside archspec (works offline)"),
    "fashion-mnist": DatasetInfo("fashion-mnist", (1, 28, 28), 10, _FASHION, (0.2860,), (0.3530,),
                                 "Fashion-MNIST, 60k/10k grey 28x28"),
    "svhn": DatasetInfo("svhn", (3, 32, 32), 10, _DIGITS, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                        "SVHN house numbers, 73k/26k colour 32x32"),
    "synthetic": DatasetInfo("synthetic", (3, 32, 32), 10, tuple(f"class{i}" for i in range(10)),
                             (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "random tensors of the spec's shape (smoke runs)"),
}


IMAGEFOLDER_PREFIX = "imagefolder:"


def dataset_info(name: str) -> DatasetInfo:
    """Metadata for a dataset name. ``imagefolder:PATH`` has no fixed metadata and is not handled here."""
    key = name.lower()
    if key not in DATASETS:
        raise ArchspecError(f'unknown dataset "{name}"{did_you_mean(key, DATASETS)}; '
                            f"known: {', '.join(DATASETS)}, {IMAGEFOLDER_PREFIX}PATH")
    return DATASETS[key]


def describe(name: str) -> DatasetInfo:
    """Metadata for any dataset a spec may name, ``imagefolder:PATH`` included.

    An image folder's shape and classes are facts about files on disk, not about the name: they
    are read by `archspec.data.datasets.imagefolder_info` (which decodes one image, so imports
    torch). That import happens here, on first use, so named datasets stay torch-free.
    """
    if name.startswith(IMAGEFOLDER_PREFIX):
        from archspec.data.datasets import imagefolder_info

        return imagefolder_info(name)
    return dataset_info(name)
