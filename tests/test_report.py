"""lqs_core.report: placeholders, the thesis-vs-ours tables on hand-made results, and RESULTS.md being exactly what
the stored quick_cpu results render to."""

import math
from pathlib import Path

import pandas as pd
import pytest

from lqs_core import report
from lqs_core.workflow import config as wfconfig
from lqs_core.workflow import sweep

REPO = Path(__file__).resolve().parent.parent


def test_render_fills_placeholders_and_names_unknown_ones():
    assert report.render("a {{x}} b {{ y }}\n", {"x": "1", "y": "two\n"}) == "a 1 b two\n"
    with pytest.raises(report.ReportError, match=r"\['nope'\].*available: \['x'\]"):
        report.render("{{x}} {{nope}}", {"x": "1"})


def _row(**kw):
    base = dict(kind="run", dataset="cifar10", family="nested", method="nested", granularity="channelwise",
                mode="qat", seed=42, param=0.0, variant=None, val_accuracy=0.5, unique_integers=10, int_min=-3,
                int_max=4, zip_bytes=1000.0, float_zip_bytes=4000.0, packed_bytes=900.0, huffman_bytes=800.0,
                float32_bytes=4400.0, mean_bits_fixed=3.0, entropy_bits_per_weight=2.0, train_seconds=100.0,
                n_train=1000, epochs=2, integers=None)
    base.update(kw)
    return base


def test_cifar_table_puts_thesis_drop_beside_ours():
    rows = [_row(kind="baseline", family="float", method="float", granularity=None, mode=None, param=float("nan"),
                 val_accuracy=0.60),
            _row(param=1e-10, val_accuracy=0.55), _row(param=1e-8, val_accuracy=0.40, seed=42),
            _row(param=1e-8, val_accuracy=0.30, seed=43)]
    table = report.cifar_nested_table(pd.DataFrame(rows)).set_index("λ")
    assert table.loc["1e-10", "thesis drop (points)"] == "2"          # 85 -> 83 %
    assert table.loc["1e-8", "thesis drop (points)"] == "16–25"       # 85 -> 60..69 %
    assert table.loc["1e-10", "ours drop (points)"] == "5.0"
    assert table.loc["1e-8", "ours drop (points)"] == "25.0"          # mean of 40 and 30 %
    assert table.loc["1e-8", "ours val acc %"] == f"35.00 ± {100 * math.sqrt(0.005):.2f}"
    assert table.loc["1e-8", "ours unique, epoch 1 → last"] == "10 / 10"


def test_sizes_table_factors_against_our_float_zip():
    rows = [_row(kind="baseline", family="float", method="float", granularity=None, mode=None, param=float("nan"),
                 float_zip_bytes=1.02 * 2**20, float32_bytes=1.2e6),
            _row(param=1e-11, zip_bytes=0.17 * 2**20, float_zip_bytes=1.02 * 2**20)]
    table = report.sizes_table(pd.DataFrame(rows), "cifar10", "channelwise")
    assert list(table["thesis zip MB (×)"]) == ["1.02 (1.0×)", "0.16 (6.4×)"]
    assert list(table["ours zip MiB (×)"]) == ["1.020 (1.0×)", "0.170 (6.0×)"]


def test_timing_table_estimates_profiles_from_the_measured_speed():
    rows = [_row(train_seconds=100.0, n_train=1000, epochs=2), _row(train_seconds=300.0, n_train=1000, epochs=2),
            _row(family="ptq", method="ptq", train_seconds=0.0)]
    profiles = {name: wfconfig.load_config(REPO / "config" / f"{name}.yaml") for name in ("quick", "thesis")}
    table = report.timing_table(pd.DataFrame(rows), profiles).iloc[0]
    assert table["trained runs"] == 2 and table["ms per image-epoch (median)"] == "100.000"
    per_image_epoch = 0.1  # median of 100 s and 300 s over 2000 image-epochs
    thesis_runs = [r for r in sweep.expand_runs(profiles["thesis"]) if r.dataset == "cifar10" and r.family != "ptq"]
    assert table["thesis: trained runs"] == len(thesis_runs)
    days = len(thesis_runs) * 50000 * 100 * per_image_epoch / 86400  # all images, 100 epochs each
    assert table["thesis at this speed (1 CPU thread)"] == f"{days:.0f} days"
    quick_runs = [r for r in sweep.expand_runs(profiles["quick"]) if r.dataset == "cifar10" and r.family != "ptq"]
    assert report.profile_image_epochs(profiles["quick"])["cifar10"] == (len(quick_runs), len(quick_runs) * 20000 * 10)


def test_history_ranges_and_trends(tmp_path):
    (tmp_path / "h.csv").write_text("epoch,val_accuracy,unique_integers\n1,0.5,90\n2,0.7,40\n3,0.6,30\n")
    rows = pd.DataFrame([_row(history="h.csv"), _row(history="h.csv", seed=43)])
    assert report.last_epochs_range(str(tmp_path), rows, n=2) == "60.00–70.00"
    assert report._unique_trend(str(tmp_path), rows.iloc[0]) == "90 → 30"
    assert report._unique_trend(None, rows.iloc[0]) == "10"


def test_write_report_needs_a_report_section():
    with pytest.raises(report.ReportError, match="no 'report' section"):
        report.write_report({"name": "demo"})


@pytest.mark.parametrize("key,value,expected", [
    ("output", "/tmp/RESULTS.md", "report.output: '/tmp/RESULTS.md' is an absolute path"),
    ("output", "../RESULTS.md", "report.output: '../RESULTS.md' leaves the working directory"),
    ("template", "../../etc/passwd", "report.template: '../../etc/passwd' leaves the repository"),
])
def test_write_report_stays_inside_its_folders(tmp_path, key, value, expected):
    config = {"name": "quick_cpu", "report": {"template": "docs/RESULTS.template.md", "output": "RESULTS.md"}}
    config["report"][key] = value
    with pytest.raises(report.ReportError, match="allowed: a relative path") as info:
        report.write_report(config, root=str(tmp_path), repo=str(REPO))
    assert expected in str(info.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not (REPO / "results" / "quick_cpu" / "results.csv").exists(), reason="no quick_cpu results")
def test_results_md_is_rendered_from_the_stored_results(tmp_path):
    """RESULTS.md in the repository is byte for byte what `make figures CONFIG=config/quick_cpu.yaml` writes."""
    config = wfconfig.load_config(REPO / "config" / "quick_cpu.yaml")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "quick_cpu").symlink_to(REPO / "results" / "quick_cpu")  # a work directory with them
    path = report.write_report(config, root=str(tmp_path), repo=str(REPO))
    assert Path(path) == tmp_path / "RESULTS.md"
    assert Path(path).read_text(encoding="utf-8") == (REPO / "RESULTS.md").read_text(encoding="utf-8")


def test_sizes_table_names_its_source_and_adds_ptq_rows():
    rows = [_row(kind="baseline", family="float", method="float", granularity=None, mode=None, param=float("nan"),
                 float_zip_bytes=1.02 * 2**20, float32_bytes=1.2e6),
            _row(param=1e-11, zip_bytes=0.17 * 2**20), _row(param=1e-11, mode="ptq", zip_bytes=0.15 * 2**20)]
    table = report.sizes_table(pd.DataFrame(rows), "cifar10", "channelwise")
    assert list(table["setting"]) == ["float32", "nested scheme, channelwise, QAT, λ=1e-11",
                                      "nested scheme, channelwise, PTQ, λ=1e-11"]
    assert list(table["ours zip MiB (×)"])[1:] == ["0.170 (6.0×)", "0.150 (6.8×)"]
    assert all(s.startswith("finished Table 4.4") for s in table["thesis: source"])


def test_every_thesis_number_has_a_source():
    for dataset, ref in report.THESIS.items():
        for lam, entry in ref["nested"].items():
            source = entry[1] if dataset == "mnist" else entry[2]
            assert source.startswith(("read off finished", "finished", "draft")), (dataset, lam, source)
        assert set(ref["sizes_source"]) >= {f if f in ("float", "nested") else "terms" for f, _ in ref["sizes"]}


def test_render_takes_the_quoted_numbers_placeholders():
    text = "{{s.mnist.lsq.outputwise.qat.2.acc}} % and {{q.mnist.unique.1e-10}}; {{s.…}} stays"
    values = {"s.mnist.lsq.outputwise.qat.2.acc": "96.64", "q.mnist.unique.1e-10": "16–17"}
    assert report.render(text, values) == "96.64 % and 16–17; {{s.…}} stays"


def _mini_results():
    rows = [_row(kind="baseline", family="float", method="float", granularity=None, mode=None, param=float("nan"),
                 dataset="mnist", val_accuracy=0.96, float_zip_bytes=3.6e5, float32_bytes=4e5, entropy_bytes=4e5,
                 learning_rate=1e-4)]
    for seed, acc in ((42, 0.95), (43, 0.97)):
        rows.append(_row(dataset="mnist", granularity="rowwise", param=1e-10, seed=seed, val_accuracy=acc,
                         entropy_bytes=4e4, learning_rate=1e-4, unique_integers=20 + seed - 42))
    rows.append(_row(dataset="mnist", family="lsq", method="lsq", granularity="outputwise", param=2.0,
                     val_accuracy=0.9, entropy_bytes=2e4, learning_rate=1e-4))
    rows.append(_row(dataset="mnist", family="lsq", method="lsq", granularity="outputwise", param=2.0,
                     val_accuracy=0.8, entropy_bytes=2e4, learning_rate=1e-3, variant="lr0.001"))
    return pd.DataFrame(rows)


def test_setting_values_at_the_better_and_at_each_learning_rate():
    values = report.setting_values(_mini_results(), "mnist")
    assert values["s.mnist.nested.rowwise.qat.1e-10.acc"] == "96.00"
    assert values["s.mnist.nested.rowwise.qat.1e-10.accpm"] == f"96.00 ± {100 * math.sqrt(2e-4):.2f}"
    assert values["s.mnist.nested.rowwise.qat.1e-10.kB"] == "40.0" and values["s.mnist.float.kB"] == "400.0"
    assert values["s.mnist.nested.rowwise.qat.1e-10.xf32"] == "10.0"
    assert values["s.mnist.lsq.outputwise.qat.2.acc"] == "90.00"  # the better rate, as the comparison table
    assert values["s.mnist.lsq.outputwise.qat.2.lr0.001.acc"] == "80.00"
    assert values["s.mnist.lsq.outputwise.qat.2.below"] == "6.00"


def test_quotes_of_partial_results_do_not_fail():
    """A profile's report renders while runs are still missing: quotes without their runs are "–"."""
    values = report.quote_values(_mini_results(), None)
    assert values["q.mnist.unique.1e-10"] == "20–21"
    assert values["q.mnist.within1"] == "nested scheme λ=1e-10, rowwise QAT"  # 96.00 %, within a point of 96 %
    assert values["q.mnist.gradual.1e-10.acc"] == "–" and values["q.mnist.ptqgain"] == "–"


def test_backend_table_compares_the_same_settings():
    ours = _mini_results().assign(backend="jax", n_train=60000, n_val=10000, batch_size=32, epochs=20)
    twin = ours.assign(backend="tensorflow", val_accuracy=ours["val_accuracy"] - 0.01)
    twin = twin[twin["seed"] == 42]
    table = report.backend_table(ours, twin)
    assert list(table["setting"]) == ["float32", "nested scheme λ=1e-10, rowwise QAT", "LSQ 2 bits, outputwise QAT"]
    assert list(table["Δ mean (JAX − TensorFlow), points"]) == ["+1.00", "+2.00", "+1.00"]
    values = report.backend_values(ours, "tf", twin)
    assert values["q.backend.other"] == "TensorFlow" and values["q.backend.folder"] == "results/tf"
    assert report.backend_values(ours, None, None)["backend_table"].startswith("No runs of the same settings")


@pytest.mark.skipif(not all((REPO / "results" / p / "results.csv").exists() for p in ("mnist-jax", "quick_cpu")),
                    reason="no mnist-jax / quick_cpu results")
def test_mnist_report_is_rendered_from_the_stored_results(tmp_path):
    """results/mnist-jax/RESULTS.md is byte for byte what `make figures CONFIG=config/mnist.yaml` writes (with the
    quick_cpu runs beside it: the TensorFlow twin of its backend comparison)."""
    config = wfconfig.load_config(REPO / "config" / "mnist.yaml")
    results = tmp_path / "results"
    (results / "mnist-jax").mkdir(parents=True)
    for entry in (REPO / "results" / "mnist-jax").iterdir():
        if entry.name != "RESULTS.md":
            (results / "mnist-jax" / entry.name).symlink_to(entry)
    (results / "quick_cpu").symlink_to(REPO / "results" / "quick_cpu")
    path = report.write_report(config, root=str(tmp_path), repo=str(REPO))
    assert Path(path) == results / "mnist-jax" / "RESULTS.md"
    assert Path(path).read_text(encoding="utf-8") == (REPO / "results" / "mnist-jax" / "RESULTS.md").read_text(
        encoding="utf-8")
