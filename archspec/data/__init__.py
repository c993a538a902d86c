"""Datasets, loaders and augmentation.

Nothing is imported here on purpose: `archspec validate` needs only `archspec.catalog` (pure data),
and importing torch/torchvision for it would make the CLI slow. Import the submodules you need:
`archspec.data.datasets.load_dataset`, `archspec.data.loader.make_loaders`,
`archspec.data.augment.build_augment`.
"""
