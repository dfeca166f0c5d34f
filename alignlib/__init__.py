"""alignlib: wide networks trained without backprop, the input-weight alignment perspective.

Companion library to Boopathy & Fiete, "How to Train Your Wide Neural Network Without
Backprop: An Input-Weight Alignment Perspective" (ICML 2022, arXiv 2106.08453).
"""

from alignlib._sites import Conv, Dense, Pair, Site, batch_norm
from alignlib.models import MLP, RNN, ConvNet
from alignlib.rules import (RULES, LearningRule, align_ada, align_prop, align_zero, backprop,
                            dfa, fa, get_rule, mse, readout, sequence_mse, sites)
from alignlib.training import TrainResult, accuracy, make_optimizer, train

__version__ = "0.1.0"

__all__ = [
    "MLP", "ConvNet", "RNN", "Dense", "Conv", "Site", "Pair", "batch_norm",
    "LearningRule", "RULES", "get_rule", "backprop", "align_zero", "align_ada", "align_prop",
    "fa", "dfa", "readout", "sites", "mse", "sequence_mse",
    "train", "TrainResult", "accuracy", "make_optimizer",
]
