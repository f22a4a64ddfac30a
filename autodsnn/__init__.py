"""AutoDSNN: design and optimize Deep Shift Neural Networks for accuracy and energy.

The rooms, and which way imports go (``tests/test_architecture.py`` enforces it; the base
modules ``errors`` and ``resources`` may be imported by all):

    shift     the shift-layer library                      imports nothing else of autodsnn
    zoo       models and data sets by name                 -> shift
    trial     one configuration x budget -> result         -> zoo, shift
    store     a run directory and its SQLite trial table   -> trial
    search    experiment, space, SMAC ask/tell on Dask     -> store, trial, zoo
    analysis  fronts, plots, report, summary, retrain      -> store, trial, zoo, shift
    cli       the `autodsnn` command                       -> all
"""
from ._deprecated import install as _install_moved_modules

__version__ = "0.1.0"
_install_moved_modules()
