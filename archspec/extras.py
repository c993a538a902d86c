"""Optional dependencies: import one, or say in one line which `pip install archspec[...]` brings it.

`archspec tune` needs Optuna, `--executor ray` needs Ray and `train --log mlflow` the MLflow client.
None is needed to specify, count, train or compare models, so they are extras (`archspec[tune]`,
`archspec[ray]`, `archspec[mlflow]`) rather than dependencies; a user who asks for them without having them gets an ArchspecError (exit code 2)
that names the extra, not an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from archspec.errors import ArchspecError

# module -> the extra of pyproject.toml that installs it
EXTRAS = {"optuna": "tune", "ray": "ray", "mlflow": "mlflow"}


def require(module: str, *, feature: str) -> ModuleType:
    """`import module`, or raise an ArchspecError saying that `feature` needs its extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module.split(".")[0])
        install = f'pip install "archspec[{extra}]"' if extra else f"pip install {module}"
        raise ArchspecError(f"{feature} needs the {module.split('.')[0]} package, which is not installed",
                            hint=f"install it with: {install}") from None
