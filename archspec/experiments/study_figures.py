"""Optuna's own figures of a tune study, as static PNGs: for the study folder and for `archspec report`.

Three pictures answer the questions one asks of a search: did it get better over the trials
(optimisation history), which parameters mattered (parameter importance, Optuna's fANOVA), and
what did pruning cut (every trial's per-epoch values). Optuna draws them with matplotlib
(`optuna.visualization.matplotlib`); we only render them to PNG bytes and write them atomically.
A figure that cannot be drawn (importance needs two finished trials) is left out, never an error:
figures are a convenience, the trials and their run directories are the result.
The figure names are those `tune` writes into the study folder (always PNG there); `report`
embeds the same figures in its own format (PNG or SVG).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from archspec.experiments.runs import Run

FIGURES = {  # file name -> (title, name of the optuna.visualization.matplotlib function)
    "history.png": ("optimisation history", "plot_optimization_history"),
    "importance.png": ("parameter importance", "plot_param_importances"),
    "intermediate.png": ("per-epoch values of every trial (pruned trials stop early)", "plot_intermediate_values"),
}


def open_study(folder: str | Path):
    """The study in `folder`/study.db, or None when there is none (or Optuna is not installed)."""
    from archspec.experiments.tune import STUDY_FILE, STUDY_NAME, storage_url

    if not (Path(folder) / STUDY_FILE).is_file():
        return None
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY_NAME, storage=storage_url(Path(folder)))


def study_figures(study, fmt: str = "png", *, dpi: int | None = None) -> dict[str, bytes]:
    """File name -> the bytes (in `fmt`: png, svg or pdf) of each figure that can be drawn for `study`."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    from archspec.figures import DEFAULT_DPI, figure_bytes

    drawn: dict[str, bytes] = {}
    for name, (_, function) in FIGURES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's "experimental feature" warnings
            try:
                axes = getattr(optuna_plots, function)(study)
            except Exception:  # noqa: BLE001 - e.g. importance before two trials finished
                continue
        figure = axes.figure
        figure.set_size_inches(8, 4.5)
        figure.tight_layout()
        drawn[name] = figure_bytes(figure, fmt, dpi=dpi or DEFAULT_DPI)
        plt.close(figure)
    return drawn


def write_figures(folder: str | Path) -> list[Path]:
    """Draw the study of `folder` into `folder`/history.png etc.; the paths written."""
    from archspec.atomic_write import atomic_write_bytes

    study = open_study(folder)
    if study is None:
        return []
    return [atomic_write_bytes(Path(folder) / name, data) for name, data in study_figures(study).items()]


def studies_of(runs: list[Run]) -> list[Path]:
    """The study folders (holding a study.db) that some of `runs` are trials of, in order."""
    from archspec.experiments.tune import STUDY_FILE

    return list(dict.fromkeys(run.path.parent for run in runs if (run.path.parent / STUDY_FILE).is_file()))


def trial_counts(study) -> str:
    """ "12 trials (9 complete, 3 pruned)" """
    states = [t.state.name.lower() for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    return f"{len(states)} trials ({counts})"
