"""The package as a library: one version, license and citation files, a light `import lqs_core` that still makes
`.keras` files of lqs loadable, and a wheel that ships the package data (issue #10)."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import lqs_core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lqs_core"
THESIS = "Learned Quantization Schemes for Data-centric ML Pipelines"


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def run_python(code, cwd=ROOT, timeout=300):
    """Run ``code`` in a fresh interpreter (this one's) with lqs_core from this checkout; returns its stdout. The
    warning lqs_core gives when it cannot register its layers is an error there (other libraries' warnings not)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-W", "error:lqs_core could not register:RuntimeWarning", "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# Metadata


def test_version_is_single_sourced():
    project = pyproject()
    assert project["project"]["name"] == "lqs-core"
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lqs_core.__version__"}
    # a literal assignment, which setuptools reads without importing the package (and TensorFlow)
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    literal = [
        n.value.value for n in tree.body
        if isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["__version__"]
        and isinstance(n.value, ast.Constant)
    ]
    assert literal == [lqs_core.__version__]
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)?", lqs_core.__version__)
    assert importlib.metadata.version("lqs-core") == lqs_core.__version__, (
        "the installed metadata is stale: reinstall (make install) after changing lqs_core.__version__"
    )


def test_distribution_matches_import_package():
    dist = importlib.metadata.distribution("lqs-core")
    assert dist.metadata["Name"].replace("-", "_").lower() == "lqs_core"
    extras = pyproject()["project"]["optional-dependencies"]
    assert {"cpu", "gpu", "workflow", "test", "dev"} <= set(extras)
    assert all(not d.startswith("lqs[") for deps in extras.values() for d in deps)
    assert any(d.startswith("lqs-core[") for d in extras["dev"])
    # TensorFlow only in the extras: its two builds must not be installed together
    assert not any(d.lower().startswith("tensorflow") for d in pyproject()["project"]["dependencies"])


def test_license_and_citation():
    project = pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the lqs authors" in text
    assert "Permission is hereby granted, free of charge" in text

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert str(cff["cff-version"]) == "1.2.0"
    for key in ("message", "title", "authors", "type", "license"):
        assert cff[key], key
    assert cff["license"] == "MIT" and cff["type"] == "software"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff.get("version", lqs_core.__version__) == lqs_core.__version__  # no second version to keep in step
    thesis = cff["preferred-citation"]
    assert thesis["type"] == "thesis" and thesis["title"] == THESIS and thesis["year"] == 2025
    assert thesis["thesis-type"] == "Master's thesis"
    assert thesis["authors"] == [{"family-names": "Chinbat", "given-names": "Anuun"}]
    assert thesis["institution"]["name"] == "Technische Universität Berlin"


# ---------------------------------------------------------------------------------------------------------------
# Import behaviour


def serializable_modules():
    """Modules of lqs_core that define a class registered with ``register_keras_serializable(package="lqs")``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if re.search(r"register_keras_serializable\(\s*package\s*=\s*[\"']lqs[\"']", path.read_text(encoding="utf-8")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A small model with QDense layers saved as .keras by lqs, and its predictions."""
    import keras
    import numpy as np

    from lqs_core.layers import QDense

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), QDense(5, granularity="rowwise", activation="relu"), QDense(3)])
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    folder = tmp_path_factory.mktemp("keras_file")
    path = folder / "model.keras"
    model.save(path)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", keras.ops.convert_to_numpy(model(x)))
    return path


LOAD_AND_COMPARE = """
import numpy as np
model = keras.saving.load_model("model.keras")
assert [type(l).__name__ for l in model.layers] == ["QDense", "QDense"], model.layers
np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(np.load("x.npy"))), np.load("y.npy"))
print("ok")
"""


@pytest.mark.backends  # the registration hook, under the suite's Keras backend
def test_import_is_light_and_registers_once_keras_is_imported(keras_file):
    modules = serializable_modules()
    assert "lqs_core.layers" in modules
    out = run_python(
        textwrap.dedent(f"""
        import importlib.util, sys
        import lqs_core, lqs_core.workflow
        if importlib.util.find_spec("lqs_core.spec") is not None:
            import lqs_core.spec
        heavy = [m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules]
        assert not heavy, heavy
        import keras
        missing = [m for m in {modules!r} if m not in sys.modules]
        assert not missing, ("imported keras, but not the modules that register lqs classes", missing)
        for name in ("QDense", "QConv2D"):
            assert keras.saving.get_registered_object("lqs>" + name) is getattr(lqs_core, name)
        assert not any(getattr(f, "_lqs_core_hook", False) for f in sys.meta_path)  # the hook removed itself
        """)
        + LOAD_AND_COMPARE,
        cwd=keras_file.parent,
    )
    assert out.strip() == "ok"


@pytest.mark.parametrize(
    "backend, package, extras",
    [("tensorflow", "tensorflow", ["lqs-core[cpu]", "lqs-core[gpu]"]),
     ("jax", "jax", ["lqs-core[jax]", "lqs-core[jax-cuda]"]),
     ("torch", "torch", ["lqs-core[torch]"])],
)
def test_missing_backend_names_the_extras(backend, package, extras, monkeypatch):
    """The configured Keras backend's package missing: importing the layers names the extra that installs it."""
    monkeypatch.setenv("KERAS_BACKEND", backend)
    out = run_python(
        f"""
        import sys
        sys.modules[{package!r}] = None  # as if the backend's package were not installed
        import lqs_core, lqs_core.workflow  # still fine
        assert lqs_core._configured_backend() == {backend!r}
        for attempt in ("from lqs_core import QDense", "import lqs_core.layers"):
            try:
                exec(attempt)
            except ModuleNotFoundError as e:
                assert e.name == {package!r} and all(x in str(e) for x in {extras!r}), str(e)
                assert {backend!r} in str(e) and "KERAS_BACKEND" in str(e), str(e)
            else:
                raise AssertionError(attempt + " did not raise")
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_configured_backend_is_read_as_keras_reads_it(tmp_path, monkeypatch):
    """KERAS_BACKEND, else keras.json in KERAS_HOME, else TensorFlow; without importing Keras."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    code = """
        import sys, lqs_core
        print(lqs_core._configured_backend(), "keras" in sys.modules)
        """
    assert run_python(code).split() == ["tensorflow", "False"]
    (tmp_path / "keras.json").write_text('{"backend": "jax", "floatx": "float32"}', encoding="utf-8")
    assert run_python(code).split() == ["jax", "False"]
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert run_python(code).split() == ["torch", "False"]


def test_failed_registration_warns_and_keras_still_imports(tmp_path):
    (tmp_path / "lqs_broken_probe.py").write_text("raise RuntimeError('broken on purpose')\n", encoding="utf-8")
    out = run_python(
        """
        import warnings
        import lqs_core
        lqs_core._SERIALIZABLE_MODULES += ("lqs_broken_probe",)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import keras  # must not raise
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert any("could not register" in m and "broken on purpose" in m for m in messages), messages
        assert keras.saving.get_registered_object("lqs>QDense") is not None  # the modules before it are registered
        print("ok")
        """,
        cwd=tmp_path,
    )
    assert out.strip() == "ok"


@pytest.mark.backends  # the registration hook, under the suite's Keras backend
@pytest.mark.parametrize(
    "imports",
    [
        "import keras, lqs_core",  # the case (lqs_core first: the test above)
        "import lqs_core, tensorflow, keras",  # TensorFlow imports Keras from its own __init__
        "import lqs_core.metrics, keras",  # through a module that imports Keras before lqs' classes are defined
    ],
)
def test_keras_file_loads_after_import_lqs_core_alone(keras_file, imports):
    assert run_python(imports + "\n" + LOAD_AND_COMPARE, cwd=keras_file.parent).strip() == "ok"


# ---------------------------------------------------------------------------------------------------------------
# The wheel


@pytest.mark.slow
def test_wheel_ships_package_data_and_license(tmp_path):
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    assert major >= 77, f"setuptools {setuptools.__version__} cannot build this project (>= 77, the test extra)"
    # build from a copy, so that the build leaves no build/ or *.egg-info in the checkout; add data files in a
    # subfolder of the package to check the package-data globs (other than the ones the package has today)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CITATION.cff"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "lqs_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    probes = ["lqs_core/_probe/schema.yaml", "lqs_core/_probe/deeper/notes.md", "lqs_core/probe.json"]
    for probe in probes:
        (src / probe).parent.mkdir(parents=True, exist_ok=True)
        (src / probe).write_text("{}\n", encoding="utf-8")
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("*.whl"))
    version = lqs_core.__version__
    assert [w.name for w in wheels] == [f"lqs_core-{version}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        metadata = whl.read(f"lqs_core-{version}.dist-info/METADATA").decode("utf-8")
    data = [str(p.relative_to(src)) for p in (src / "lqs_core").rglob("*") if p.suffix in (".yaml", ".json", ".md")]
    assert set(probes) <= set(data)
    missing = [n for n in data + ["lqs_core/__init__.py", "lqs_core/export.py", "lqs_core/layers.py"] if n not in names]
    assert not missing, missing
    assert f"lqs_core-{version}.dist-info/licenses/LICENSE" in names
    assert not any(n.startswith(("tests/", "notebooks/", "results/")) for n in names)
    assert "Name: lqs-core" in metadata and f"Version: {version}" in metadata
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: tensorflow")]
    assert requires and all("extra ==" in line for line in requires), requires
