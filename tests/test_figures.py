"""The figures' readability helpers (lqs_core.workflow.figures): seed counts, accuracy axes that show where the
settings differ, readable log ticks, integer histogram bins, labels without overlaps, Pareto fronts through
non-dominated points only, the comparison figure's new methods, and the gradual quantization figure."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lqs_core.workflow import aggregate  # noqa: E402
from lqs_core.workflow.figures import comparison, curves, gradual, histograms, pareto, style  # noqa: E402


@pytest.fixture(autouse=True)
def _style():
    style.set_style()
    yield
    plt.close("all")


def test_seeds_text():
    assert style.seeds_text([1]) == "1 seed"
    assert style.seeds_text([3, 3]) == "3 seeds"
    assert style.seeds_text([2, 3, 2]) == "2–3 seeds"
    assert style.seeds_text([1, float("nan"), 2]) == "1–2 seeds"


def test_spread_text_says_one_seed_without_sd():
    assert style.spread_text([1, 1]) == "1 seed"
    assert style.spread_text([3, 3]) == "mean ± sd over 3 seeds"
    assert style.spread_text([1, 2]) == "mean ± sd over 1–2 seeds"


def test_accuracy_limits_cut_outliers_but_keep_the_band():
    values = [95.4, 96.1, 94.0, 91.4, 51.1, 63.9]
    low, high = style.accuracy_limits(values, reference=95.4, margin=10.0)
    assert 90.0 < low < 91.4 and 96.1 < high < 97.0
    assert list(style.clip_low(values, low)) == [95.4, 96.1, 94.0, 91.4, low, low]
    low, _ = style.accuracy_limits([95.0, 93.0], reference=95.4)  # nothing far below: no cut
    assert low < 93.0


def test_integer_bins_hold_whole_integers():
    edges, width = histograms.integer_bins(-5, 5)
    assert width == 1 and list(edges) == [v - 0.5 for v in range(-5, 7)]
    for lo, hi in ((-88, 92), (-3, 300), (0, 1000), (-1000, -700)):
        edges, width = histograms.integer_bins(lo, hi, max_bins=120)
        assert width == int(width) and width > 1 and len(edges) - 1 <= 120 + 1
        assert np.allclose(np.diff(edges), width) and np.allclose(edges % 1, 0.5)
        assert edges[0] <= lo - 0.5 and edges[-1] >= hi + 0.5
        counts, _ = np.histogram(np.arange(lo, hi + 1), edges)  # every integer once: no striping inside
        assert set(counts[1:-1]) == {width}


def test_histogram_figure_uses_integer_bins():
    fig = histograms.histogram_figure({"k": np.arange(-90, 91), "b": np.array([0, 1, 1, 3])}, "t")
    assert "bins of 2" in fig.axes[0].get_xlabel() and fig.axes[1].get_xlabel() == "integer value $P_q$"


def test_log_ticks_give_several_plain_ticks():
    for lo, hi in ((0.06, 0.2), (0.2, 2.0), (4, 20000), (0.7, 2.6), (1.0, 1.2)):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [lo, hi])
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        style.log_ticks(ax, "y")
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
        assert len(ticks) >= 2, (lo, hi, ticks)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert all("10^" not in t or t.startswith("$") for t in labels) and len(labels) >= 2
        plt.close(fig)


def test_place_labels_do_not_overlap():
    fig, ax = plt.subplots(figsize=(3, 3))
    xs = [1.0, 1.01, 1.02, 1.0, 2.0]
    ys = [1.0, 1.0, 1.01, 1.02, 2.0]
    ax.plot(xs, ys, "o")
    ax.set_xlim(0, 3)
    ax.set_ylim(0, 3)
    fig.tight_layout()
    texts = style.place_labels(ax, [(x, y, f"label {i}", "k") for i, (x, y) in enumerate(zip(xs, ys))])
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in texts]
    assert len(boxes) == 5
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (i, j)


def _results():
    rows = [{"run_id": f"b{s}", "kind": "baseline", "dataset": "digits", "family": "float", "method": "float",
             "seed": s, "val_accuracy": 0.954, "float32_bytes": 40000} for s in (42, 43)]
    for seed, noise in ((42, 0.0), (43, 0.004)):
        for param, acc, uniq in ((0.0, 0.96, 4000), (1e-10, 0.95, 40), (1e-9, 0.955, 60), (1e-8, 0.40, 8)):
            rows.append({"run_id": f"n{param}-{seed}", "kind": "run", "dataset": "digits", "family": "nested",
                         "method": "nested", "granularity": "rowwise", "mode": "qat", "seed": seed, "param": param,
                         "variant": None, "val_accuracy": acc + noise, "unique_integers": uniq, "int_range": uniq,
                         "packed_bytes": 1000 + uniq, "entropy_bytes": 800 + uniq, "mean_bits_fixed": 4.0, "entropy_bits_per_weight": 3.0,
                         "huffman_bytes": 900, "zip_bytes": 900, "float32_bytes": 40000, "learning_rate": 0.01})
    for method, param, acc in (("hgq2", 1e-6, 0.95), ("keras_quantize", 8.0, 0.953), ("keras_quantize", 4.0, 0.51),
                               ("ptq", 2.0, 0.3)):
        for lr in ((0.01, 0.001) if method == "hgq2" else (0.01,)):
            rows.append({"run_id": f"{method}{param}{lr}", "kind": "run", "dataset": "digits", "family": method,
                         "method": method, "granularity": "weightwise" if method == "hgq2" else "outputwise",
                         "mode": "qat" if method == "hgq2" else None, "seed": 42, "param": param,
                         "variant": None if lr == 0.01 else "lr0.001", "learning_rate": lr,
                         "val_accuracy": acc - (0.1 if lr == 0.001 else 0.0), "packed_bytes": 1500 * param,
                         "entropy_bytes": 1200 * param,
                         "mean_bits_fixed": 3.0, "entropy_bits_per_weight": 2.0, "huffman_bytes": 900,
                         "zip_bytes": 900, "unique_integers": 10, "float32_bytes": 40000})
    return pd.DataFrame(rows)


def test_comparison_figure_leaves_a_long_collapsed_sweep_unlabelled():
    """Many collapsed settings of the thesis' schemes below the band: drawn, not labelled (labels would pile up on
    the edge); the comparators' are still labelled and the title gives the count."""
    results = _results()
    extra = []
    for i in range(comparison.MAX_EDGE_LABELS + 1):
        extra.append({"run_id": f"m{i}", "kind": "run", "dataset": "digits", "family": "maxbin", "method": "maxbin",
                      "granularity": "scalar", "mode": "qat", "seed": 42, "param": 10.0 ** (-12 + i), "variant": None,
                      "val_accuracy": 0.2 + 0.01 * i, "unique_integers": 4, "packed_bytes": 900,
                      "entropy_bytes": 700, "mean_bits_fixed": 2.0, "entropy_bits_per_weight": 1.0,
                      "huffman_bytes": 600, "zip_bytes": 600, "float32_bytes": 40000, "learning_rate": 0.01})
    fig = comparison.comparison_figure(pd.concat([results, pd.DataFrame(extra)], ignore_index=True), "digits")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert not any(t.startswith("γ") for t in texts) and not any("40.2%" in t for t in texts)
    assert "int4 51.0%" in texts and "2b 30.0%" in texts
    assert f"the {comparison.MAX_EDGE_LABELS + 2} settings" in fig._suptitle.get_text()
    plt.close(fig)


def test_comparison_figure_handles_new_methods_and_outliers(tmp_path):
    results = _results()
    settings = aggregate.comparison_settings(results, "digits")
    assert comparison.point_labels(settings[settings["method"] != "float"]) == [
        "λ0", "λ1e-10", "λ1e-9", "λ1e-8", "2b", "β1e-6", "int4", "int8"]
    fig = comparison.comparison_figure(results, "digits")
    axes = fig.axes
    assert len(axes) == 3 and axes[0].get_ylabel() == style.ACCURACY_LABEL
    low, high = axes[0].get_ylim()
    assert 90 < low < 95 and high > 96  # the band, in %
    texts = [t.get_text() for t in axes[0].texts]
    assert "β1e-6" in texts and "int8" in texts
    assert "int4 51.0%" in texts and "2b 30.0%" in texts and "λ1e-8 40.2%" in texts  # on the lower edge
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["float baseline", "nested (λ)", "PTQ min-max", "HGQ2", "Keras quantize"]
    assert "1–2 seeds" in fig._suptitle.get_text() and "seed(s)" not in fig._suptitle.get_text()
    a = style.savefig(fig, tmp_path / "a")
    plt.close(fig)
    b = style.savefig(comparison.comparison_figure(results, "digits"), tmp_path / "b")
    assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]


def test_comparison_front_is_a_staircase_through_non_dominated_points():
    fig = comparison.comparison_figure(_results(), "digits")
    ax = fig.axes[0]
    fronts = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert fronts
    for line in fronts:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert (np.diff(x) > 0).all() and (np.diff(y) >= 0).all()  # smaller to larger, never less accurate


def test_pareto_figure_front_and_sweep_path():
    results = _results()
    variant = results[results["method"] == "nested"].assign(variant="from5", val_accuracy=0.1, run_id="x")
    fig = pareto.pareto_figure(pd.concat([results, variant]), "digits", "nested")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "" and fig.axes[1].get_xlabel() == style.ACCURACY_LABEL
    fronts = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-pre"]
    assert len(fronts) == 1
    y = np.asarray(fronts[0].get_ydata(), float)
    # no point is dominated here: the front holds 1e-8 (8 integers), 1e-10 (40), 1e-9 (60), 0 (4000), in that order
    assert list(y) == sorted(y)
    sweep = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(sweep) == 1 and len(sweep[0].get_xdata()) == 4  # the variant runs are not averaged in
    texts = {t.get_text() for t in ax.texts}
    assert {"0", "1e-10", "1e-9"} <= texts and any(t.startswith("1e-8 (40.2%") for t in texts)
    assert "2 seeds" in fig._suptitle.get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "QAT (from scratch)" and "Pareto front (non-dominated points)" in legend
    assert legend[-1] == "float baseline"


def test_pareto_front_leaves_dominated_points_out():
    rows = [{"run_id": f"r{p}", "kind": "run", "dataset": "digits", "family": "nested", "method": "nested",
             "granularity": "rowwise", "mode": "qat", "seed": 42, "param": p, "variant": None, "val_accuracy": a,
             "unique_integers": u, "int_range": u}
            for p, a, u in ((0.0, 0.96, 1000), (1e-10, 0.95, 50), (1e-9, 0.94, 80), (1e-8, 0.93, 10))]
    fig = pareto.pareto_figure(pd.DataFrame(rows), "digits", "nested")
    front = [line for line in fig.axes[0].get_lines() if line.get_drawstyle() == "steps-pre"][0]
    assert 80 not in set(np.asarray(front.get_ydata(), float))  # λ=1e-9: fewer accurate and more integers


def _gradual_results(with_gradual=True, with_ptq=True):
    rows = [{"run_id": "b42", "kind": "baseline", "dataset": "mnist", "family": "float", "method": "float",
             "seed": 42, "val_accuracy": 0.97}]
    for seed in (42, 43):
        for param in (1e-10, 1e-9):
            for k in ((0, 5, 10) if with_gradual else (0,)):
                rows.append({"run_id": f"g{param}-{k}-{seed}", "kind": "run", "dataset": "mnist", "family": "nested",
                             "method": "nested", "granularity": "rowwise", "mode": "qat", "seed": seed,
                             "param": param, "variant": f"from{k}" if k else None, "scale_from_epoch": k,
                             "val_accuracy": 0.9 + 0.005 * k - (0.05 if param == 1e-9 else 0) + 0.001 * seed,
                             "unique_integers": 100 - 5 * k})
            rows.append({"run_id": f"lr{param}-{seed}", "kind": "run", "dataset": "mnist", "family": "nested",
                         "method": "nested", "granularity": "rowwise", "mode": "qat", "seed": seed, "param": param,
                         "variant": "lr0.001", "scale_from_epoch": 0, "val_accuracy": 0.5, "unique_integers": 7})
            if with_ptq:
                rows.append({"run_id": f"p{param}-{seed}", "kind": "run", "dataset": "mnist", "family": "nested",
                             "method": "nested", "granularity": "rowwise", "mode": "ptq", "seed": seed,
                             "param": param, "variant": None, "scale_from_epoch": 0, "val_accuracy": 0.93,
                             "unique_integers": 30})
    rows.append({"run_id": "other", "kind": "run", "dataset": "mnist", "family": "nested", "method": "nested",
                 "granularity": "rowwise", "mode": "qat", "seed": 42, "param": 1e-8, "variant": None,
                 "scale_from_epoch": 0, "val_accuracy": 0.3, "unique_integers": 3})  # no gradual runs: left out
    return pd.DataFrame(rows)


def test_gradual_settings_and_figure(tmp_path):
    results = _gradual_results()
    assert gradual.gradual_datasets(results) == ["mnist"]
    assert gradual.gradual_datasets(_gradual_results(with_gradual=False)) == []
    agg = gradual.gradual_settings(results, "mnist")
    qat = agg[agg["mode"] == "qat"]
    assert sorted(set(qat["param"])) == [1e-10, 1e-9] and sorted(set(qat["start_epoch"])) == [0, 5, 10]
    assert (qat["n_seeds"] == 2).all() and set(agg.loc[agg["mode"] == "ptq", "start_epoch"]) == {0}
    row = qat[(qat["param"] == 1e-10) & (qat["start_epoch"] == 5)].iloc[0]
    assert row["val_accuracy_mean"] == pytest.approx(0.9 + 0.025 + 0.0425)  # the lr0.001 runs are not k = 0
    assert row["unique_integers_mean"] == 75
    fig = gradual.gradual_figure(results, "mnist")
    acc, uniq = fig.axes[:2]
    assert acc.get_ylabel() == "final validation accuracy [%]" and uniq.get_yscale() == "log"
    lines = [line for line in acc.get_lines() if line.get_linestyle() == "-"]  # not the caps, not the references
    assert len(lines) == 2 and list(lines[0].get_xdata()) == [0, 5, 10]
    assert max(lines[0].get_ydata()) > 90  # in %
    refs = [line for line in acc.get_lines() if line.get_linestyle() in (":", "--")]
    assert len(refs) == 3  # PTQ of each λ, the float baseline
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["λ = 1e-10", "λ = 1e-9", "PTQ mode, same λ (from the float baseline)", "float baseline"]
    assert "2 seeds" in fig._suptitle.get_text()
    a = style.savefig(fig, tmp_path / "a")
    b = style.savefig(gradual.gradual_figure(results, "mnist"), tmp_path / "b")
    assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]


def test_gradual_k_from_the_variant_and_without_ptq():
    results = _gradual_results(with_ptq=False).drop(columns="scale_from_epoch")
    agg = gradual.gradual_settings(results, "mnist")
    assert sorted(set(agg["start_epoch"])) == [0, 5, 10] and set(agg["mode"]) == {"qat"}
    fig = gradual.gradual_figure(results, "mnist")
    assert "PTQ mode, same λ (from the float baseline)" not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_gradual_figure_needs_gradual_runs():
    with pytest.raises(ValueError, match="mnist"):
        gradual.gradual_figure(_gradual_results(with_gradual=False), "mnist")


def _histories(seeds=(42, 43), epochs=5):
    """Per-epoch histories: a float baseline and nested runs (QAT and PTQ) at four λ, the last collapsing."""
    rows = []
    for seed in seeds:
        for e in range(1, epochs + 1):
            rows.append({"run_id": f"b{seed}", "kind": "baseline", "dataset": "mnist", "family": "float",
                         "granularity": None, "mode": None, "seed": seed, "param": float("nan"), "variant": None,
                         "epoch": e, "val_accuracy": 0.9 + 0.01 * e, "val_loss": 0.5 / e})
            for mode in ("qat", "ptq"):
                for param, final in ((0.0, 0.952), (1e-10, 0.948), (1e-9, 0.935), (1e-8, 0.40)):
                    rows.append({"run_id": f"{mode}{param}{seed}", "kind": "run", "dataset": "mnist",
                                 "family": "nested", "granularity": "rowwise", "mode": mode, "seed": seed,
                                 "param": param, "variant": None, "epoch": e,
                                 "val_accuracy": final - 0.002 * (epochs - e) + 0.001 * (seed - 42),
                                 "val_loss": 0.3 + 0.01 * e})
    return pd.DataFrame(rows)


def test_curves_figure_zoom_row_and_distinct_lines():
    fig = curves.curves_figure(_histories(), "mnist", "nested", "qat")
    full, zoom, loss = fig.axes[:3]
    assert zoom.get_ylabel() == "zoom [%]" and loss.get_yscale() == "log"
    low, high = zoom.get_ylim()
    assert 92.0 < low < 93.5 and 95.0 < high < 96.0  # the band within 3 points of the baseline's 95 %, not 40 %
    assert full.get_ylim()[0] < 45  # the full row still shows the collapse
    lines = [line for line in full.get_lines() if line.get_label().startswith("λ")]
    assert len({line.get_color() for line in lines}) == len(lines) == 4  # no near-identical shades
    assert len({line.get_marker() for line in lines}) == 4
    assert "mean ± sd over 2 seeds" in fig._suptitle.get_text()


def test_curves_figure_draws_ptq_after_the_float_run():
    fig = curves.curves_figure(_histories(), "mnist", "nested", "ptq")
    ax = fig.axes[0]
    ptq = [line for line in ax.get_lines() if line.get_label().startswith("λ")]
    base = [line for line in ax.get_lines() if line.get_label() == "float baseline"]
    assert all(list(line.get_xdata()) == [6, 7, 8, 9, 10] for line in ptq)  # epochs 1–5 of PTQ after the float 1–5
    assert list(base[0].get_xdata()) == [1, 2, 3, 4, 5]
    assert "float baseline 1–5, then PTQ from it: 6–10" in fig.axes[-1].get_xlabel()


def test_curves_figure_of_one_seed_gives_no_sd():
    fig = curves.curves_figure(_histories(seeds=(42,)), "mnist", "nested", "qat")
    title = fig._suptitle.get_text()
    assert "1 seed" in title and "sd over" not in title


def test_comparison_figure_zooms_into_a_crowded_band():
    """Many settings near the float baseline: a fourth, wide panel zooms into them, every one labelled, and its
    window is outlined in the first panel."""
    rows = [{"run_id": "b", "kind": "baseline", "dataset": "digits", "family": "float", "method": "float",
             "seed": 42, "val_accuracy": 0.96, "float32_bytes": 400000}]
    for i in range(12):
        for method in ("maxbin", "fixed"):
            rows.append({"run_id": f"{method}{i}", "kind": "run", "dataset": "digits", "family": method,
                         "method": method, "granularity": "rowwise", "mode": "qat", "seed": 42,
                         "param": 10.0 ** (-12 + i) if method == "maxbin" else 2 + i, "variant": None,
                         "val_accuracy": 0.955 - 0.0005 * i, "unique_integers": 10, "packed_bytes": 30000 + 2000 * i,
                         "entropy_bytes": 20000 + 1500 * i + (500 if method == "fixed" else 0),
                         "mean_bits_fixed": 4.0, "entropy_bits_per_weight": 2.0, "huffman_bytes": 1,
                         "zip_bytes": 1, "float32_bytes": 400000, "learning_rate": 0.01})
    fig = comparison.comparison_figure(pd.DataFrame(rows), "digits")
    assert len(fig.axes) == 4
    zoom = fig.axes[3]
    low, high = zoom.get_ylim()
    assert 94.5 < low < 95.0 and 95.5 < high < 96.5
    texts = {t.get_text() for t in zoom.texts}
    x_low, x_high = zoom.get_xlim()
    inside = [r for r in rows[1:] if x_low <= r["entropy_bytes"] / 1000 <= x_high]
    assert len(texts) == len(inside) >= 16 and {"γ1e-12", "2b"} <= texts  # every setting inside labelled
    assert any(type(p).__name__ == "Rectangle" and p.get_linestyle() == "--" for p in fig.axes[0].patches)
    assert "bottom: zoom" in fig._suptitle.get_text() and "1 seed" in fig._suptitle.get_text()
    assert comparison.zoom_window(comparison.comparison_settings(pd.DataFrame(rows[:8]), "digits")
                                  .assign(acc=lambda d: 100 * d["val_accuracy_mean"],
                                          acc_sd=lambda d: 100 * d["val_accuracy_std"]), 96.0) is None  # few: none
