"""The complete MNIST profile (config/mnist.yaml, issue #12): what it expands to, the sweeps it added (other
learning rates, gradual quantization, HGQ2, Keras' quantize) and how the comparison keeps each setting's better
learning rate."""

import copy

import pandas as pd
import pytest

from lqs_core.workflow import aggregate, config as wconfig, sweep, table
from lqs_core.workflow.config import ConfigError


@pytest.fixture(scope="module")
def mnist():
    return wconfig.load_config("config/mnist.yaml")


def test_mnist_profile_covers_the_thesis_grid(mnist):
    runs = sweep.expand_runs(mnist)
    counts = sweep.count_runs(mnist)
    plain = [r for r in runs if r.family == "nested" and r.variant is None]
    # λ ∈ {0, 1e-12, ..., 1e-8} × 3 granularities × QAT/PTQ × 3 seeds
    assert len(plain) == 6 * 3 * 2 * 3
    assert {r.param for r in plain} == {0.0, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8}
    assert {(r.granularity, r.mode) for r in plain} == {(g, m) for g in ("rowwise", "columnwise", "scalar")
                                                       for m in ("qat", "ptq")}
    # each loss term: γ 1e-12 ... 1e-4 (every decade) × 3 granularities × 2 seeds
    for term in ("maxbin", "inverse", "difference"):
        assert counts[term] == 9 * 3 * 2
    assert wconfig.output_name(mnist) == "mnist-jax"
    ptq = [r for r in runs if r.mode == "ptq"]
    assert all(r.baseline and r.config["float_weights"].startswith("results/mnist-jax/baselines/") for r in ptq)


def test_learning_rate_and_gradual_variants(mnist):
    runs = sweep.runs_by_id(sweep.expand_runs(mnist))
    r = runs["mnist-nested-rowwise-lam1e-10-qat-s42-lr0.001"]
    assert r.variant == "lr0.001" and r.config["learning_rate"] == 1e-3 and r.family == "nested"
    g = runs["mnist-nested-rowwise-lam1e-09-from10-qat-s43"]
    assert g.variant == "from10" and g.config["scale_from_epoch"] == 10 and g.param == 1e-9
    assert "mnist-nested-rowwise-lam1e-09-from10-qat-s44" not in runs  # gradual seeds: 42, 43
    for rid in ("mnist-lsq-outputwise-b4-qat-s42", "mnist-lsq-outputwise-b4-qat-s42-lr0.001",
                "mnist-hgq2-beta1e-06-qat-s44-lr0.001", "mnist-keras_quantize-b4-s43", "mnist-ptq_eval-scalar-b3-s42"):
        assert rid in runs, rid
    assert runs["mnist-hgq2-beta1e-06-qat-s44"].granularity == "weightwise"
    assert runs["mnist-keras_quantize-b4-s43"].baseline == "mnist-float-s43"
    # the untrained comparators are not repeated per learning rate
    assert not [i for i in runs if i.startswith(("mnist-ptq_eval", "mnist-keras_quantize")) and "lr" in i]


@pytest.mark.parametrize("path, value, message", [
    (("gradual", "start_epochs"), [0], "start_epochs"),
    (("gradual", "start_epochs"), [25], "scale_from_epoch"),
    (("gradual", "thresholds"), [0], "thresholds"),
    (("comparators", "learning_rates"), [-1e-3], "learning_rates"),
    (("comparators", "hgq2", "betas"), [], "betas"),
    (("comparators", "keras_quantize", "bits"), [3], "bits"),
    (("loss_terms", "seeds"), [7], "seeds"),
])
def test_bad_new_keys_are_named(mnist, path, value, message):
    cfg = copy.deepcopy(mnist)
    node = cfg["datasets"]["mnist"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        sweep.expand_runs(cfg)


def _results(rows):
    base = {"kind": "run", "dataset": "mnist", "scheme": "nested", "granularity": "outputwise", "mode": "qat",
            "packed_bytes": 1000.0, "entropy_bytes": 800.0, "mean_bits_fixed": 4.0, "entropy_bits_per_weight": 3.0,
            "huffman_bytes": 900.0, "zip_bytes": 950.0, "unique_integers": 15, "float32_bytes": 4000.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_comparison_keeps_the_better_learning_rate():
    rows = []
    for seed, (low, high) in zip((42, 43), ((0.96, 0.90), (0.95, 0.92))):
        rows.append(dict(family="lsq", method="lsq", param=4, variant=None, seed=seed, learning_rate=1e-4,
                         val_accuracy=low))
        rows.append(dict(family="lsq", method="lsq", param=4, variant="lr0.001", seed=seed, learning_rate=1e-3,
                         val_accuracy=high))
        rows.append(dict(family="fixed", method="fixed", param=4, variant=None, seed=seed, learning_rate=1e-4,
                         val_accuracy=0.90))
        rows.append(dict(family="fixed", method="fixed", param=4, variant="lr0.001", seed=seed, learning_rate=1e-3,
                         val_accuracy=0.93))
    agg = aggregate.comparison_settings(_results(rows), "mnist")
    lsq = agg[agg["method"] == "lsq"]
    fixed = agg[agg["method"] == "fixed"]
    assert len(lsq) == 1 and lsq["learning_rate"].iloc[0] == 1e-4
    assert lsq["val_accuracy_mean"].iloc[0] == pytest.approx(0.955) and lsq["n_seeds"].iloc[0] == 2
    assert len(fixed) == 1 and fixed["learning_rate"].iloc[0] == 1e-3
    both = aggregate.comparison_settings(_results(rows), "mnist", best_lr=False)
    assert len(both[both["method"] == "lsq"]) == 2
    shown = aggregate.pareto_points_display(aggregate.pareto_points(_results(rows), "mnist"))
    assert "lr" in shown.columns


def test_thesis_figures_leave_out_variants():
    rows = [dict(family="nested", method="nested", param=1e-10, variant=v, seed=42, learning_rate=1e-4,
                 val_accuracy=0.9) for v in (None, "lr0.001", "from5")]
    kept = table.thesis_runs(_results(rows))
    assert len(kept) == 1 and kept["variant"].isna().all()
