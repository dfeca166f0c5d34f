"""Input-weight alignment: how alike two updates of one layer are, seen from its inputs.

The score of two updates ``A``, ``B`` of one layer is the cosine similarity of their
input-side Gram matrices, ``<A^T A, B^T B>_F / (||A^T A||_F ||B^T B||_F)`` (for a
convolution, of ``C^T C`` with ``C`` the convolution operator on one layer input).

* :mod:`~alignlib.alignment.score`: the score of two updates: :func:`alignment_score`
  (exact), :func:`gram` (the Gram matrix itself), :func:`probe_alignment_score` (the
  authors' Monte-Carlo estimate) and :func:`shuffled_update` (their null control);
* :mod:`~alignlib.alignment.conv_gram`: why the exact score of a convolution costs no
  more than the kernel's taps;
* :mod:`~alignlib.alignment.layers`: the score of every layer of a network during
  training, against the paper's prediction of its weight change.
"""

from alignlib.alignment.conv_gram import conv_tap_counts
from alignlib.alignment.layers import (
    LayerGeometry,
    exact_alignment,
    exact_alignments,
    gram_inner_products,
    layer_alignment,
    layer_geometry,
    random_update_score,
    shuffle_permutations,
)
from alignlib.alignment.score import alignment_score, gram, probe_alignment_score, shuffled_update

__all__ = [
    "alignment_score", "gram", "probe_alignment_score", "shuffled_update",
    "conv_tap_counts", "LayerGeometry", "layer_geometry", "gram_inner_products",
    "exact_alignment", "exact_alignments", "layer_alignment", "shuffle_permutations",
    "random_update_score",
]
