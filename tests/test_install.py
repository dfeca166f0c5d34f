"""Installing and running where readers are: the ``cpu_only`` decorator. Nothing here
needs a GPU."""

from __future__ import annotations

import jax
import pytest
from helpers import cpu_only


def test_cpu_only_skips_on_other_backends(monkeypatch):
    calls = []

    @cpu_only
    def probe(x):
        calls.append(x)

    assert [m.name for m in probe.pytestmark] == ["cpu_only"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(pytest.skip.Exception, match="JAX's backend is gpu"):
        probe(1)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    probe(2)
    assert calls == [2]
