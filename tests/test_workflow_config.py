"""Workflow configuration: schema validation with clear messages, sweep expansion, results table, figures.

Fast unit tests of the package lqs_core.workflow (no training); a few tests run `snakemake -n` on bad configs. The
bad-input corpus of the workflow config is tests/test_workflow_bad_configs.py.
"""

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lqs_core import spec
from lqs_core.workflow import aggregate, jobs, names, sweep, table
from lqs_core.workflow import config as wfconfig
from lqs_core.workflow.figures import comparison, compression, curves, histograms, pareto, style

REPO = Path(__file__).resolve().parent.parent
PROFILES = ["smoke", "demo", "quick", "quick_cpu", "thesis"]


def load(name):
    with open(REPO / "config" / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def smoke():
    return load("smoke")


# ---------------------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_configs_are_valid(name):
    config = wfconfig.validate_config(load(name))
    assert config["name"] == name
    assert sweep.expand_runs(config)
    assert wfconfig.load_config(REPO / "config" / f"{name}.yaml") == config


def test_schema_ships_inside_the_package():
    """The schema is package data (importlib.resources), not a file of the checkout's config/ folder."""
    from importlib import resources

    assert resources.files("lqs_core.workflow").joinpath("schema.yaml").is_file()
    assert not (REPO / "config" / "schema.yaml").exists()
    assert wfconfig.load_schema()["title"] == "lqs workflow configuration"


def bad(mutate):
    config = smoke()
    mutate(config)
    with pytest.raises(wfconfig.ConfigError) as info:
        wfconfig.validate_config(config)
    return str(info.value)


def test_unknown_dataset_is_named():
    msg = bad(lambda c: c["datasets"].update(mnistt=c["datasets"]["digits"]))
    assert "datasets: unknown key 'mnistt'" in msg
    assert "digits, imagenette, mnist" in msg.replace("cifar10, ", "")


def test_negative_threshold_is_named():
    msg = bad(lambda c: c["datasets"]["digits"]["nested"].update(thresholds=[0, -1e-10]))
    assert "datasets.digits.nested.thresholds[1]" in msg and "-1e-10" in msg and ">= 0" in msg


def test_negative_gamma_is_named():
    msg = bad(lambda c: c["datasets"]["digits"]["loss_terms"]["terms"].update(maxbin=[-1.0]))
    assert "datasets.digits.loss_terms.terms.maxbin[0]" in msg and ">= 0" in msg


def test_unknown_granularity_is_named():
    msg = bad(lambda c: c["datasets"]["digits"].update(granularities=["rowwise", "diagonal"]))
    assert "datasets.digits.granularities[1]" in msg and "'diagonal' is not one of" in msg
    assert "channelwise" in msg  # the allowed values are listed


def test_unknown_key_is_named():
    msg = bad(lambda c: c["datasets"]["digits"].update(epochs=3))
    assert "datasets.digits: unknown key 'epochs'" in msg and "allowed:" in msg and "train" in msg
    msg = bad(lambda c: c.update(seed=[1]))
    assert "<top level>: unknown key 'seed'" in msg


def test_unknown_term_and_mode_are_named():
    msg = bad(lambda c: c["datasets"]["digits"]["loss_terms"]["terms"].update(l2=[1e-8]))
    assert "unknown key 'l2'" in msg and "maxbin" in msg
    msg = bad(lambda c: c["datasets"]["digits"].update(modes=["qat", "fp8"]))
    assert "datasets.digits.modes[1]" in msg and "'fp8'" in msg


def bad_run(mutate):
    """The message of a config whose schema is fine but whose runs lqs_core.spec.RunConfig refuses."""
    config = smoke()
    mutate(config)
    wfconfig.validate_config(config)
    with pytest.raises(wfconfig.ConfigError) as info:
        sweep.expand_runs(config)
    return str(info.value)


def test_channelwise_only_for_conv_networks():
    # checked once, by RunConfig, for every run when the sweep is expanded (the key path names the sweep)
    msg = bad_run(lambda c: c["datasets"]["digits"].update(granularities=["channelwise"]))
    assert "datasets.digits.nested: granularity: 'channelwise' is defined only for Conv2D kernels" in msg
    assert "allowed there: 'scalar', 'rowwise', 'columnwise', 'outputwise'" in msg
    config = smoke()
    config["datasets"] = {"cifar10": copy.deepcopy(config["datasets"]["digits"])}
    config["datasets"]["cifar10"]["granularities"] = ["channelwise"]
    assert sweep.expand_runs(config)


def test_several_problems_reported_together():
    def mutate(c):
        c["datasets"]["digits"]["nested"]["thresholds"] = [-1.0]
        c["colour"] = "blue"

    msg = bad(mutate)
    assert "thresholds[0]" in msg and "'colour'" in msg


def test_missing_scheme_and_bad_types():
    msg = bad(lambda c: [c["datasets"]["digits"].pop("nested"), c["datasets"]["digits"].pop("loss_terms")])
    assert "needs a 'nested' and/or a 'loss_terms' sweep" in msg
    assert "not of type" in bad(lambda c: c.update(seeds="42"))
    assert "'name' is a required property" in bad(lambda c: c.pop("name"))
    with pytest.raises(wfconfig.ConfigError):
        wfconfig.validate_config(None)


def test_yaml_exponent_strings_become_numbers():
    # PyYAML (YAML 1.1) reads 1e-10 (no dot) as a string; the config accepts it as the number.
    config = yaml.safe_load("""
name: t
seeds: [1]
datasets:
  digits:
    granularities: [rowwise]
    nested: {thresholds: [0, 1e-10, 2E-9]}
""")
    assert config["datasets"]["digits"]["nested"]["thresholds"][1] == "1e-10"
    out = wfconfig.validate_config(config)
    assert out["datasets"]["digits"]["nested"]["thresholds"] == [0, 1e-10, 2e-9]
    assert out["threads"] == 1 and out["data_dir"] is None


def test_numeric_strings_become_numbers_only_where_the_schema_expects_numbers():
    # A quoted name that looks like a number stays the string it is (it used to become the int 2024 and be refused).
    config = smoke()
    config["name"] = "2024"
    config["description"] = "1e-10"
    config["datasets"]["digits"]["nested"]["thresholds"] = ["0", "1e-10"]  # where numbers are expected: numbers
    out = wfconfig.validate_config(config)
    assert out["name"] == "2024" and wfconfig.output_name(out) == "2024"
    assert out["description"] == "1e-10"
    assert out["datasets"]["digits"]["nested"]["thresholds"] == [0, 1e-10]
    histogram = smoke()
    histogram["figures"]["histograms"]["threshold"] = "1e-8"  # inside a oneOf (a rate or null)
    assert wfconfig.validate_config(histogram)["figures"]["histograms"]["threshold"] == 1e-8
    assert "not of type 'string'" in bad(lambda c: c.update(name=2024))  # unquoted: YAML's int, refused by name


def test_quoted_name_passes_through_a_profile_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text((REPO / "config" / "smoke.yaml").read_text().replace("name: smoke", 'name: "2024"'))
    assert wfconfig.load_config(path)["name"] == "2024"


def test_seeds_are_numpy_seeds():
    assert wfconfig.validate_config(smoke() | {"seeds": [0, 2**32 - 1]})["seeds"] == [0, 2**32 - 1]
    msg = bad(lambda c: c.update(seeds=[2**32]))
    assert "seeds[0]: 4294967296 must be <= 4294967295; allowed: an integer in [0, 4294967295]" in msg
    msg = bad(lambda c: c["datasets"]["digits"]["loss_terms"].update(seeds=[2**33]))
    assert "datasets.digits.loss_terms.seeds[0]: 8589934592 must be <= 4294967295" in msg


def test_max_runs_caps_the_sweep_before_any_run_is_built():
    from lqs_core.workflow import sweep as wfsweep

    schema = wfconfig.load_schema()["properties"]["max_runs"]
    assert schema["maximum"] == wfsweep.COUNT_CEILING and wfconfig.DEFAULT_MAX_RUNS == 5000
    assert len(sweep.expand_runs(smoke() | {"max_runs": 11})) == 11  # exactly at the cap: fine
    with pytest.raises(wfconfig.ConfigError) as info:
        sweep.expand_runs(smoke() | {"max_runs": 10})
    assert "the sweep expands to 11 runs; allowed: at most max_runs = 10" in str(info.value)
    huge = smoke() | {"max_runs": wfsweep.COUNT_CEILING, "seeds": list(range(3000))}
    huge["datasets"]["digits"]["nested"]["thresholds"] = [i * 1e-12 for i in range(400)]
    with pytest.raises(wfconfig.ConfigError) as info:
        sweep.expand_runs(huge)  # 2.4 million: counting stops at the ceiling
    assert f"the sweep expands to more than {wfsweep.COUNT_CEILING} runs" in str(info.value)
    assert "datasets.digits.nested.thresholds (400)" in str(info.value) and "seeds (3000)" in str(info.value)


@pytest.mark.parametrize("text,expected", [
    ("a: &x [1]\nb: *x\n", "line 1, column 4: anchor '&x'"),
    ("a: *x\n", "line 1, column 4: alias '*x'"),
    ("a: 1\nb: 2\na: 3\n", "line 3, column 1: key 'a' appears twice in one mapping (first on line 1)"),
    ("a: {b: 1, b: 1}\n", "line 1, column 11: key 'b' appears twice"),
    ("a: !!set {b}\n", "line 1, column 4: tag '!!set'"),
    ("a: !!timestamp 2024-01-01\n", "tag '!!timestamp'"),
    ("a: !!python/str x\n", "tag '!!python/str'"),
    ("!!python/object:os.system {}\n", "line 1, column 1: tag '!!python/object:os.system'"),
    ("%TAG !p! tag:yaml.org,2002:python/\n---\na: !p!tuple [1]\n", "tag '!!python/tuple'"),
    ('{"a": 1, "a": 2}\n', "key 'a' appears twice"),  # JSON too
    ("a: [\n", "line 2, column 1:"),
])
def test_strict_loader_refuses(tmp_path, text, expected):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(wfconfig.ConfigError) as info:
        wfconfig.read_yaml(path)
    assert str(info.value).startswith(f"Invalid workflow config ({path}): ") and expected in str(info.value)
    assert "allowed: " in str(info.value)


def test_strict_loader_reads_plain_yaml_and_json(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a: !!str 1\nc: [1, 2.5, null, true]\nd: {e: f}\n")
    assert wfconfig.read_yaml(path) == {"a": "1", "c": [1, 2.5, None, True], "d": {"e": "f"}}
    path.write_text(json.dumps({"name": "j", "seeds": [1]}))
    assert wfconfig.read_yaml(path) == {"name": "j", "seeds": [1]}
    path.write_text("x" * (wfconfig.MAX_BYTES + 1))
    with pytest.raises(wfconfig.ConfigError, match="allowed: at most 1048576 bytes"):
        wfconfig.read_yaml(path)


@pytest.mark.parametrize("name", PROFILES + ["mnist", "cifar10_gpu"])
def test_shipped_profiles_are_strict_yaml(name):
    """Read with the strict loader: no anchors, tags or duplicate keys; the same data as PyYAML's safe_load."""
    assert wfconfig.read_yaml(REPO / "config" / f"{name}.yaml") == load(name)


@pytest.mark.parametrize("output,allowed", [
    ("results/smoke/report.md", True), ("RESULTS.md", True), ("results/x/y/z.md", True),
    ("lqs_core/__init__.py", False), ("README.md", False), ("results/smoke/results.csv", False),
    ("Snakefile", False), ("results/../lqs_core/x.md", False), ("results/a b.md", False),
    ("results/$(id).md", False), ("results/a;b.md", False), ("results/-rf.md", True),
])
def test_report_output_only_where_the_workflow_writes_reports(output, allowed):
    config = smoke()
    config["report"]["output"] = output
    if allowed:
        assert wfconfig.validate_config(config)["report"]["output"] == output
    else:
        assert "report.output" in bad(lambda c: c["report"].update(output=output))


@pytest.mark.parametrize("data_dir,allowed", [
    ("/data/lqs", True), ("data", True), ("~/datasets", True), ("../shared/data/keras/datasets", True),
    ("/data/my data", False), ("$HOME/data", False), ("/data/`id`", False), ("-x", False), ("", False),
])
def test_data_dir_characters(data_dir, allowed):
    if allowed:
        assert wfconfig.validate_config(smoke() | {"data_dir": data_dir})["data_dir"] == data_dir
    else:
        assert f"data_dir: {data_dir!r} is not a folder path" in bad(lambda c: c.update(data_dir=data_dir))


def test_check_command(tmp_path):
    check = [sys.executable, "-m", "lqs_core.workflow.config", "check"]
    ok = subprocess.run(check + [str(REPO / "config" / "smoke.yaml")], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    path = tmp_path / "p.yaml"
    path.write_text((REPO / "config" / "smoke.yaml").read_text() + "seeds: [1]\n")
    refused = subprocess.run(check + [str(path)], capture_output=True, text=True)
    assert refused.returncode == 1 and "key 'seeds' appears twice" in refused.stderr


def test_schema_objects_are_closed():
    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                assert "additionalProperties" in node, f"open object at {where}"
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(wfconfig.load_schema(), "schema")


def test_schema_agrees_with_the_vocabulary():
    """The schema's enumerations and bounds are lqs_core.spec's (the one definition of the vocabulary)."""
    schema = wfconfig.load_schema()
    defs = schema["$defs"]
    assert tuple(schema["properties"]["datasets"]["properties"]) == spec.DATASETS
    assert set(defs["granularity"]["enum"]) == set(spec.GRANULARITIES)
    assert tuple(defs["loss_terms"]["properties"]["terms"]["properties"]) == spec.TERMS
    assert tuple(defs["mode"]["enum"]) == spec.MODES
    assert set(defs["comparators"]["properties"]) == set(spec.COMPARATORS) | {"seeds", "granularities", "modes",
                                                                              "learning_rates"}
    keras_bits = defs["comparators"]["properties"]["keras_quantize"]["properties"]["bits"]["items"]["enum"]
    assert tuple(sorted(keras_bits)) == spec.KERAS_QUANTIZE_BITS
    assert set(spec.COMPARATORS) - {"ptq"} == set(spec.METHODS) - {"nested"}
    assert (defs["bits"]["minimum"], defs["bits"]["maximum"]) == (spec.BITS_MIN, spec.BITS_MAX)
    cgmq = defs["comparators"]["properties"]["cgmq"]["properties"]
    assert (cgmq["budgets"]["items"]["minimum"], cgmq["budgets"]["items"]["maximum"]) == (spec.MIN_RELATIVE_BUDGET, 1)
    assert cgmq["gate_init"]["minimum"] == spec.GATE_MIN
    li = defs["comparators"]["properties"]["layer_importance"]["properties"]
    assert set(spec.LAYER_IMPORTANCE_OPTIONS) <= set(li)
    # every train key is a RunConfig field, but ptq_epochs: the workflow sets `epochs` of the ptq-mode runs from it
    assert set(defs["train"]["properties"]) - {"ptq_epochs"} <= set(spec.RunConfig.field_names())
    # the workflow's orders are permutations of the vocabulary, not copies of it
    assert sorted(g for g in names.GRANULARITY_ORDER if g != "weightwise") == sorted(spec.GRANULARITIES)
    assert set(sweep.EXTERNAL_GRANULARITY.values()) <= set(names.GRANULARITY_ORDER)
    assert names.FAMILIES == ("float", "nested") + spec.TERMS + spec.COMPARATORS


# ---------------------------------------------------------------------------------------------------------------
# Expansion


def test_smoke_expansion():
    runs = sweep.expand_runs(smoke())
    ids = [r.run_id for r in runs]
    assert ids == [
        "digits-float-s42",
        "digits-nested-rowwise-lam0-qat-s42",
        "digits-nested-rowwise-lam1e-08-qat-s42",
        "digits-nested-rowwise-lam0-ptq-s42",
        "digits-nested-rowwise-lam1e-08-ptq-s42",
        "digits-loss_terms-rowwise-maxbin1e-06-qat-s42",
        "digits-ptq_eval-outputwise-b4-s42",
        "digits-fixed-outputwise-b4-qat-s42",
        "digits-lsq-outputwise-b4-qat-s42",
        "digits-cgmq-scalar-bud0.2-qat-s42",
        "digits-layer_importance-scalar-b8-qat-s42",
    ]
    by = sweep.runs_by_id(runs)
    ptq = by["digits-nested-rowwise-lam1e-08-ptq-s42"]
    assert ptq.baseline == "digits-float-s42"
    assert ptq.config["float_weights"] == "results/smoke/baselines/digits-float-s42/model.keras"
    assert ptq.config["threshold"] == 1e-8 and ptq.config["epochs"] == 2
    lt = by["digits-loss_terms-rowwise-maxbin1e-06-qat-s42"]
    assert lt.config["terms"] == {"maxbin": 1e-6} and "threshold" not in lt.config and lt.baseline is None
    assert by["digits-float-s42"].config == {"dataset": "digits", "scheme": "float", "seed": 42, "epochs": 2}


@pytest.mark.parametrize("name", ["demo", "quick_cpu"])
def test_expanded_ids_are_the_committed_run_folders(name):
    """The sweep's ids (lqs_core.spec.run_id without training suffixes) are the folders of the committed runs."""
    folders = {(p.parent.name, p.name) for p in (REPO / "results" / name).glob("*/*") if p.is_dir()}
    folders = {f for f in folders if f[0] in sweep.FOLDERS.values()}
    if not folders:
        pytest.skip(f"no committed results/{name}")
    runs = sweep.expand_runs(load(name))
    assert {(r.folder, r.run_id) for r in runs} == folders
    assert len(runs) == len(folders)


def test_run_configs_are_valid_runconfigs():
    for name in PROFILES:
        for run in sweep.expand_runs(load(name)):
            config = spec.RunConfig.from_dict(dict(run.config))
            assert spec.run_id(config, training_suffixes=False) == run.run_id
            assert spec.run_id(config).startswith(run.run_id)


def test_grid_counts():
    # datasets x scheme(nested: λ grid; loss terms: per term its γ grid) x granularity x mode x seed, + baselines
    config = smoke()
    config["seeds"] = [1, 2, 3]
    d = config["datasets"]["digits"]
    d["granularities"] = ["rowwise", "columnwise", "scalar"]
    d["nested"]["thresholds"] = [0, 1e-11, 1e-10, 1e-9]
    d["loss_terms"] = {"terms": {"maxbin": [1e-8, 1e-7], "inverse": [1e-9]}, "granularities": ["rowwise"],
                       "modes": ["qat"]}
    del d["comparators"]  # counted in test_comparator_expansion
    counts = sweep.count_runs(config)
    assert counts == {"baseline": 3, "nested": 4 * 3 * 2 * 3, "maxbin": 2 * 3, "inverse": 1 * 3,
                      "total": 3 + 72 + 6 + 3}
    assert len({r.run_id for r in sweep.expand_runs(config)}) == counts["total"]
    # a second dataset doubles everything; modes inherited from the dataset
    config["datasets"]["mnist"] = copy.deepcopy(d)
    assert sweep.count_runs(config)["total"] == 2 * counts["total"]
    assert sweep.needs_fetch(config) == ["mnist"] and sweep.needs_fetch(smoke()) == []


@pytest.mark.parametrize("name,total", [("smoke", 11), ("demo", 78)])
def test_profile_totals(name, total):
    assert sweep.count_runs(load(name))["total"] == total


def test_dataset_seeds_override_the_profile_seeds():
    config = smoke()
    config["datasets"]["mnist"] = copy.deepcopy(config["datasets"]["digits"])
    config["datasets"]["mnist"]["seeds"] = [7]
    del config["datasets"]["mnist"]["comparators"]
    runs = sweep.expand_runs(config)
    assert {r.seed for r in runs if r.dataset == "mnist"} == {7}
    assert {r.seed for r in runs if r.dataset == "digits"} == {42}
    assert "digits-float-s42" in sweep.runs_by_id(runs) and "mnist-float-s7" in sweep.runs_by_id(runs)
    # comparator seeds must be among the dataset's own seeds
    config["datasets"]["mnist"]["comparators"] = {"seeds": [42], "ptq": {"bits": [4]}}
    with pytest.raises(wfconfig.ConfigError, match=r"mnist.comparators.seeds: \[42\] not among the seeds \[7\]"):
        wfconfig.validate_config(config)
    config["datasets"]["mnist"]["seeds"] = [-1]
    with pytest.raises(wfconfig.ConfigError, match=r"datasets.mnist.seeds\[0\]: -1"):
        wfconfig.validate_config(config)


def test_quick_cpu_profile_is_the_documented_cut():
    config = wfconfig.validate_config(load("quick_cpu"))
    runs = sweep.expand_runs(config)
    mnist = [r for r in runs if r.dataset == "mnist"]
    assert {r.seed for r in mnist if r.family == "nested"} == {42, 43}
    assert {r.seed for r in runs if r.dataset == "cifar10"} == {42}
    assert all(r.config["epochs"] == 20 and r.config["batch_size"] == 32 and r.config["learning_rate"] == 1e-4
               and r.config.get("max_train") is None for r in mnist)  # Table 4.1 settings, all 60 000 images
    assert config["report"]["output"] == "RESULTS.md"


def test_thesis_profile_is_spec_section_4():
    config = wfconfig.validate_config(load("thesis"))
    assert config["seeds"] == [42, 43, 44, 45, 46]
    ds = config["datasets"]
    assert set(ds) == {"mnist", "cifar10", "imagenette"}
    lams = [0, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8]
    for name in ds:
        assert ds[name]["nested"]["thresholds"] == lams
        assert ds[name]["modes"] == ["qat", "ptq"]
        assert set(ds[name]["loss_terms"]["terms"]) == {"maxbin", "inverse", "difference"}
    assert ds["mnist"]["granularities"] == ["rowwise", "columnwise", "scalar"]
    assert ds["cifar10"]["granularities"] == ["channelwise", "rowwise", "columnwise", "scalar"]
    assert ds["mnist"]["train"] == {"epochs": 20, "batch_size": 32, "learning_rate": 1e-4}
    assert ds["cifar10"]["train"] == {"epochs": 100, "batch_size": 128, "learning_rate": 1e-4}
    assert ds["imagenette"]["train"]["lr_schedule"] == [[40, 0.5], [60, 0.2]]
    gm = ds["mnist"]["loss_terms"]["terms"]["maxbin"]
    assert gm == [0] + [10.0 ** -k for k in range(12, 3, -1)]
    assert ds["cifar10"]["loss_terms"]["terms"]["maxbin"] == [0] + [10.0 ** -k for k in range(13, 6, -1)]
    assert ds["imagenette"]["loss_terms"]["terms"]["maxbin"] == [0, 1e-11, 1e-10, 1e-9, 1e-8, 1.0]


def test_figure_outputs_follow_the_sweeps():
    outs = sweep.figure_outputs(smoke(), "figures/smoke")
    assert outs["fig_pareto"] == ["figures/smoke/pareto_digits_nested.png", "figures/smoke/pareto_digits_nested.pdf",
                                  "figures/smoke/pareto_digits_maxbin.png", "figures/smoke/pareto_digits_maxbin.pdf"]
    assert [os.path.basename(p) for p in outs["fig_curves"]] == [
        "curves_digits_nested_qat.png", "curves_digits_nested_qat.pdf", "curves_digits_nested_ptq.png",
        "curves_digits_nested_ptq.pdf", "curves_digits_maxbin_qat.png", "curves_digits_maxbin_qat.pdf"]
    assert len(outs["fig_histograms"]) == 4
    assert sorted(os.path.basename(p) for p in outs["table_compression"]) == [
        "compression.csv", "compression.md", "compression.pdf", "compression.png", "compression_settings.csv"]
    # the comparators get the comparison figure only, not Pareto / curves / histogram figures of their own
    assert [os.path.basename(p) for p in outs["fig_comparison"]] == [
        "comparison_digits.png", "comparison_digits.pdf", "pareto_points_digits.csv", "pareto_points_digits.md"]
    config = smoke()
    del config["datasets"]["digits"]["comparators"]
    assert sweep.figure_outputs(config, "f")["fig_comparison"] == []


# ---------------------------------------------------------------------------------------------------------------
# Comparators


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c.update(lsq={"bits": [4, 9]}), "comparators.lsq.bits[1]: 9 must be <= 8"),
    (lambda c: c.update(fixed={"bits": [1]}), "comparators.fixed.bits[0]: 1 must be >= 2"),
    (lambda c: c.update(ptq={"bits": [4.5]}), "comparators.ptq.bits[0]: 4.5 is not of type 'integer'"),
    (lambda c: c.update(cgmq={"budgets": [-0.1]}), "comparators.cgmq.budgets[0]: -0.1 must be >= 0.0625"),
    (lambda c: c.update(cgmq={"budgets": [1.5]}), "comparators.cgmq.budgets[0]: 1.5 must be <= 1"),
    (lambda c: c.update(cgmq={"budgets": [0.1], "gates": ["tensor"]}), "'tensor' is not one of layer, weight"),
    (lambda c: c.update(lsqq={"bits": [4]}), "comparators: unknown key 'lsqq' (allowed: cgmq, fixed, granularities"),
    (lambda c: c["lsq"].update(granularities=["rowwise"]), "'rowwise' is not one of scalar, outputwise"),
    (lambda c: c.update(fixed={}), "comparators.fixed: 'bits' is a required property"),
    (lambda c: c.update(seeds=[7]), "comparators.seeds: [7] not among the seeds [42]"),
])
def test_bad_comparators_are_named(mutate, expected):
    msg = bad(lambda c: mutate(c["datasets"]["digits"]["comparators"]))
    assert expected in msg, msg


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c.update(layer_importance={"bits": [4], "budgets": [6]}),
     "datasets.digits.comparators.layer_importance: budget (target mean bits) must be in 2..4, got 6.0"),
    (lambda c: c.update(layer_importance={"bits": [4], "min_bits": 5}),
     "datasets.digits.comparators.layer_importance: method_options['min_bits'] must be in 2..4, got 5"),
])
def test_bad_comparator_runs_are_named(mutate, expected):
    # the rules of one run are RunConfig's, checked when the sweep is expanded (before any job)
    msg = bad_run(lambda c: mutate(c["datasets"]["digits"]["comparators"]))
    assert expected in msg, msg


def test_comparator_expansion():
    runs = sweep.runs_by_id(sweep.expand_runs(smoke()))
    ptq = runs["digits-ptq_eval-outputwise-b4-s42"]
    assert ptq.family == "ptq" and ptq.mode is None and ptq.param == 4 and ptq.baseline == "digits-float-s42"
    assert ptq.config == {"dataset": "digits", "scheme": "ptq_eval", "granularity": "outputwise", "bits": 4,
                          "seed": 42, "epochs": 2,
                          "float_weights": "results/smoke/baselines/digits-float-s42/model.keras"}
    lsq = runs["digits-lsq-outputwise-b4-qat-s42"]
    assert lsq.config == {"dataset": "digits", "scheme": "nested", "method": "lsq", "granularity": "outputwise",
                          "mode": "qat", "bits": 4, "seed": 42, "epochs": 2}
    cgmq = runs["digits-cgmq-scalar-bud0.2-qat-s42"]
    assert cgmq.param == 0.2 and cgmq.config["budget"] == 0.2 and cgmq.config["method_options"] == {"gates": "layer"}
    li = runs["digits-layer_importance-scalar-b8-qat-s42"]
    assert li.config["bits"] == 8 and "budget" not in li.config and li.variant is None

    # counts: ptq bits x granularities x seeds (no modes); trained comparators x modes; cgmq x gates; seeds subset
    config = smoke()
    config["seeds"] = [1, 2, 3]
    config["datasets"]["digits"]["comparators"] = {
        "seeds": [1, 2], "granularities": ["scalar", "outputwise"], "modes": ["qat", "ptq"],
        "ptq": {"bits": [2, 3, 4, 8]},
        "fixed": {"bits": [2, 4, 8], "modes": ["qat"]},
        "lsq": {"bits": [2, 4, 8], "granularities": ["outputwise"]},
        "cgmq": {"budgets": [0.0625, 0.1, 0.25], "gates": ["layer", "weight"], "granularities": ["scalar"],
                 "direction": 3},
        "layer_importance": {"bits": [8, 6], "budgets": [None, 4], "finetune_epochs": 1},
    }
    counts = sweep.count_runs(config)
    assert counts["ptq"] == 4 * 2 * 2
    assert counts["fixed"] == 3 * 2 * 1 * 2
    assert counts["lsq"] == 3 * 1 * 2 * 2
    assert counts["cgmq"] == 3 * 2 * 1 * 2 * 2
    assert counts["layer_importance"] == 2 * 2 * 2 * 2 * 2
    all_runs = sweep.expand_runs(config)
    by = sweep.runs_by_id(all_runs)
    assert len(by) == len(all_runs) == counts["total"]
    assert {r.seed for r in all_runs if r.family in spec.COMPARATORS} == {1, 2}
    w = by["digits-cgmq-scalar-bud0.1-gweight-dir3-ptq-s2"]
    assert w.variant == "gweight-dir3" and w.baseline == "digits-float-s2"
    assert w.config["method_options"] == {"gates": "weight", "direction": 3}
    li = by["digits-layer_importance-outputwise-b6-avg4-ft1-qat-s1"]
    assert li.config["budget"] == 4.0 and li.config["method_options"] == {"finetune_epochs": 1}
    assert li.variant == "avg4-ft1"
    for run in all_runs:
        cfg = spec.RunConfig.from_dict(dict(run.config))
        assert spec.run_id(cfg, training_suffixes=False) == run.run_id
    # the comparators draw no Pareto / curves / histogram figures of their own
    assert sweep.sweep_families(config) == [("digits", "nested"), ("digits", "maxbin")]


@pytest.mark.parametrize("name", ["demo", "quick", "thesis"])
def test_every_profile_runs_every_comparator(name):
    config = wfconfig.validate_config(load(name))
    counts = sweep.count_runs(config)
    # lqs' own comparators everywhere; the other libraries' methods (HGQ2, Keras' quantize) in the MNIST profile
    own = [c for c in spec.COMPARATORS if c not in spec.EXTERNAL_METHODS]
    assert all(counts.get(c, 0) > 0 for c in own), counts
    assert sweep.comparison_datasets(config) == [d for d in spec.DATASETS if d in config["datasets"]]
    if name == "thesis":
        for ds in config["datasets"].values():
            comp = ds["comparators"]
            assert comp["ptq"]["bits"] == [2, 3, 4, 8]
            assert comp["fixed"]["bits"] == comp["lsq"]["bits"] == list(range(2, 9))
        assert counts["ptq"] == 3 * 4 * 2 * 5  # datasets x bits x granularities x seeds


def test_pareto_mask_and_comparison_from_synthetic_results(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert aggregate.pareto_mask([0.9, 0.8, 0.95, 0.7, float("nan")], [10, 5, 20, 6, 1]) == [True, True, True, False,
                                                                                        False]
    rows = [{"run_id": "b", "kind": "baseline", "dataset": "digits", "family": "float", "method": "float",
             "seed": 42, "val_accuracy": 0.96, "float32_bytes": 40000}]
    for seed, noise in ((42, 0.0), (43, 0.01)):
        for method, param, acc, size, bits in (("nested", 0.0, 0.97, 20000, 10.0), ("nested", 1e-9, 0.95, 6000, 5.0),
                                               ("ptq", 2.0, 0.40, 1500, 2.0), ("ptq", 8.0, 0.96, 5000, 8.0),
                                               ("lsq", 4.0, 0.955, 3000, 4.0), ("cgmq", 0.1, 0.90, 2800, 3.2)):
            rows.append({"run_id": f"{method}{param}-{seed}", "kind": "run", "dataset": "digits", "family": method,
                         "method": method, "granularity": "outputwise", "mode": None if method == "ptq" else "qat",
                         "seed": seed, "param": param, "variant": None, "val_accuracy": acc + noise,
                         "packed_bytes": size, "entropy_bytes": size, "mean_bits_fixed": bits,
                         "entropy_bits_per_weight": bits - 0.5, "huffman_bytes": size, "zip_bytes": size,
                         "unique_integers": 10, "float32_bytes": 40000})
    results = pd.DataFrame(rows)
    settings = aggregate.comparison_settings(results, "digits")
    assert settings["method"].tolist() == ["float", "nested", "nested", "ptq", "ptq", "lsq", "cgmq"]
    assert (settings.loc[settings["method"] != "float", "n_seeds"] == 2).all()
    assert settings.loc[0, "packed_bytes_mean"] == 40000 and settings.loc[0, "mean_bits_fixed_mean"] == 32
    assert settings.loc[0, "entropy_bytes_mean"] == 40000  # the float baseline's file: float32
    assert settings["setting"].tolist()[:4] == ["float32", "λ=0", "λ=1e-9", "2 bits"]
    points = aggregate.pareto_points(results, "digits")
    assert [(m, p) for m, p in zip(points["method"], points["param"])] == [
        ("ptq", 2.0), ("cgmq", 0.1), ("lsq", 4.0), ("ptq", 8.0), ("nested", 0.0)]
    md = aggregate.to_markdown(aggregate.pareto_points_display(points))
    assert md.startswith("| method | setting |") and "LSQ" in md and md.count("\n") == 2 + len(points)
    style.set_style()
    fig = comparison.comparison_figure(results, "digits")
    assert len(fig.axes) == 3 and fig.axes[0].get_xscale() == "log"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [names.METHOD_NAMES[m] for m in ("float", "nested", "ptq", "lsq", "cgmq")]
    paths = style.savefig(fig, tmp_path / "a")
    plt.close(fig)
    fig = comparison.comparison_figure(results, "digits")
    again = style.savefig(fig, tmp_path / "b")
    plt.close(fig)
    assert [Path(p).read_bytes() for p in paths] == [Path(p).read_bytes() for p in again]


def test_format_value():
    assert [names.format_value(v) for v in (0, 1e-10, 1e-8, 0.5, 1.0, 2.5e-7)] == ["0", "1e-10", "1e-8", "0.5", "1",
                                                                                  "2.5e-7"]


# ---------------------------------------------------------------------------------------------------------------
# Results table and figures on synthetic runs


def fake_results(tmp_path, seeds=(42, 43)):
    """A results folder as the workflow writes it, with made-up numbers."""
    config = smoke()
    config["seeds"] = list(seeds)
    config["datasets"]["digits"]["nested"]["thresholds"] = [0, 1e-10, 1e-8]
    runs = sweep.expand_runs(config, results_dir=str(tmp_path))
    rng = np.random.default_rng(0)
    for run in runs:
        d = Path(run.directory(tmp_path))
        d.mkdir(parents=True)
        p = run.param or 0.0
        level = 0 if run.kind == "baseline" or run.family in spec.COMPARATORS else int(np.log10(p)) + 13 if p > 0 else 0
        # level: 0, 3, 5 for λ = 0, 1e-10, 1e-8
        acc = 0.97 - 0.05 * (level == 5) + rng.normal(0, 0.005)
        epochs = 3
        hist = pd.DataFrame({"epoch": range(1, epochs + 1), "loss": [1.0, 0.5, 0.3], "accuracy": [0.8, 0.9, acc],
                             "val_loss": [1.1, 0.6, 0.35 + 0.01 * level], "val_accuracy": [0.7, 0.9, acc]})
        hist.to_csv(d / "history.csv", index=False)
        report = {"val_accuracy": acc, "val_loss": 0.35, "accuracy": acc, "loss": 0.3, "epochs": epochs,
                  "float_zip_bytes": 18000, "float32_bytes": 19240, "params": 4810}
        if run.kind == "run":
            unique = int(4000 / (1 + 30 * level))
            report.update(unique_integers=unique, int_min=-unique // 2, int_max=unique // 2, int_range=unique // 2,
                          bits_unique=12, bits_fixed=12, zip_bytes=10000 - 1500 * level, packed_bytes=7000 - 900 * level,
                          huffman_bytes=6000 - 900 * level, entropy_bytes=6500 - 900 * level, zip_ratio=1.8,
                          packed_ratio=2.7)
            (d / "integers.lqsint").write_bytes(b"x")
        cfg = dict(run.config, terms=run.config.get("terms", {}), lr_schedule=[], data_dir=None)
        (d / "metrics.json").write_text(json.dumps({"run_id": run.run_id, "config": cfg, "report": report,
                                                    "files": {"history": "history.csv"}}))
    return config, runs


def test_collect_results(tmp_path):
    config, runs = fake_results(tmp_path)
    df = table.collect_results(runs, str(tmp_path))
    assert len(df) == len(runs)
    assert list(df.columns[: len(table.ID_COLUMNS)]) == table.ID_COLUMNS
    assert df.columns[-2:].tolist() == ["history", "integers"]
    assert df["run_id"].tolist()[:2] == ["digits-float-s42", "digits-float-s43"]
    base = df[df["kind"] == "baseline"].iloc[0]
    assert pd.isna(base["granularity"]) and pd.isna(base["integers"]) and base["history"].endswith("history.csv")
    lt = df[df["family"] == "maxbin"].iloc[0]
    assert lt["term"] == "maxbin" and lt["gamma"] == 1e-6 and pd.isna(lt["threshold"])
    nested = df[df["family"] == "nested"]
    assert nested["threshold"].tolist() == nested["param"].tolist()
    # the method column: float, nested, the loss term, the comparator
    assert set(df["method"]) == {"float", "nested", "maxbin"} | (set(spec.COMPARATORS) - set(spec.EXTERNAL_METHODS))
    assert (df["method"] == df["family"]).all()
    comp = df[df["method"].isin(spec.COMPARATORS) & (df["seed"] == 42)].set_index("method")
    assert comp["threshold"].isna().all()
    assert comp.loc["ptq", "scheme"] == "ptq_eval" and pd.isna(comp.loc["ptq", "mode"])
    assert comp.loc["lsq", "param"] == 4 and comp.loc["cgmq", "param"] == 0.2
    assert "float_weights" not in df.columns and "lr_schedule" in df.columns
    # deterministic file, identical on rewrite; readable back
    path = tmp_path / "results.csv"
    table.write_table(df, path)
    first = path.read_bytes()
    table.write_table(table.collect_results(list(reversed(runs)), str(tmp_path)), path)
    assert path.read_bytes() == first
    assert len(table.read_results(tmp_path)) == len(runs)
    # a missing run is an error unless asked otherwise
    os.unlink(Path(runs[-1].directory(tmp_path)) / "metrics.json")
    with pytest.raises(FileNotFoundError):
        table.collect_results(runs, str(tmp_path))
    assert len(table.collect_results(runs, str(tmp_path), missing_ok=True)) == len(runs) - 1


def test_aggregate_and_operating_point():
    df = pd.DataFrame({"param": [0, 0, 1, 1, 2, 2], "val_accuracy": [0.9, 0.92, 0.9, 0.9, 0.5, 0.6],
                       "zip_bytes": [100, 100, 50, 52, 10, 10]})
    agg = aggregate.aggregate_seeds(df, ["param"], ["val_accuracy", "zip_bytes"])
    assert agg["n_seeds"].tolist() == [2, 2, 2]
    assert agg["val_accuracy_mean"].round(6).tolist() == [0.91, 0.9, 0.55]
    assert agg.loc[0, "val_accuracy_std"] == pytest.approx(np.std([0.9, 0.92], ddof=1))
    row, ok = aggregate.select_operating_point(agg, 0.91, 0.02)
    assert ok and row["param"] == 1
    row, ok = aggregate.select_operating_point(agg, 0.99, 0.02)
    assert not ok and row["param"] == 0  # nothing within tolerance: the most accurate
    row, ok = aggregate.select_operating_point(agg, None, 0.02)
    assert not ok and row["param"] == 0


def test_savefig_is_byte_identical(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style.set_style()

    def draw():
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 10, 100], label="λ = 1e-10")
        ax.set_yscale("log")
        ax.legend()
        return fig

    hashes = []
    for i in range(2):
        fig = draw()
        paths = style.savefig(fig, tmp_path / f"f{i}", formats=("png", "pdf", "svg"))
        plt.close(fig)
        hashes.append([hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths])
    assert hashes[0] == hashes[1]
    pdf = (tmp_path / "f0.pdf").read_bytes()
    assert b"CreationDate" not in pdf and b"Producer" not in pdf and b"matplotlib" not in pdf.lower()
    assert b"Software" not in (tmp_path / "f0.png").read_bytes()
    assert not list(tmp_path.glob(".tmp-*"))
    # and in a fresh process (fonts, hash seeds): same bytes
    code = (
        "import sys, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt;"
        "from lqs_core.workflow.figures import style as w; w.set_style(); fig, ax = plt.subplots();"
        "ax.plot([1, 2, 3], [1, 10, 100], label='λ = 1e-10'); ax.set_yscale('log'); ax.legend();"
        "w.savefig(fig, sys.argv[1], formats=('png', 'pdf', 'svg'))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "g")], check=True,
                   env={**os.environ, "PYTHONHASHSEED": "123"})
    for ext, h in zip(("png", "pdf", "svg"), hashes[0]):
        assert hashlib.sha256((tmp_path / f"g.{ext}").read_bytes()).hexdigest() == h, ext


def test_figures_from_synthetic_results(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, runs = fake_results(tmp_path / "res")
    results = table.collect_results(runs, str(tmp_path / "res"))
    style.set_style()
    assert table.result_families(results) == [("digits", "nested"), ("digits", "maxbin")]
    fig = pareto.pareto_figure(results, "digits", "nested")
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_yscale() == "log" and axes[1].get_yscale() == "log"
    assert axes[1].get_xlabel() == "final validation accuracy [%]"
    assert "unique integers" in axes[0].get_ylabel() and "range" in axes[1].get_ylabel()
    labels = {t.get_text() for t in axes[0].texts}
    assert {"0", "1e-10", "1e-8"} <= labels
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [names.MODE_NAMES["qat"], names.MODE_NAMES["ptq"], "Pareto front (non-dominated points)",
                      "λ order (the sweep, not a front)", "float baseline"]
    plt.close(fig)

    histories = table.load_histories(results, str(tmp_path / "res"))
    assert set(histories["run_id"]) == set(results.loc[results["family"] != "ptq", "run_id"])
    assert table.curve_keys(results) == [("digits", "nested", "qat"), ("digits", "nested", "ptq"),
                                         ("digits", "maxbin", "qat")]
    fig = curves.curves_figure(histories, "digits", "nested", "qat")
    # rows: accuracy, accuracy zoomed on the last epochs' band, loss (log)
    assert [ax.get_ylabel() for ax in fig.axes] == ["validation accuracy [%]", "zoom [%]", "validation loss (log)"]
    assert fig.axes[1].get_yscale() == "linear" and fig.axes[2].get_yscale() == "log"
    assert len(fig.axes[0].get_lines()) == 3 + 1  # three λ + float baseline
    plt.close(fig)

    fig = histograms.histogram_figure({"dense_1/kernel": np.arange(-5, 6).reshape(11, 1),
                                       "dense_1/bias": np.zeros(3)}, "t")
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    plt.close(fig)

    row = aggregate.pick_histogram_run(results, "digits", "nested", "rowwise", "qat", None, None, tolerance=0.02)
    assert row["param"] == 1e-10 and row["seed"] == 42  # the most compressed within tolerance
    row = aggregate.pick_histogram_run(results, "digits", "nested", "columnwise", "qat", 43, 3e-9)
    assert row["param"] == 1e-8 and row["seed"] == 43 and row["granularity"] == "rowwise"

    best, settings = aggregate.compression_table(results, tolerance=0.02)
    assert best[["dataset", "family"]].values.tolist() == [["digits", "nested"], ["digits", "maxbin"]]
    nested = best.iloc[0]
    assert nested["param"] == 1e-10 and nested["within_tolerance"] and nested["zip_bytes"] == 10000 - 1500 * 3
    assert nested["zip_ratio"] == pytest.approx(18000 / 5500)
    assert len(settings) == 3 * 2 + 1  # λ x modes + one γ
    md = aggregate.to_markdown(aggregate.table_display(best))
    assert md.startswith("| dataset |") and "λ=1e-10" in md and md.count("\n") == 4
    fig = compression.table_figure(aggregate.table_display(best), "t")
    style.savefig(fig, tmp_path / "table")
    assert (tmp_path / "table.png").stat().st_size > 1000


def _claimer(devices, hold, timeout=None):
    code = ("import sys, time; from lqs_core.workflow.jobs import claim_gpu; "
            f"print(claim_gpu({devices!r}, sys.argv[1], poll_seconds=0.05, timeout={timeout!r}), flush=True); "
            f"time.sleep({hold})")
    return [sys.executable, "-c", code]


def test_claim_gpu_takes_a_free_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    holder = subprocess.Popen(_claimer("0,1", 60) + [str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        assert jobs.claim_gpu("0,1", str(tmp_path)) == "1"  # 0 is held by the other process
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        busy = subprocess.run(_claimer("0,1", 0, timeout=0.3) + [str(tmp_path)], capture_output=True, text=True)
        assert busy.returncode != 0 and "TimeoutError" in busy.stderr
    finally:
        holder.kill()
        holder.wait()
        jobs._GPU_LOCKS.pop().close()
    freed = subprocess.run(_claimer("0,1", 0, timeout=5) + [str(tmp_path)], capture_output=True, text=True)
    assert freed.stdout.strip() == "0"  # released when its holder ended
    assert jobs.claim_gpu("", str(tmp_path)) is None and jobs.claim_gpu(" ", str(tmp_path)) is None


# ---------------------------------------------------------------------------------------------------------------
# The Snakefile refuses a bad config before doing anything


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["datasets"].update(svhn=copy.deepcopy(c["datasets"]["digits"])), "unknown key 'svhn'"),
    (lambda c: c["datasets"]["digits"]["nested"].update(thresholds=[-1e-10]), "thresholds[0]: -1e-10 must be >= 0"),
    (lambda c: c["datasets"]["digits"].update(granularities=["blockwise"]), "'blockwise' is not one of"),
    (lambda c: c.update(epochs=3), "unknown key 'epochs'"),
    (lambda c: c["datasets"]["digits"]["comparators"]["lsq"].update(bits=[16]), "lsq.bits[0]: 16 must be <= 8"),
])
def test_snakemake_rejects_bad_config(tmp_path, mutate, expected):
    config = smoke()
    mutate(config)
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "-s", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(bad_file), "--cores", "1"],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in out, out[-3000:]
    assert "Invalid workflow config" in out
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------------------------
# Notebooks: one parameters cell, defaults that agree with the demo profile, stored without outputs

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
FIGURE_NOTEBOOKS = {"fig_pareto": "pareto", "fig_curves": "curves", "fig_histograms": "histograms",
                    "table_compression": "compression"}


def notebook_defaults(name):
    import ast

    import papermill

    params = papermill.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
    return {k: ast.literal_eval(v["default"]) for k, v in params.items()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    n_params = sum("parameters" in t for t in tags)
    assert n_params == (0 if path.stem == "tutorial" else 1)
    assert any("assertions" in t for t in tags), "a cell tagged `assertions` checks the numbers"
    code = [c for c in nb.cells if c.cell_type == "code"]
    if path.stem in ("run", "baseline"):  # the jobs' notebooks: their executed copies are the logs
        assert all(not c.outputs and c.execution_count is None for c in code), "store the job notebooks without outputs"
    else:  # the tutorial and figure notebooks are stored with their outputs, and nbval compares the marked cells
        assert all(c.execution_count is not None for c in code), "store every cell's output (docs/workflow.md)"
        checked = [c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
        assert checked and all(c.outputs for c in checked), "a marked cell's output is compared by nbval"


def test_figure_notebook_defaults_are_the_demo_settings():
    # Run on its own, a figure notebook draws exactly what the demo workflow draws (same files, same bytes).
    demo = wfconfig.validate_config(load("demo"))
    schema = wfconfig.load_schema()["properties"]["figures"]["properties"]
    for notebook, key in FIGURE_NOTEBOOKS.items():
        defaults = notebook_defaults(notebook)
        assert defaults["profile"] == "demo" and defaults["results_dir"] == "" and defaults["figures_dir"] == ""
        assert set(schema[key]["properties"]) <= set(defaults), notebook
        for name, value in (demo["figures"].get(key) or {}).items():
            assert defaults[name] == value, (notebook, name)


def test_run_notebook_parameters_match_runconfig():
    run = notebook_defaults("run")
    fields = set(spec.RunConfig.field_names())
    assert {"dataset", "scheme", "granularity", "threshold", "mode", "float_weights", "seed", "epochs"} <= fields
    assert {"config_json", "out_dir", "report_file", "threads"} <= set(run)
    assert run["dataset"] == "digits" and run["epochs"] <= 3  # tiny default
    assert notebook_defaults("baseline")["epochs"] <= 3


def test_ptq_epochs_sets_the_fine_tuning_budget_of_every_ptq_mode_run():
    """train.ptq_epochs: every run in ptq mode (nested, comparators) gets it as its epochs, the rest the profile's;
    the ptq_eval comparators train nothing; runs train in the profile's order (baselines first)."""
    config = wfconfig.load_config(os.path.join(REPO, "config", "cifar10.yaml"))
    runs = sweep.expand_runs(config)
    assert runs[0].kind == "baseline" and runs[0].config["epochs"] == 100
    ptq_mode = [r for r in runs if r.mode == "ptq"]
    assert ptq_mode and {r.config["epochs"] for r in ptq_mode} == {20}
    assert {r.family for r in ptq_mode} == {"nested", "lsq", "fixed"}
    assert all(r.config["float_weights"].endswith("baselines/cifar10-float-s42/model.keras") for r in ptq_mode)
    assert {r.config["epochs"] for r in runs if r.mode == "qat"} == {100}
    order = [r.family for r in runs]
    assert order.index("nested") < order.index("lsq")
