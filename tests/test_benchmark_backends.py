"""benchmarks/step_overhead.py --backends: one process per installed Keras backend, a JSON file and a Markdown
table (a tiny run: a few hundred samples, one timed pair; the numbers themselves are not checked)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "step_overhead.py"
INSTALLED = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]


@pytest.mark.slow
def test_every_installed_backend_in_its_own_process(tmp_path):
    out = tmp_path / "backends.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--backends", ",".join(INSTALLED), "--samples", "320",
                           "--repeats", "1", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == INSTALLED
    for r in data["results"]:
        assert "error" not in r, r.get("error")
        assert r["machine"]["backend"] == r["backend"], "KERAS_BACKEND reached the worker before Keras was imported"
        assert r["samples"] in (320, 1437) and r["threads"] == 1 and len(r["ratios"]) == 1
        assert r["float_epoch_s_median"] > 0 and r["quantized_epoch_s_median"] > 0
    if "jax" in INSTALLED:
        assert next(r for r in data["results"] if r["backend"] == "jax")["jit_compile"] == {"float": True,
                                                                                            "quantized": True}
    assert "| backend | version |" in proc.stdout and f"written: {out}" in proc.stdout
    assert "threads: 1 thread(s) per process" in proc.stdout and "data: " in proc.stdout
