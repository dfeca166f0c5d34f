"""The low-data chapter: the authors' batches and epochs per training-set size, its analysis
and claims on hand-made sweep tables (margins that grow, shrink, or rest on runs that had
not converged), why its MLP scales the biases, that its learning-rate grid reaches the
measured stable bound, its gpu profile on fake CIFAR-10 files, and the claims it records
when it runs."""

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
from alignlib.experiments import low_data as ld
from alignlib import claims as C
from alignlib.data import load_digits

NOTEBOOK = REPO / "book" / "low_data.ipynb"
CLAIM_IDS = {"align-margin-grows-as-data-shrink", "align-beats-fa-dfa-every-size",
             "align-margin-grows-as-data-shrink-common-lr", "align-beats-fa-dfa-every-size-common-lr"}


def chapter_parameters(profile: str) -> dict:
    """The chapter's parameters in ``profile``: notebook defaults with the profile's overrides."""
    profiles = yaml.safe_load((REPO / "book" / "profiles.yml").read_text())["profiles"]
    defaults = {name: p.default for name, p in B.notebook_parameters(NOTEBOOK).items()}
    return {**defaults, **(profiles[profile]["chapters"].get("low_data") or {})}


# --------------------------------------------------------------------------- batches and epochs


def test_batch_sizes_and_epochs_follow_the_authors():
    assert [ld.authors_batch_size(n) for n in (45, 150, 450, 1500, 4500, 15000, 45000)] == \
        [45, 50, 50, 100, 100, 100, 100]
    assert [ld.epochs_for_size(n, 20, 150) for n in (45, 150, 450, 1500)] == [150, 50, 20, 20]
    assert ld.epochs_for_size(45, 150, 0) == 150  # the authors: same epochs for every size
    plan = ld.training_plan(pd.DataFrame({"n_train": [45, 150], "batch_size": [45, 50]}), 20, 150)
    assert plan.epochs.tolist() == [150, 50] and plan.steps.tolist() == [150, 150]


def test_sweep_checks_the_sizes_it_loads():
    with pytest.raises(ValueError, match="returned 100 training examples, expected 45"):
        ld.sweep(lambda n: load_digits(n_train=100), [45], width=8, arch="mlp",
                 rules=["backprop"], lrs=[1.0], seeds=[0], epochs=1)


def test_sweep_uses_the_authors_batches():
    def load(n):
        return ff.load_benchmark_data("digits", n_train=n)

    table = ld.sweep(load, [45, 150], width=8, arch="mlp", rules=["backprop"], lrs=[5.0],
                     seeds=[0, 1], epochs=1, min_steps=4)
    by_n = table.groupby("n_train").agg(batch=("batch_size", "first"), epochs=("epoch", "max"))
    assert by_n.to_dict("index") == {45: {"batch": 45, "epochs": 4}, 150: {"batch": 50, "epochs": 2}}
    margins = ff.gap_to_reference(pd.concat([table, table.assign(rule="align_ada")]), "backprop",
                                  ["n_train"])
    assert np.allclose(margins.gap, 0)  # a rule compared with an identical copy of itself


# --------------------------------------------------------------------------- analysis and claims

SMALL, LARGE = 45, 1500


def fake_runs(accuracy, *, lrs=(1.0,), epochs=20, still_learning=(), diverged=()):
    """A sweep table without training: ``accuracy[(rule, n_train)]`` lists each seed's
    held-out accuracy (the same at every epoch and learning rate). The training loss halves
    over the first epochs and then stays put (converged), or keeps falling for the (rule,
    n_train) in ``still_learning``; the (rule, n_train, lr, seed) in ``diverged`` diverged."""
    rows = []
    for (rule, n), values in accuracy.items():
        for lr in lrs:
            for seed, acc in enumerate(values):
                bad = (rule, n, lr, seed) in diverged
                for epoch in range(epochs + 1):
                    key = dict(rule=rule, n_train=n, width=16, lr=lr, seed=seed, epoch=epoch, diverged=bad)
                    rows.append({**key, "metric": "heldout_accuracy", "value": acc})
                    if epoch:
                        falling = (rule, n) in still_learning
                        loss = 1.0 - (0.04 if falling else 0.1) * min(epoch, 5 + 15 * falling)
                        rows.append({**key, "metric": "train_loss", "value": loss})
    return pd.DataFrame(rows)


def accuracies(align_small, align_large, rules=("backprop", "align_ada", "fa")):
    """Backprop at 0.50 / 0.90 with 45 / 1,500 images; the Align rule ``align_small`` /
    ``align_large`` above it (points); FA 10 points below the Align rule; seed noise."""
    noise = {SMALL: np.array([-0.01, 0.0, 0.012]), LARGE: np.array([0.004, -0.006, 0.0])}
    base = {SMALL: 0.50, LARGE: 0.90}
    margin = {SMALL: align_small / 100, LARGE: align_large / 100}
    out = {}
    for n in (SMALL, LARGE):
        out["backprop", n] = list(base[n] + noise[n])
        out["align_ada", n] = list(base[n] + margin[n] + 0.5 * noise[n][::-1])
        out["fa", n] = list(base[n] + margin[n] - 0.10 + noise[n])
    return {k: v for k, v in out.items() if k[0] in rules}


def verdicts(runs, rules=("backprop", "align_ada", "fa")):
    a = ld.analyse(runs, 0.01, rules)
    return a, {c.claim: c.verdict for c in ld.claims(a, profile="tiny")}


@pytest.fixture(scope="module")
def growing():
    """The analysis and verdicts of a sweep whose Align margin grows as the data shrink."""
    return verdicts(fake_runs(accuracies(8, -1)))


def test_a_margin_that_grows_as_the_data_shrink_holds(growing):
    a, found = growing
    assert a.sizes == (SMALL, LARGE) and a.align == ["align_ada"] and a.feedback == ["fa"]
    margin = a.margins[a.margins.rule == "align_ada"].set_index("n_train").gap
    assert margin[SMALL] == pytest.approx(0.08, abs=0.01) and margin[LARGE] == pytest.approx(-0.01, abs=0.01)
    assert a.growth.change.iloc[0] == pytest.approx(0.09, abs=0.01)
    assert a.best.settled.all() and (a.best.late_change == 0).all()
    assert found == {"align-margin-grows-as-data-shrink": C.HOLDS,
                     "align-beats-fa-dfa-every-size": C.HOLDS,
                     "align-margin-grows-as-data-shrink-common-lr": C.HOLDS,
                     "align-beats-fa-dfa-every-size-common-lr": C.HOLDS}
    claim = ld.margin_grows_claim(a, profile="tiny")
    assert claim.value == pytest.approx(100 * a.growth.change.iloc[0])
    assert claim.low < claim.value < claim.high and claim.figure == "fig-low-data"
    assert "Align-ada: margin +8.0" in claim.measured and "with 1,500" in claim.measured


def test_a_margin_that_shrinks_does_not_hold():
    _, found = verdicts(fake_runs(accuracies(-1, 8)))
    assert found["align-margin-grows-as-data-shrink"] == C.DOES_NOT_HOLD
    assert found["align-beats-fa-dfa-every-size"] == C.HOLDS


def test_unconverged_runs_make_a_failing_claim_inconclusive():
    runs = fake_runs(accuracies(-1, 8), still_learning={("align_ada", SMALL)})
    a, found = verdicts(runs)
    assert not a.best.set_index(["rule", "n_train"]).settled["align_ada", SMALL]
    assert found["align-margin-grows-as-data-shrink"] == C.INCONCLUSIVE
    claim = ld.margin_grows_claim(a, profile="tiny")
    assert claim.measured.endswith("(some runs behind these numbers had not converged)")
    assert "*" in ld.accuracy_table(a)  # the table marks the point


def test_without_feedback_alignment_or_a_second_size_the_claims_are_not_tested():
    a, found = verdicts(fake_runs(accuracies(8, -1, rules=("backprop", "align_ada"))),
                        rules=("backprop", "align_ada"))
    assert found["align-beats-fa-dfa-every-size"] == C.NOT_TESTED
    assert found["align-margin-grows-as-data-shrink"] == C.HOLDS
    one_size = {k: v for k, v in accuracies(8, -1).items() if k[1] == SMALL}
    _, found = verdicts(fake_runs(one_size))
    assert found["align-margin-grows-as-data-shrink"] == C.NOT_TESTED


def test_the_common_learning_rate_is_the_largest_at_which_nothing_diverged():
    runs = fake_runs(accuracies(8, -1), lrs=(1.0, 2.0), diverged={("fa", SMALL, 2.0, 0)})
    a = ld.analyse(runs, 0.01, ("backprop", "align_ada", "fa"))
    assert a.common_lr == 1.0 and a.common_is_safe
    assert set(a.at_common.lr) == {1.0} and "diverged" in ld.common_lr_reason(a)
    # FA at 45 images competes only at the rate where no seed diverged
    assert a.best.set_index(["rule", "n_train"]).lr["fa", SMALL] == 1.0
    assert ld.runs_converged_table(a).splitlines()[0] == "| rule | lr 1 | lr 2 |"
    assert "(1 diverged)" in ld.runs_converged_table(a)
    fa_only = {k: v for k, v in accuracies(8, -1).items() if k == ("fa", SMALL)}
    everywhere = fake_runs(fa_only, lrs=(1.0, 2.0), diverged={("fa", SMALL, 1.0, 0), ("fa", SMALL, 2.0, 0)})
    a = ld.analyse(everywhere, 0.01)
    assert a.common_lr == 1.0 and not a.common_is_safe and a.margins.empty


def test_the_page_tables_name_rules_and_sizes(growing):
    a, _ = growing
    lines = ld.accuracy_table(a).splitlines()
    assert lines[0] == "| rule | 45 images | 1,500 images |"
    assert lines[2].startswith("| backprop | 0.501 [") and "(lr 1)" in lines[2]
    assert ld.margin_table(a).splitlines()[2].startswith("| Align-ada | +8.")
    assert ld.feedback_table(a).splitlines()[2].startswith("| Align-ada minus FA | +10.")
    assert set(ld.stored_tables(a)) == {"convergence", "best", "margins", "feedback_gaps", "common",
                                        "margins_common", "feedback_gaps_common"}


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
    table = ld.sweep(load, sizes[:1], width=2, arch=p["arch"], strides=p["strides"],
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
                                       batch_size=ld.authors_batch_size(45))
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
