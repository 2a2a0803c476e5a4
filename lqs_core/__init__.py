"""lqs_core: Keras 3 layers that learn their own quantization scale (Learned Quantization Schemes).

Modules (one job each; the table is docs/layout.md): ``spec`` (the run vocabulary and run ids), ``quantizers``
(the nested quantizer, fixed-bit, LSQ, CGMQ; one registry), ``loss_terms`` / ``losses`` (the loss-term scheme),
``granularity`` (scale shapes), ``layers`` (QDense, QConv2D), ``procedures`` (PTQ, layer importance, CGMQ budget),
``models``, ``metrics``, ``export``, ``data``, ``training`` / ``results`` (one run and its files), ``provenance``,
``workflow`` (the reproduction's helpers), ``report``.

For your own model: ``lqs_core.quantize_model(model, "nested", granularity="outputwise", threshold=1e-10)``
(``convert``: every Dense/Conv/DepthwiseConv/SeparableConv/EinsumDense/Embedding layer quantized, float weights
copied in), ``lqs_core.QuantizationLogger()`` (the integer statistics in ``model.fit``'s logs, ``callbacks``),
``print(lqs_core.summary(model))`` (every layer and the whole model's sizes, ``model_summary``), the integer file
(``export``, format in ``intfile``, codings in ``entropy``) and ``lqs_core.litert.export_litert`` (int8 LiteRT).

``import lqs_core`` is light: it imports neither TensorFlow nor Keras (the Snakefile imports ``lqs_core.workflow``
and ``lqs_core.spec`` at parse time). The package's main names (``QDense``, ``QConv2D``, ``NestedQuantizer``,
``QuantizedLayer``) are imported on first use. Once Keras is imported too, in either order, lqs' layers and
quantizers are registered with Keras' serialization, so ``keras.saving.load_model("model.keras")`` works after
``import keras, lqs_core`` alone (see :func:`_register`).

The layers and quantizers are written against ``keras.ops`` and run on the Keras 3 backends TensorFlow (the
reference: the reproduction's numbers are TensorFlow's), JAX and PyTorch — whichever Keras is configured for
(``KERAS_BACKEND``, else ``keras.json``, else TensorFlow). The package leaves the backend to its extras:
``pip install "lqs-core[cpu]"`` / ``"lqs-core[gpu]"`` (TensorFlow), ``"lqs-core[jax]"`` / ``"lqs-core[jax-cuda]"``
(JAX) or ``"lqs-core[torch]"`` (PyTorch), or to an installed backend. When the configured backend's package is not
installed, importing the layers raises a ``ModuleNotFoundError`` that names the extra to install.
"""

import importlib
import importlib.util
import json
import os
import pkgutil
import sys
import threading
import warnings

# The only place the version is written: pyproject.toml reads it from here ([tool.setuptools.dynamic]), statically.
__version__ = "0.1.0"

# Imported on first use, so `import lqs_core.workflow` (the Snakefile's helpers) does not pay for Keras.
_LAZY = {"NestedQuantizer": "lqs_core.quantizers", "QDense": "lqs_core.layers", "QConv2D": "lqs_core.layers",
         "QuantizedLayer": "lqs_core.layers", "QuantizedWrapper": "lqs_core.layers",
         "quantize_model": "lqs_core.convert", "summary": "lqs_core.model_summary",
         "QuantizationLogger": "lqs_core.callbacks"}
__all__ = [*_LAZY, "__version__"]

#: Modules whose import registers lqs' Keras serializables (the classes decorated with
#: ``@keras.saving.register_keras_serializable(package="lqs")``): the host layers, which import the nested
#: quantizer, the quantizer packages (the comparator quantizers) and ``convert`` (QuantizedMultiHeadAttention). A
#: package's submodules are imported too, and a name that no longer exists is skipped, so that moving a quantizer
#: within these packages needs no change here.
#: tests/test_packaging.py checks that every module defining such a class is imported by :func:`_register`: when
#: one moves elsewhere, add its module (or package) to this tuple.
_SERIALIZABLE_MODULES = ("lqs_core.layers", "lqs_core.quantizers", "lqs_core.loss_terms", "lqs_core.convert")

#: Modules that cannot be imported without the configured Keras backend: importing them without it raises the
#: message of :func:`_require_backend`.
_NEEDS_BACKEND = frozenset({"lqs_core.layers", "lqs_core.quantizers", "lqs_core.loss_terms"})

#: The Keras backends lqs runs on: backend name -> (the package it needs, how to install it).
_BACKENDS = {
    "tensorflow": ("tensorflow", "pip install 'lqs-core[cpu]' (the CPU-only build) or pip install 'lqs-core[gpu]' "
                                 "(with CUDA, Linux), or install tensorflow>=2.16 yourself. In a source checkout, "
                                 "`make install` (TF=cpu or TF=gpu) does it"),
    "jax": ("jax", "pip install 'lqs-core[jax]' (CPU) or pip install 'lqs-core[jax-cuda]' (CUDA 12, Linux), or "
                   "install jax>=0.4.30 yourself"),
    "torch": ("torch", "pip install 'lqs-core[torch]', or install torch>=2.3 yourself (PyPI's default Linux wheel "
                       "brings several GB of CUDA libraries; the CPU-only wheel is on "
                       "https://download.pytorch.org/whl/cpu)"),
}


def _keras_dir() -> str:
    """Keras' configuration folder, found as Keras finds it (``KERAS_HOME``, else ``~/.keras`` or ``/tmp/.keras``)."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def _configured_backend() -> str:
    """The Keras backend in use (Keras imported) or that Keras will use: ``KERAS_BACKEND``, else ``keras.json``'s
    ``backend``, else ``"tensorflow"`` — without importing Keras."""
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    if callable(backend):
        try:
            return str(backend())
        except Exception:  # noqa: BLE001 - Keras half-imported: decide as Keras will
            pass
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    try:
        with open(os.path.join(_keras_dir(), "keras.json"), encoding="utf-8") as f:
            return str(json.load(f).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _has_module(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _has_backend() -> bool:
    """Whether the configured Keras backend's package can be imported (other backends: Keras decides)."""
    backend = _configured_backend()
    return backend not in _BACKENDS or _has_module(_BACKENDS[backend][0])


def _backend_missing_message(backend: str) -> str:
    package, install = _BACKENDS[backend]
    return (f"lqs_core's layers and quantizers run on the configured Keras backend, {backend!r} (KERAS_BACKEND or "
            f"keras.json), and its package `{package}` is not installed. Install it: {install}. Or choose an "
            f"installed backend with KERAS_BACKEND (lqs runs on {', '.join(_BACKENDS)}).")


def _require_backend() -> None:
    """Raise a ``ModuleNotFoundError`` naming the extra to install if the configured backend cannot be imported."""
    backend = _configured_backend()
    if backend in _BACKENDS and not _has_backend():
        raise ModuleNotFoundError(_backend_missing_message(backend), name=_BACKENDS[backend][0])


def __getattr__(name):
    if name in _LAZY:
        _require_backend()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lqs_core' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


def _register() -> None:
    """Import every module that registers lqs' classes with Keras' serialization (idempotent; imports Keras and
    its backend). Called once Keras is imported; see :data:`_SERIALIZABLE_MODULES`."""
    for name in _SERIALIZABLE_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        for info in pkgutil.iter_modules(getattr(module, "__path__", None) or [], prefix=f"{name}."):
            importlib.import_module(info.name)


def _register_now() -> bool:
    """:func:`_register`, unless the backend's package is missing (lqs' layers cannot be used then); a failure
    becomes a warning, so that it never breaks the ``import keras`` that triggered it. True if done."""
    if not _has_backend():
        return False
    try:
        _register()
    except Exception as e:  # noqa: BLE001 - reported, not raised: the user's own import of Keras must go on
        warnings.warn(
            f"lqs_core could not register its Keras layers ({type(e).__name__}: {e}); loading a .keras file that "
            "contains them needs `import lqs_core.layers` first.",
            RuntimeWarning,
            stacklevel=3,
        )
    return True


# ---------------------------------------------------------------------------------------------------------------
# Registration once Keras is imported, without importing Keras here.
#
# A `sys.meta_path` finder that watches the imports of `keras`, `tensorflow` and `lqs_core.*` only (every other name
# returns None at once). It lets the other finders find them and wraps their loader, so that it knows when such an
# import ends. At the end of the outermost watched import, if Keras is then imported, it removes itself and calls
# `_register()`. Waiting for the outermost import matters: TensorFlow imports Keras from its own __init__, and
# `lqs_core.layers` imports Keras before it defines its classes, so registering right after Keras' own import could
# import half-initialized modules. The wrapped loader hands each module its real loader before executing it, so the
# modules themselves (importlib.resources, inspect, reload) never see the wrapper.


class _Loader:
    def __init__(self, loader, hook):
        self._loader, self._hook = loader, hook

    def __getattr__(self, name):  # everything else (get_code, is_package, get_resource_reader, ...) as the real one
        if name == "_loader":
            raise AttributeError(name)
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._hook._enter()
        try:
            self._loader.exec_module(module)
        finally:
            outermost = self._hook._leave()
        if outermost:
            self._hook._import_done()


class _KerasImportHook:
    _lqs_core_hook = True  # found again after importlib.reload(lqs_core), which makes a new class
    _WATCHED = ("keras", "tensorflow")

    def __init__(self):
        self._local = threading.local()

    def _enter(self):
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def _leave(self) -> bool:
        self._local.depth -= 1
        return self._local.depth == 0

    def _import_done(self):
        if "keras" not in sys.modules or not _has_backend():
            return  # not yet; or the backend's package is missing: stay, so that importing the layers names the extra
        try:
            sys.meta_path.remove(self)
        except ValueError:
            return  # removed already (another thread registers)
        _register_now()

    def find_spec(self, name, path=None, target=None):
        if name not in self._WATCHED and not name.startswith("lqs_core."):
            return None
        if name in _NEEDS_BACKEND:
            _require_backend()
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, self)
        return spec


def _install() -> None:
    if "keras" in sys.modules and _register_now():
        return  # Keras came first
    if not any(getattr(finder, "_lqs_core_hook", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


_install()
