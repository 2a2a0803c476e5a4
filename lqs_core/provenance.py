"""What made a run: the CPU code path pinned for reproducible numbers, and the machine and versions recorded.

TensorFlow's CPU kernels (oneDNN) pick their instruction set at run time: the same run gives different numbers on
an AVX-512 machine than on an AVX2 one (float sums in another order). ``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN at
AVX2, so every x86-64 machine with AVX2 computes the same numbers; it must be in the environment before TensorFlow
is imported. :func:`pin_cpu` sets it (unless the user set it), :func:`record` describes what a run ran on, and
:func:`determinism` what keeps a run repeatable on its Keras backend (TensorFlow's op determinism, PyTorch's
deterministic algorithms, JAX/XLA's platform and flags).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Dict, MutableMapping, Optional

from lqs_core import __version__

#: The instruction set oneDNN is capped at where runs are made (workflow jobs, tests, benchmarks, notebooks).
PINNED_ISA = "AVX2"
#: Environment variables that change the numbers of a CPU run; recorded with every run.
PINNING_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS",
                     "CUBLAS_WORKSPACE_CONFIG")


def pin_cpu(environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """Cap oneDNN at :data:`PINNED_ISA` unless ``ONEDNN_MAX_CPU_ISA`` is already set; return the pinning in force.

    Call it before TensorFlow is imported (afterwards oneDNN has chosen its code path and this changes nothing;
    :func:`record` then reports ``"pinned_before_import": False``).
    """
    env = os.environ if environ is None else environ
    env.setdefault("ONEDNN_MAX_CPU_ISA", PINNED_ISA)
    return {k: env[k] for k in PINNING_VARIABLES if k in env}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def instruction_set() -> str:
    """The widest x86 vector instruction set of this CPU: ``AVX512``, ``AVX2``, ``AVX``, ``SSE4.2`` or the machine."""
    flags = _cpu_flags()
    for name, flag in (("AVX512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx"), ("SSE4.2", "sse4_2")):
        if flag in flags:
            return name
    return platform.machine()


def _version(module: str) -> Optional[str]:
    mod = sys.modules.get(module)
    return getattr(mod, "__version__", None) if mod is not None else None


def determinism() -> dict:
    """The determinism switches in force for Keras' backend (before Keras is imported: for each backend module this
    process has imported; nothing is imported here): ``tensorflow_op_determinism``
    (``tf.config.experimental.enable_op_determinism``), ``torch_deterministic_algorithms`` (``torch.use_deterministic_algorithms``; ``"warn_only"`` when it only warns),
    ``jax_platform`` (XLA on the CPU is deterministic; on a GPU it needs ``XLA_FLAGS`` with
    ``--xla_gpu_deterministic_ops=true``, recorded under ``pinning``)."""
    out = {}
    keras = sys.modules.get("keras")
    try:
        backend = keras.backend.backend() if keras is not None else None
    except AttributeError:  # Keras half-imported
        backend = None
    if backend in (None, "tensorflow") and sys.modules.get("tensorflow") is not None:
        try:
            from tensorflow.python.framework import config as tf_config

            out["tensorflow_op_determinism"] = bool(tf_config.is_op_determinism_enabled())
        except (ImportError, AttributeError):
            pass
    torch = sys.modules.get("torch") if backend in (None, "torch") else None
    if torch is not None and hasattr(torch, "are_deterministic_algorithms_enabled"):
        enabled = bool(torch.are_deterministic_algorithms_enabled())
        if enabled and torch.is_deterministic_algorithms_warn_only_enabled():
            enabled = "warn_only"
        out["torch_deterministic_algorithms"] = enabled
    jax = sys.modules.get("jax") if backend in (None, "jax") else None
    if jax is not None and hasattr(jax, "default_backend"):
        try:
            out["jax_platform"] = str(jax.default_backend())
        except RuntimeError:
            pass
    return out


def record() -> dict:
    """What this process computes on: CPU model and instruction set, backend and versions, devices, pinning."""
    env = {k: os.environ[k] for k in PINNING_VARIABLES if k in os.environ}
    out = {
        "cpu": _cpu_model(),
        "cpu_instruction_set": instruction_set(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "lqs": __version__,
        "numpy": _version("numpy"),
        "keras": _version("keras"),
        "tensorflow": _version("tensorflow"),
        "jax": _version("jax"),
        "torch": _version("torch"),
        "backend": None,
        "devices": [],
        "pinning": env,
        "determinism": determinism(),
    }
    if "keras" in sys.modules:
        out["backend"] = sys.modules["keras"].backend.backend()
    if out["backend"] == "jax" and "jax" in sys.modules:
        out["devices"] = [f"{d.platform}:{d.id}" for d in sys.modules["jax"].devices()]
    elif out["backend"] == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["devices"] = ["cpu"] + [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    elif "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        out["devices"] = [d.name for d in tf.config.list_logical_devices()]
    return {k: v for k, v in out.items() if v is not None}


__all__ = ["PINNED_ISA", "PINNING_VARIABLES", "determinism", "instruction_set", "pin_cpu", "record"]
