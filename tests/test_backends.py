"""lqs on every Keras 3 backend (TensorFlow, JAX, PyTorch), each in a fresh interpreter with ``KERAS_BACKEND`` set:

* a ``.keras`` file saved on one backend loads on every other one with the same predictions and integers;
* a short digits training through :func:`lqs_core.training.train` (epochs=2) runs on JAX and PyTorch: finite
  numbers, the unique-integer metrics, a saved run that loads back, and the same numbers when run again;
* the README's "The library in 20 lines" example (taken from README.md, with fewer epochs) runs on JAX and PyTorch.

A backend whose package is not installed is skipped. The suite's TensorFlow run (the default) drives every case;
a run on another backend (``KERAS_BACKEND=jax pytest -m backends``) runs the cases of its own backend only.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import BACKEND

pytestmark = [pytest.mark.backends, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # backend -> its package


def installed(backend: str) -> bool:
    return importlib.util.find_spec(BACKENDS[backend]) is not None


def needs(backend: str) -> None:
    """Skip unless ``backend`` is installed and this run of the suite checks it."""
    if not installed(backend):
        extra = "cpu" if backend == "tensorflow" else backend
        pytest.skip(f"{backend} is not installed (pip install 'lqs-core[{extra}]')")
    if BACKEND != "tensorflow" and backend != BACKEND:
        pytest.skip(f"the {BACKEND} run of the suite checks its own backend; the tensorflow run checks all")


def run_on(backend: str, code: str, cwd, timeout: int = 600) -> str:
    """Run ``code`` in a fresh interpreter on the Keras backend ``backend``; its stdout."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{backend}: exit {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                                  f"--- stderr\n{proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# .keras files across backends

SAVE = """
import numpy as np, keras
from lqs_core import metrics
from lqs_core.layers import QConv2D, QDense, quantized_params

backend = keras.backend.backend()
keras.utils.set_random_seed(7)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    QConv2D(4, 3, activation="relu", name="nested",
            kernel_quantizer={"method": "nested", "granularity": "channelwise", "threshold": 1e-10}),
    keras.layers.Flatten(),
    QDense(16, activation="relu", name="lsq",
           kernel_quantizer={"method": "lsq", "bits": 4, "granularity": "outputwise"}),
    QDense(12, activation="relu", name="fixed", kernel_quantizer={"method": "fixed", "bits": 3}),
    QDense(10, activation="softmax", name="cgmq", kernel_quantizer={"method": "cgmq", "gates": "weight"}),
])
rng = np.random.default_rng(0)
for _, layer, _, variable, q in quantized_params(model):  # away from the initial values, as after training
    if layer.name == "nested":
        q.scale.assign(rng.uniform(1e-3, 4e-3, q.scale.shape).astype("float32"))
    if layer.name == "lsq":
        q.scale.assign(np.asarray(q.scale.numpy() * 1.3, "float32"))
    if layer.name == "cgmq":
        q.gate.assign(rng.uniform(0.5, 5.5, q.gate.shape).astype("float32"))
x = rng.uniform(0, 16, (6, 8, 8, 1)).astype("float32")
model.save(f"{backend}.keras")
np.save(f"{backend}.x.npy", x)
np.save(f"{backend}.y.npy", model.predict(x, verbose=0))
np.savez(f"{backend}.ints.npz", **{k.replace("/", "__"): v for k, v in metrics.integer_tensors(model).items()})
print("saved", backend)
"""

LOAD = """
import glob, numpy as np, keras
import lqs_core  # enough for load_model to find lqs' layers
from lqs_core import metrics

backend = keras.backend.backend()
for path in sorted(glob.glob("*.keras")):
    source = path[: -len(".keras")]
    if source == backend:
        continue
    model = keras.saving.load_model(path)
    assert [type(l).__name__ for l in model.layers] == ["QConv2D", "Flatten", "QDense", "QDense", "QDense"]
    x, y = np.load(source + ".x.npy"), np.load(source + ".y.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-4, atol=1e-6)  # other kernels, same math
    ints = np.load(source + ".ints.npz")
    got = metrics.integer_tensors(model)
    assert sorted(k.replace("/", "__") for k in got) == sorted(ints.files)
    for name, values in got.items():
        np.testing.assert_array_equal(values, ints[name.replace("/", "__")])
    assert model.get_layer("cgmq").kernel_quantizer.gate.overwrite_with_gradient
    print("loaded", source)
"""


@pytest.fixture(scope="module")
def saved_files(tmp_path_factory):
    """The SAVE model written on every installed backend, in one folder."""
    folder = tmp_path_factory.mktemp("cross_backend")
    done = [b for b in BACKENDS if installed(b)]
    for backend in done:
        assert run_on(backend, SAVE, folder).split() == ["saved", backend]
    return folder, done


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_keras_file_saved_on_one_backend_loads_on_another(saved_files, backend):
    needs(backend)
    folder, sources = saved_files
    others = sorted(b for b in sources if b != backend)
    if not others:
        pytest.skip("no other backend installed to save a file")
    loaded = [line.split()[1] for line in run_on(backend, LOAD, folder).splitlines() if line.startswith("loaded")]
    assert sorted(loaded) == others


# ---------------------------------------------------------------------------------------------------------------
# Training on JAX and PyTorch

TRAIN = """
import json, math, keras, numpy as np
from lqs_core.results import load_result
from lqs_core.spec import RunConfig
from lqs_core.training import train

short = dict(dataset="digits", epochs=2, max_train=640)
configs = {
    "nested": RunConfig(threshold=1e-10, **short),
    "loss_terms": RunConfig(scheme="loss_terms", terms={"maxbin": 1e-8}, **short),
    "cgmq": RunConfig(method="cgmq", budget=0.25, **short),
}
out = {"backend": keras.backend.backend()}
for name, config in configs.items():
    result = train(config, out_dir=name, verbose=0)
    back = load_result(name)
    out[name] = {k: result.report[k] for k in ("val_accuracy", "val_loss", "loss", "unique_integers", "int_range",
                                                 "bits_fixed", "zip_bytes", "relative_bops")}
    out[name]["history_unique"] = [int(u) for u in result.history["unique_integers"]]
    out[name]["reloaded_same"] = bool(np.array_equal(back.model.predict(np.ones((2, 8, 8, 1), "float32"), verbose=0),
                                                     result.model.predict(np.ones((2, 8, 8, 1), "float32"), verbose=0)))
    with open(f"{name}/metrics.json") as f:
        meta = json.load(f)
    out[name]["versions"] = meta["versions"]
    out[name]["determinism"] = meta["machine"].get("determinism", {})
again = train(configs["nested"], verbose=0)
out["nested_again"] = {k: again.report[k] for k in ("val_accuracy", "val_loss", "loss", "unique_integers")}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_digits_training_runs(backend, tmp_path):
    needs(backend)
    line = [ln for ln in run_on(backend, TRAIN, tmp_path).splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["backend"] == backend
    for name in ("nested", "loss_terms", "cgmq"):
        r = out[name]
        assert all(isinstance(r[k], (int, float)) and r[k] == r[k] and abs(r[k]) < 1e30 for k in
                   ("val_accuracy", "val_loss", "loss", "zip_bytes")), r
        assert 0.3 < r["val_accuracy"] <= 1.0, (name, r)
        assert isinstance(r["unique_integers"], int) and r["unique_integers"] >= 2, r
        assert len(r["history_unique"]) == 2 and all(u >= 2 for u in r["history_unique"]), r
        assert r["bits_fixed"] >= 1 and r["int_range"] >= 1 and 0 < r["relative_bops"] <= 1
        assert r["reloaded_same"], name
        assert r["versions"]["backend"] == backend and r["versions"][backend], r["versions"]
    assert out["cgmq"]["relative_bops"] <= 0.25  # the budget, enforced at the end of training
    # the same config and seed give the same numbers again (seeded data order, deterministic kernels)
    assert out["nested_again"] == {k: out["nested"][k] for k in out["nested_again"]}
    if backend == "torch":
        assert out["nested"]["determinism"].get("torch_deterministic_algorithms") is True
    else:
        assert out["nested"]["determinism"].get("jax_platform") == "cpu"


# ---------------------------------------------------------------------------------------------------------------
# The README's example


def readme_example(epochs: int = 2) -> str:
    """The code block under "The library in 20 lines" in README.md, with ``epochs`` epochs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## The library in 20 lines\s*\n+```python\n(.*?)^```", text, flags=re.S | re.M)
    assert match, 'README.md has no "## The library in 20 lines" section with a python block'
    code, n = re.subn(r"epochs=\d+", f"epochs={epochs}", match.group(1))
    assert n == 1, "the README example should call fit(..., epochs=N) once"
    return code


def test_readme_example_is_found():
    code = readme_example()
    assert "model.fit(" in code and "epochs=2" in code and "lqs_core" in code


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_readme_example_runs(backend, tmp_path):
    needs(backend)
    check = """
import numpy as np
reloaded = keras.saving.load_model("digits.keras")
x = np.random.default_rng(0).uniform(0, 16, (4, *splits.input_shape)).astype("float32")
np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
assert keras.backend.backend() == %r
print("README OK")
""" % backend
    out = run_on(backend, readme_example() + check, tmp_path)
    assert out.strip().splitlines()[-1] == "README OK"
    assert "unique_integers" in out or "total" in out  # metrics.summary printed
