"""Training-time augmentation: named presets, or an explicit list of torchvision.transforms.v2 steps.

A recipe says either `augment: flip_crop` (a preset) or an explicit list:

    augment: [{RandomCrop: {size: 32, padding: 4}}, RandomHorizontalFlip]

Steps run per sample on uint8 CHW tensors *before* normalisation. Some steps belong after it:
RandomErasing in the reports paints erased boxes with 0 in normalised units (the dataset mean), so
the `heavy` presets run it after normalisation, and in a list a bare `Normalize` marks the point
where normalisation happens (steps after it get the normalised float tensor). Normalisation itself
is configured by the recipe's `normalize:`, not here.

Besides v2's classes, a list may name archspec's own steps (`ARCHSPEC_STEPS`):
`AlternatingHorizontalFlip` (no arguments) is airbench's alternating flip, a fixed pseudo-random half
of the dataset (hashed with the recipe's seed) mirrored on even epochs and the other half on odd ones;
see `archspec.data.alternating_flip`.

torchvision is imported inside the functions so that reading the presets (for `--help`, validation)
stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archspec.errors import ArchspecError, did_you_mean

AUGMENT_PRESETS: dict[str, str] = {
    "none": "no augmentation",
    "flip_crop": "RandomCrop(pad 4) + RandomHorizontalFlip (the classic CIFAR recipe)",
    "rotate_flip_shift": "RandomRotation(15) + RandomHorizontalFlip + RandomAffine(translate 0.1)",
    "heavy": "RandomCrop(pad 4, reflect) + HFlip + Rotation(15) + Affine(translate 0.1, scale 0.9-1.1) "
             "+ ColorJitter(0.2, 0.2, 0.2, 0.1); RandomErasing(p 0.5) after normalisation",
    "heavy_no_flip": "heavy without the horizontal flip (for digits: a mirrored 2 is no longer a 2)",
    "resized_crop": "RandomResizedCrop(H) + RandomHorizontalFlip (ImageNet style)",
    "shift": "RandomAffine(translate 0.1), no flip (for digits)",
    "crop": "RandomCrop(pad 2 below 32 px, else 4), no flip (for digits)",
}

NORMALIZE_MARKER = "Normalize"

# archspec's own steps, usable in an explicit list: name -> what it does (they take no arguments).
ARCHSPEC_STEPS: dict[str, str] = {
    "AlternatingHorizontalFlip": "airbench's flip: a fixed random half of the images mirrored on even "
                                 "epochs, the other half on odd epochs (hashed with the recipe's seed)",
}


def _preset_steps(name: str, input_shape: Sequence[int]) -> tuple[list, list]:
    """(before-normalisation, after-normalisation) transforms of a preset."""
    from torchvision.transforms import v2

    channels, height, width = (int(v) for v in input_shape)
    size = (height, width)

    def heavy(flip: bool) -> tuple[list, list]:
        # Saturation and hue need colour; for grey images jitter brightness and contrast only.
        jitter = v2.ColorJitter(0.2, 0.2, 0.2, 0.1) if channels == 3 else v2.ColorJitter(0.2, 0.2)
        pre = [v2.RandomCrop(size, padding=4, padding_mode="reflect"),
               *([v2.RandomHorizontalFlip()] if flip else []),
               v2.RandomRotation(15),
               v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
               jitter]
        return pre, [v2.RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3))]

    if name == "none":
        return [], []
    if name == "flip_crop":
        return [v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()], []
    if name == "rotate_flip_shift":
        return [v2.RandomRotation(15), v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=0, translate=(0.1, 0.1))], []
    if name == "heavy":
        return heavy(flip=True)
    if name == "heavy_no_flip":
        return heavy(flip=False)
    if name == "resized_crop":
        return [v2.RandomResizedCrop(size), v2.RandomHorizontalFlip()], []
    if name == "shift":
        return [v2.RandomAffine(degrees=0, translate=(0.1, 0.1))], []
    if name == "crop":
        return [v2.RandomCrop(size, padding=2 if min(size) < 32 else 4)], []
    raise ArchspecError(f'unknown augment preset "{name}"{did_you_mean(name, AUGMENT_PRESETS)}; '
                        f"known: {', '.join(AUGMENT_PRESETS)}, or a list of torchvision.transforms.v2 steps",
                        path="augment")


def _archspec_step(name: str):
    """A new instance of archspec's own step `name` (a key of ARCHSPEC_STEPS)."""
    from archspec.data.alternating_flip import AlternatingHorizontalFlip

    return {"AlternatingHorizontalFlip": AlternatingHorizontalFlip}[name]()


def _v2_transform_names() -> list[str]:
    from torchvision.transforms import v2

    return [n for n in dir(v2) if not n.startswith("_") and isinstance(getattr(v2, n), type)
            and issubclass(getattr(v2, n), v2.Transform) and n != "Transform"]


def _parse_item(item: Any, index: int) -> tuple[str, list, dict]:
    """`Name`, `{Name: {k: v}}`, `{Name: [args]}`, `{Name: value}` or `{Name: null}` -> (name, args, kwargs)."""
    where = f"augment[{index}]"
    if isinstance(item, str):
        return item, [], {}
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, value),) = item.items()
        if not isinstance(name, str):
            raise ArchspecError(f"transform name must be a string, got {name!r}", path=where)
        if value is None:
            return name, [], {}
        if isinstance(value, Mapping):
            return name, [], {str(k): _tuples(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return name, [_tuples(v) for v in value], {}
        return name, [value], {}
    raise ArchspecError(f"write a step as a transform name or {{Name: {{argument: value}}}}, got {item!r}",
                        path=where)


def _tuples(value: Any) -> Any:
    """YAML gives lists; torchvision's argument checks and reprs read better with tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _list_steps(items: Sequence[Any]) -> tuple[list, list]:
    from torchvision.transforms import v2

    pre: list = []
    post: list = []
    target = pre
    for index, item in enumerate(items):
        name, args, kwargs = _parse_item(item, index)
        where = f"augment[{index}]"
        if name == NORMALIZE_MARKER:
            if args or kwargs:
                raise ArchspecError("in augment, a bare Normalize only marks where normalisation happens; "
                                    "set mean/std with the recipe's normalize: key", path=where)
            if target is post:
                raise ArchspecError("Normalize appears twice in augment", path=where)
            target = post
            continue
        if name in ARCHSPEC_STEPS:
            if args or kwargs:
                raise ArchspecError(f"{name} takes no arguments (the seed is the recipe's seed, the epoch "
                                    f"and dataset index are the sample's); write it as a bare name", path=where)
            target.append(_archspec_step(name))
            continue
        cls = getattr(v2, name, None)
        if not (isinstance(cls, type) and issubclass(cls, v2.Transform)) or name.startswith("_"):
            known = [*_v2_transform_names(), *ARCHSPEC_STEPS]
            raise ArchspecError(f'unknown transform "{name}"{did_you_mean(name, known)}; steps are class '
                                f"names from torchvision.transforms.v2, e.g. RandomCrop, or {', '.join(ARCHSPEC_STEPS)}",
                                path=where)
        try:
            target.append(cls(*args, **kwargs))
        except (TypeError, ValueError) as e:
            raise ArchspecError(f"{name}: {e}", path=where) from None
    return pre, post


def _is_none(augment: Any) -> bool:
    """True for the ways a recipe says "no augmentation": none, null, false or an empty list."""
    if augment is None or augment is False or augment == "none":
        return True
    return isinstance(augment, Sequence) and not isinstance(augment, str) and len(augment) == 0


def augment_steps(augment: Any, input_shape: Sequence[int]) -> tuple[list, list]:
    """The (pre-normalisation, post-normalisation) transform lists for a recipe's `augment` value."""
    if _is_none(augment):  # without importing torchvision (~2 s): most runs do not augment
        return [], []
    if isinstance(augment, str):
        return _preset_steps(augment, input_shape)
    if isinstance(augment, Sequence):
        return _list_steps(augment)
    raise ArchspecError(f"augment must be a preset name or a list of steps, got {augment!r}", path="augment")


def build_augment(augment: Any, input_shape: Sequence[int]):
    """`(pre_normalize, post_normalize)`, each a `v2.Compose` or None when empty.

    Both are tried once on a blank image of `input_shape`, so a step that cannot work on these images
    (a crop larger than the image, hue on grey images) fails here with a clear message rather than
    later inside a DataLoader worker; a pipeline that changes the image size is refused too, since the
    model was built for `input_shape`.
    """
    pre, post = augment_steps(augment, input_shape)
    if not pre and not post:
        return None, None
    import torch
    from torchvision.transforms import v2

    pre_c = v2.Compose(pre) if pre else None
    post_c = v2.Compose(post) if post else None
    shape = tuple(int(v) for v in input_shape)
    with torch.random.fork_rng(devices=[]):  # the dry run must not move the training RNG
        for stage, compose, blank in ((" (before normalisation)", pre_c, torch.zeros(shape, dtype=torch.uint8)),
                                      (" (after normalisation)", post_c, torch.zeros(shape))):
            if compose is None:
                continue
            try:
                out = compose(blank)
            except Exception as e:  # torchvision raises assorted errors for impossible settings
                raise ArchspecError(f"augment{stage} fails on a {'x'.join(map(str, shape))} image: {e}",
                                    path="augment") from None
            if tuple(out.shape) != shape:
                raise ArchspecError(f"augment{stage} turns {'x'.join(map(str, shape))} images into "
                                    f"{'x'.join(map(str, out.shape))}; the model expects "
                                    f"{'x'.join(map(str, shape))}", path="augment")
    return pre_c, post_c


def describe_augment(augment: Any) -> str:
    """One line for logs and run summaries, e.g. `flip_crop (RandomCrop(pad 4) + ...)`."""
    if augment is None or augment is False or augment == "none":
        return "none"
    if isinstance(augment, str):
        if augment not in AUGMENT_PRESETS:
            raise ArchspecError(f'unknown augment preset "{augment}"{did_you_mean(augment, AUGMENT_PRESETS)}',
                                path="augment")
        return f"{augment} ({AUGMENT_PRESETS[augment]})"
    parts = []
    for index, item in enumerate(augment):
        name, args, kwargs = _parse_item(item, index)
        inner = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        parts.append(f"{name}({inner})" if inner else name)
    return ", ".join(parts) if parts else "none"
