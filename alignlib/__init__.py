"""alignlib: wide networks trained without backprop, the input-weight alignment perspective.

Companion library to Boopathy & Fiete, "How to Train Your Wide Neural Network Without
Backprop: An Input-Weight Alignment Perspective" (ICML 2022, arXiv 2106.08453).

This package is the science, the bottom of three layers: models in the NTK
parameterisation (:mod:`~alignlib.models`, built from weighted layers in
:mod:`~alignlib.layers`), the learning rules (:mod:`~alignlib.rules`), training
(:mod:`~alignlib.training`), the alignment score (:mod:`~alignlib.alignment`), the
infinite-width kernels (:mod:`~alignlib.kernels`), the stable learning rate
(:mod:`~alignlib.stability`), convergence (:mod:`~alignlib.convergence`), data
(:mod:`~alignlib.data`), statistics over seeds (:mod:`~alignlib.statistics`), argument
checks (:mod:`~alignlib.validation`), the authors' own Add-task code with its quirks
(:mod:`~alignlib.authors_add_task`) and the scorecard's vocabulary
(:mod:`~alignlib.claims`). Above it, :mod:`alignlib.experiments` holds one module per
chapter of the book, and the separate package ``alignbook`` the tooling (results store,
sweeps, build pipeline, command line). Neither is imported from here.
"""

from alignlib import kernels
from alignlib.layers import Conv, Dense, CurrentAndInitial, WeightedLayer, batch_norm
from alignlib.alignment import alignment_score, probe_alignment_score
from alignlib.convergence import has_converged
from alignlib.data import Dataset, add_task, load_dataset, load_digits
from alignlib.models import MLP, RNN, ConvNet, model_factory
from alignlib.rules import (
                            RULES,
                            LearningRule,
                            align_ada,
                            align_prop,
                            align_zero,
                            backprop,
                            dfa,
                            fa,
                            get_rule,
                            mse,
                            readout,
                            sequence_mse,
                            weighted_layers,
)
from alignlib.stability import stable_learning_rate
from alignlib.training import TrainResult, accuracy, make_optimizer, train

__version__ = "0.1.0"

__all__ = [
    "MLP", "ConvNet", "RNN", "model_factory", "Dense", "Conv", "WeightedLayer", "CurrentAndInitial", "batch_norm",
    "LearningRule", "RULES", "get_rule", "backprop", "align_zero", "align_ada", "align_prop",
    "fa", "dfa", "readout", "weighted_layers", "mse", "sequence_mse",
    "train", "TrainResult", "accuracy", "make_optimizer",
    "alignment_score", "probe_alignment_score", "kernels", "stable_learning_rate",
    "has_converged", "Dataset", "load_digits", "add_task", "load_dataset",
]
