"""The low-data chapter: why its MLP scales the biases, that its learning-rate grid reaches
the measured stable bound, its gpu profile on fake CIFAR-10 files, and the claims it
records when it runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from fakedata import fake_cifar10
from helpers import REPO, figure_names

import alignbook as B
from alignlib.experiments import feedforward as ff
from alignlib import claims as C

NOTEBOOK = REPO / "book" / "low_data.ipynb"
CLAIM_IDS = {"align-margin-grows-as-data-shrink", "align-beats-fa-dfa-every-size",
             "align-margin-grows-as-data-shrink-common-lr", "align-beats-fa-dfa-every-size-common-lr"}


def chapter_parameters(profile: str) -> dict:
    """The chapter's parameters in ``profile``: notebook defaults with the profile's overrides."""
    profiles = yaml.safe_load((REPO / "book" / "profiles.yml").read_text())["profiles"]
    defaults = {name: p.default for name, p in B.notebook_parameters(NOTEBOOK).items()}
    return {**defaults, **(profiles[profile]["chapters"].get("low_data") or {})}


def test_bias_multiplier_lowers_the_top_ntk_eigenvalue_and_the_grid_reaches_the_bound():
    p = chapter_parameters("cpu")
    assert p["dataset"] == "digits" and p["arch"] == "mlp" and 0 < p["bias_multiplier"] < 1
    data = ff.load_benchmark_data(p["dataset"])
    network = dict(arch=p["arch"], width=p["width"], depth=p["depth"], batch_size=100)
    plain = ff.stable_lr_at_init(data, bias_multiplier=1.0, **network)
    scaled = ff.stable_lr_at_init(data, bias_multiplier=p["bias_multiplier"], **network)
    # with biases at full weight their constant kernel sets the top eigenvalue, and the
    # stable bound falls below the authors' largest ConvNet learning rate (5)
    assert plain["ntk_top_eigenvalue"] > 5 * scaled["ntk_top_eigenvalue"]
    assert plain["lr_bound"] < 5.0 < scaled["lr_bound"]
    grid = ff.lr_grid(scaled["lr_bound"], p["lr_fractions"])
    assert max(grid) == pytest.approx(scaled["lr_bound"], rel=0.05)
    assert min(grid) < 0.5 * scaled["lr_bound"]  # and spans below it
    # every profile keeps a grid that reaches its bound and a convergence tolerance
    for profile in ("tiny", "cpu", "gpu"):
        q = chapter_parameters(profile)
        assert max(q["lr_fractions"]) <= 1.0 and q["convergence_tolerance"] > 0
    assert chapter_parameters("gpu")["bias_multiplier"] == 1.0  # batch norm removes the bias mode


def fake_cifar_loader(tmp_path, p):
    sums = fake_cifar10(tmp_path / "cifar", 40, random_labels=True)  # 200 training images in 5 batches

    def load(n=None):
        return ff.load_benchmark_data(p["dataset"], n_train=n, cache_dir=tmp_path / "cifar",
                                         checksums=sums, holdout=50, cap_heldout=p["cap_heldout"])
    return load


@pytest.mark.ci
@pytest.mark.slow
def test_low_data_gpu_profile_path_on_fake_cifar10_files(tmp_path):
    p = chapter_parameters("gpu")
    assert p["dataset"] == "cifar10" and p["arch"] == "convnet" and len(p["strides"]) == 7
    load = fake_cifar_loader(tmp_path, p)
    sizes = [n for n in p["sizes"] if n <= load().n_train]
    assert sizes == [45, 150]  # the chapter's cap: sizes above the 150 available are dropped
    table = ff.low_data_sweep(load, sizes[:1], width=2, arch=p["arch"], strides=p["strides"],
                                 bias_multiplier=p["bias_multiplier"], rules=["backprop"], lrs=[1.0],
                                 seeds=[0], epochs=1, min_steps=2)
    assert set(table.batch_size) == {45} and set(table.dataset) == {"cifar10"}
    assert table.epoch.max() == 2  # one step per epoch at 45 images: min_steps gives two epochs
    assert np.isfinite(ff.final_values(table, "heldout_loss").value).all()


@pytest.mark.ci
@pytest.mark.slow
def test_stable_bound_of_the_gpu_profile_convnet(tmp_path):
    p = chapter_parameters("gpu")
    full = fake_cifar_loader(tmp_path, p)()
    measured = ff.stable_lr_at_init(full, arch=p["arch"], width=2, strides=p["strides"],
                                       bias_multiplier=p["bias_multiplier"],
                                       batch_size=ff.authors_batch_size(45))
    assert measured["ntk_top_eigenvalue"] > 0 and np.isfinite(measured["lr_bound"])


@pytest.mark.slow
def test_low_data_chapter_records_its_claims_in_the_tiny_profile(tiny_book):
    executed = tiny_book.chapter("low_data")
    values = executed.glued()
    assert values["profile"] == "tiny"
    assert {"low_data", "low_data_curves", "low_data_feedback", "low_data_common", "plan_table",
            "acc_table", "margin_table", "convergence_table"} <= set(values)

    p = chapter_parameters("tiny")
    folder = executed.folder
    params = json.loads((folder / "provenance.json").read_text())["params"]
    for name in ("bias_multiplier", "lr_fractions", "convergence_tolerance", "min_steps"):
        assert params[name] == p[name], name
    # the learning rates are fractions of the smallest measured bound, shown on the page
    stability = pd.read_csv(folder / "stability.csv")
    assert list(stability.n_train) == p["sizes"] and (stability.ntk_top_eigenvalue > 0).all()
    bound = stability.lr_bound.min()
    assert float(values["bound"]) == pytest.approx(bound, rel=1e-2)
    runs = pd.read_csv(folder / "runs.csv")
    assert sorted(runs.lr.unique()) == ff.lr_grid(bound, p["lr_fractions"])
    # one convergence row per run
    conv = pd.read_csv(folder / "convergence.csv")
    assert len(conv) == len(p["rules"]) * len(p["sizes"]) * len(p["lr_fractions"]) * len(p["seeds"])
    assert int(values["n_runs"]) == len(conv) and int(values["n_converged"]) == int(conv.converged.sum())

    found = executed.claims()
    assert set(found) == CLAIM_IDS
    names = figure_names("low_data")
    for c in found.values():
        key = c.claim.replace("-", "_")
        assert c.verdict in C.VERDICTS
        assert values[f"verdict_{key}"] == c.verdict and values[f"measured_{key}"] == c.measured
        assert c.figure in names, (c.claim, c.figure, names)
        assert "nan" not in c.measured.lower(), c
        if c.value is not None and c.low is not None:
            assert c.low <= c.value <= c.high, c
        if "had not converged" in c.measured:  # then no check can make the claim false
            assert c.verdict in (C.HOLDS, C.INCONCLUSIVE), c
