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
