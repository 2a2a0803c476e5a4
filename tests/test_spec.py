"""The run vocabulary: one run id for the sweep and for training, checked against every committed run."""

import glob
import json
import os
import subprocess
import sys

import pytest

from lqs_core import spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = sorted(glob.glob(os.path.join(ROOT, "results", "*", "*", "*", "metrics.json")))


def test_committed_runs_are_found():
    assert len(STORED) > 50


@pytest.mark.parametrize("path", STORED, ids=lambda p: os.path.relpath(os.path.dirname(p), ROOT))
def test_run_id_of_every_committed_run(path):
    """The stored config gives back the stored id, and without training suffixes the folder's name (a run at
    another learning rate than its profile's keeps its ``lr<rate>`` part, lqs_core.workflow.sweep.lr_tag)."""
    with open(path) as f:
        stored = json.load(f)
    config = spec.RunConfig.from_dict(stored["config"])
    assert spec.run_id(config) == stored["run_id"]
    short = spec.run_id(config, training_suffixes=False)
    assert os.path.basename(os.path.dirname(path)) in (short, f"{short}-lr{config.learning_rate:g}")


def test_baseline_id_is_the_float_run_id():
    config = spec.RunConfig(dataset="mnist", scheme="float", seed=43, epochs=3)
    assert spec.run_id(config, training_suffixes=False) == spec.baseline_id("mnist", 43) == "mnist-float-s43"
    assert spec.run_id(config) == "mnist-float-s43-e3"


def test_spec_imports_no_tensorflow_or_keras():
    code = "import sys, lqs_core.spec; print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"method": "cgmq", "budget": 1.5}, "budget 1.5 is above 1"),
        ({"method": "cgmq", "budget": float("nan")}, "budget must be a finite number"),
        ({"method": "fixed", "bits": 9}, "bits must be in 2..8, got 9"),
        ({"threshold": float("inf")}, "threshold (lambda) must be finite, got inf"),
        ({"learning_rate": 0}, "learning_rate must be > 0, got 0.0"),
    ],
)
def test_bad_run_config_names_value(fields, message):
    with pytest.raises(ValueError) as e:
        spec.RunConfig(dataset="digits", **fields)
    assert message in str(e.value)


def test_check_cgmq_options_fills_defaults():
    assert spec.check_cgmq_options({"direction": 3}) == {"gates": "layer", "direction": 3, "gate_lr": 0.001,
                                                           "gate_init": spec.GATE_INIT}
    with pytest.raises(ValueError, match="gate_init must be a finite number >= 0.5, got nan"):
        spec.check_cgmq_options({"gate_init": float("nan")})
