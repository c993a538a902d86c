"""Optuna's own figures of a tune study, as static PNGs: for the study folder and for `archspec report`.

Three pictures answer the questions one asks of a search: did it get better over the trials
(optimisation history), which parameters mattered (parameter importance, Optuna's fANOVA), and
what did pruning cut (every trial's per-epoch values). Optuna draws them with matplotlib
(`optuna.visualization.matplotlib`); we only render them to PNG bytes and write them atomically.
A figure that cannot be drawn (importance needs two finished trials) is left out, never an error:
figures are a convenience, the trials and their run directories are the result.
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


def figure_pngs(study) -> dict[str, bytes]:
    """File name -> PNG bytes of each figure that can be drawn for `study`."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    from archspec.experiments.figures import figure_png

    pngs: dict[str, bytes] = {}
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
        pngs[name] = figure_png(figure)
        plt.close(figure)
    return pngs


def write_figures(folder: str | Path) -> list[Path]:
    """Draw the study of `folder` into `folder`/history.png etc.; the paths written."""
    from archspec.experiments.figures import write_png

    study = open_study(folder)
    if study is None:
        return []
    return [write_png(png, Path(folder) / name) for name, png in figure_pngs(study).items()]


def study_sections(runs: list[Run]) -> list[str]:
    """HTML sections for `archspec report`: one per study folder that holds some of `runs`."""
    import base64
    import html

    from archspec.experiments.tune import STUDY_FILE

    folders = list(dict.fromkeys(run.path.parent for run in runs if (run.path.parent / STUDY_FILE).is_file()))
    parts = []
    for folder in folders:
        parts.append(f"<h2>Search: {html.escape(str(folder))}</h2>")
        study = open_study(folder)
        if study is None:
            parts.append('<p class="note">this folder holds an Optuna study; install archspec[tune] to draw it</p>')
            continue
        states = [t.state.name.lower() for t in study.trials]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        parts.append(f'<p class="meta">{len(states)} trials ({html.escape(counts)})</p>')
        for name, png in figure_pngs(study).items():
            data = base64.b64encode(png).decode("ascii")
            title = FIGURES[name][0]
            parts.append(f"<h3>{html.escape(title)}</h3>"
                         f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    return parts
