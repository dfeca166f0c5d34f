"""The RNN as a Python loop over time (no scan), from the model's own weights: the
independent reference the recurrent tests compare the scanned model and the rules with."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def unrolled(model, x, perturb=None):
    """Returns (outputs (B, T, 1), hidden states [h_1..h_T], inputs of the recurrence
    [h_0..h_(T-1)], pre-activations [z_1..z_T]). ``perturb[t]`` is added to z_t, so the
    vjp with respect to ``perturb`` gives the per-step sensitivities dLoss/dz_t.
    """
    s_in, s_rec, s_out, s_h0 = model.input, model.recurrent, model.readout, model.initial_state
    ones = jnp.ones((x.shape[0], 1), x.dtype)
    h = s_h0.linear(s_h0.weight, ones)
    hs, prev, pre = [], [], []
    for t in range(x.shape[1]):
        prev.append(h)
        z = s_in.linear(s_in.weight, x[:, t]) + s_in.bias + s_rec.linear(s_rec.weight, h)
        if perturb is not None:
            z = z + perturb[t]
        pre.append(z)
        h = jax.nn.relu(z)
        hs.append(h)
    out = s_out.linear(s_out.weight, jnp.stack(hs, 1)) + s_out.bias
    return out, hs, prev, pre
