#!/usr/bin/env python3
"""CIFAR-10 at the thesis' full settings on one GPU, through Keras' JAX backend, in the project's run format.

Issue #14. Table 4.1: Adam 1e-4, batch 128, 100 epochs, all 50 000 training images, validation on the 10 000 test
images, seed 42; the float baseline and the channel-wise nested scheme at λ ∈ {0, 1e-11, 1e-10, 1e-9, 1e-8}
(from ``config/cifar10_gpu.yaml``). Each run is one process running :func:`lqs_core.training.train` (separate
processes share the one GPU, each with ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 0.9 / processes); each run is saved
with :meth:`lqs_core.results.RunResult.save` into ``<results-root>/<name>/{baselines,runs}/<run id>/`` (the folder
and run ids ``make figures CONFIG=config/cifar10_gpu.yaml`` looks for), so the results table, the figures and the
report take them like any other run.

A **time budget** (``--budget-s``, counted from the launcher's start) bounds the whole call: every run checks at
each epoch end whether one more epoch still ends before its deadline (budget minus ``--save-margin-s``), stops
cleanly if not, and is saved all the same, with what it did: ``history.csv`` has one row per epoch done,
``metrics.json``'s ``config.epochs`` and ``report.epochs`` are the epochs done, ``report.epochs_planned`` the
epochs asked for and ``report.stopped_by_time_budget`` whether the budget ended it (a run stopped after k epochs is
exactly the k-epoch run: nothing in training depends on the planned length, CIFAR-10 has no schedule). A run still
going at the hard limit (budget + ``--grace-s``) is killed and not saved.

Subcommands::

    # on the GPU machine (gpu/README.md has the whole call sequence):
    python3 gpu/cifar10_full.py train --data-dir /tmp/lqs_data --out $OUT --budget-s 270
    python3 gpu/cifar10_full.py train --synthetic --epochs 2 --out $OUT     # probe: random pixels, nothing saved
    # here, with what came back:
    python gpu/cifar10_full.py import /work/.device/<...>/cifar10_results.tar.gz
    make figures CONFIG=config/cifar10_gpu.yaml

``train`` writes under ``--out``: ``cifar10_results.tar.gz`` (the results folder without ``model.keras``),
``cifar10_logs.tar.gz`` (one log per run), ``summary.json`` (per run: status, epochs, accuracy, epoch times) and
``launcher.log`` — four files, one folder level, within what the device returns (at most 8 files).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python gpu/cifar10_full.py` from anywhere: lqs_core from this checkout
    sys.path.insert(0, str(REPO))

DEFAULT_PROFILE = REPO / "config" / "cifar10_gpu.yaml"
DATASET = "cifar10"
RESULTS_TAR = "cifar10_results.tar.gz"
LOGS_TAR = "cifar10_logs.tar.gz"
SUMMARY = "summary.json"
#: Bytes the device returns per file (its README: 16 MiB).
RETURN_LIMIT = 16 << 20


# --------------------------------------------------------------------------------------------------------------
# The runs: read from the profile without the workflow package (its jsonschema is not on the device); the tests
# check that they equal lqs_core.workflow.sweep.expand_runs of the same profile.


def read_profile(path) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        profile = yaml.safe_load(f)
    if not isinstance(profile, dict) or DATASET not in (profile.get("datasets") or {}):
        raise ValueError(f"{path}: not a profile with a '{DATASET}' dataset")
    if profile.get("__use_yte__"):
        raise ValueError(f"{path}: YTE templates are refused (profiles are plain YAML)")
    return profile


def _number(v):
    return float(v) if isinstance(v, str) else v  # YAML 1.1 reads 1e-10 (no dot) as a string


def output_name(profile: dict) -> str:
    """``<name>`` on TensorFlow, ``<name>-<backend>`` on another backend (lqs_core.workflow.config.output_name,
    for a profile whose only dataset is CIFAR-10)."""
    ds = profile["datasets"][DATASET]
    backend = ds.get("backend") or profile.get("backend") or "tensorflow"
    return profile["name"] if backend == "tensorflow" else f"{profile['name']}-{backend}"


def backend_of(profile: dict) -> str:
    ds = profile["datasets"][DATASET]
    return ds.get("backend") or profile.get("backend") or "tensorflow"


def profile_runs(profile: dict) -> list:
    """``[(label, folder, run id, RunConfig dict)]``: the float baseline(s), then the nested sweep of CIFAR-10, in
    the workflow's order (baselines per seed, then granularity × mode × λ × seed)."""
    from lqs_core import spec

    ds = profile["datasets"][DATASET]
    train = {k: _number(v) for k, v in (ds.get("train") or {}).items()}
    seeds = ds.get("seeds", profile["seeds"])
    out = []
    for seed in seeds:
        cfg = spec.RunConfig.from_dict({"dataset": DATASET, "scheme": "float", "seed": seed, **train})
        out.append(("float", "baselines", spec.run_id(cfg, training_suffixes=False), cfg.to_dict()))
    nested = ds.get("nested") or {}
    if ds.get("loss_terms") or ds.get("comparators"):
        raise ValueError("this script trains the float baseline and the nested scheme only; the profile has "
                         "loss_terms or comparators")
    for gran in nested.get("granularities") or ds["granularities"]:
        for mode in nested.get("modes") or ds.get("modes") or ["qat"]:
            if mode != "qat":
                raise ValueError("mode 'ptq' needs the float baseline first; this script trains qat runs only")
            for lam in nested.get("thresholds", []):
                for seed in seeds:
                    cfg = spec.RunConfig.from_dict({"dataset": DATASET, "scheme": "nested", "granularity": gran,
                                                    "mode": mode, "seed": seed, "threshold": float(_number(lam)),
                                                    **train})
                    out.append((f"{float(_number(lam)):g}", "runs", spec.run_id(cfg, training_suffixes=False),
                                cfg.to_dict()))
    return out


def select_runs(runs: list, which) -> list:
    """The runs named in ``which`` (``float`` and λ values, e.g. ``float,0,1e-11``; None: all), in profile order."""
    if which is None:
        return list(runs)
    wanted = []
    for item in str(which).split(","):
        item = item.strip()
        if not item:
            continue
        if item == "float":
            wanted.append("float")
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--runs: {item!r} is neither 'float' nor a λ value") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--runs: λ must be a finite number >= 0, got {item!r}")
        wanted.append(f"{value:g}")
    labels = [r[0] for r in runs]
    unknown = [w for w in wanted if w not in labels]
    if unknown:
        raise ValueError(f"--runs: {unknown} not in the profile's runs ({', '.join(dict.fromkeys(labels))})")
    if not wanted:
        raise ValueError("--runs: no run named")
    return [r for r in runs if r[0] in wanted]


# --------------------------------------------------------------------------------------------------------------
# Worker: one run in its own process


def _time_budget_callback(deadline: float, start: float):
    import keras

    class TimeBudget(keras.callbacks.Callback):
        """Stops ``fit`` at an epoch end when one more epoch would end after ``deadline`` (``time.time()``): the
        next epoch is estimated as the slowest epoch after the first (the first includes compilation) times 1.2."""

        def __init__(self):
            super().__init__()
            self.ends = [start]
            self.stopped = False

        def on_epoch_end(self, epoch, logs=None):
            now = time.time()
            self.ends.append(now)
            durations = [b - a for a, b in zip(self.ends, self.ends[1:])]
            steady = durations[1:] or durations
            if now + 1.2 * max(steady) > deadline:
                self.stopped = True
                self.model.stop_training = True

    return TimeBudget()


def _synthetic_load(real_load):
    """``lqs_core.data.load`` for the probe: random uint8 pixels of CIFAR-10's shapes and sizes (50 000 / 10 000
    or max_train / max_val), the same batch classes; no file is read."""
    import numpy as np

    from lqs_core import data

    def load(name, batch_size=32, seed=42, data_dir=None, max_train=None, max_val=None, augment=None,
             image_size=None):
        if name != DATASET:
            return real_load(name, batch_size, seed, data_dir, max_train, max_val, augment, image_size)
        rng = np.random.default_rng(seed)
        n_tr, n_va = max_train or 50000, max_val or 10000
        x_tr = rng.integers(0, 256, (n_tr, 32, 32, 3), dtype=np.uint8)
        x_va = rng.integers(0, 256, (n_va, 32, 32, 3), dtype=np.uint8)
        y_tr, y_va = rng.integers(0, 10, n_tr), rng.integers(0, 10, n_va)
        batches = data._batch_classes()["ArrayBatches"]
        train = batches(x_tr, y_tr, batch_size, seed, True)
        val = batches(x_va, y_va, batch_size, seed, False)
        return data.Splits(name, train, val, (32, 32, 3), 10, n_tr, n_va, ())

    return load


def worker(job: dict) -> int:
    """Train ``job['config']``; save it to ``job['out_dir']`` (not with ``synthetic``); print one JSON line."""
    import keras  # noqa: F401  (KERAS_BACKEND is in the environment: the launcher set it)

    from lqs_core import data, training
    from lqs_core.spec import RunConfig

    config = RunConfig.from_dict(job["config"])
    if keras.backend.backend() != job["backend"]:
        print(f"worker: Keras runs on {keras.backend.backend()!r}, the job asks for {job['backend']!r}",
              file=sys.stderr)
        return 2
    if job.get("synthetic"):
        data.load = _synthetic_load(data.load)  # the probe: the same train() on random pixels
    out_dir = job.get("out_dir")
    if out_dir and not job.get("synthetic"):
        os.makedirs(out_dir, exist_ok=True)
        probe = Path(out_dir) / ".write-check"
        probe.write_text("")
        probe.unlink()
    guard = _time_budget_callback(job["deadline"], time.time())
    device = ""
    if keras.backend.backend() == "jax":
        import jax

        device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    started = time.time()
    result = training.train(config, out_dir=None, verbose=1, callbacks=[guard])
    done = int(result.report["epochs"])
    result.report.update(epochs_planned=int(config.epochs), stopped_by_time_budget=bool(guard.stopped),
                         device=device)
    if done != config.epochs:
        result.config = config.replace(epochs=done)  # the run that happened (reproduces it with the same seed)
    info = {"run_id": job["run_id"], "epochs": done, "epochs_planned": int(config.epochs),
            "stopped_by_time_budget": bool(guard.stopped), "val_accuracy": float(result.report["val_accuracy"]),
            "train_seconds": float(result.report["train_seconds"]), "worker_seconds": time.time() - started,
            "epoch_seconds": [float(s) for s in result.history["epoch_seconds"]], "device": device}
    if config.quantized:
        info.update(unique_integers=result.report.get("unique_integers"), int_min=result.report.get("int_min"),
                    int_max=result.report.get("int_max"))
    if out_dir and not job.get("synthetic"):
        result.save(out_dir)
        info["saved"] = out_dir
    print("LQS_RESULT " + json.dumps(info), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------------------
# Launcher


def _log(msg: str, log_file=None) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if log_file is not None:
        log_file.write(line + "\n")
        log_file.flush()


def worker_env(backend: str, processes: int, cpu: bool, deterministic: bool, cache_dir) -> dict:
    env = dict(os.environ)
    env.update(KERAS_BACKEND=backend, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
    if backend == "jax":
        # Several processes on the one GPU: each takes a fixed share instead of JAX's default 75 %.
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{min(0.75, 0.9 / max(1, processes)):.3f}")
        if cache_dir:  # only compilations over 1 s (JAX's default): the train steps, one per run (no races)
            env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir))
        flags = env.get("XLA_FLAGS", "")
        if cpu:
            env["JAX_PLATFORMS"] = "cpu"
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        if deterministic:
            flags += " --xla_gpu_deterministic_ops=true"
        if flags.strip():
            env["XLA_FLAGS"] = flags.strip()
    elif cpu:
        env.update(OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    return env


def _stop(proc, sig) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][-160:] if lines else ""
    except OSError:
        return ""


def _result_of(path: Path):
    try:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("LQS_RESULT "):
                return json.loads(line[len("LQS_RESULT "):])
    except OSError:
        pass
    return None


def _tar(out_path: Path, root: Path, members, skip=()) -> int:
    """``members`` (paths relative to ``root``) into a gzip tar; files named in ``skip`` left out; returns bytes."""
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for m in members:
            tar.add(root / m, arcname=str(m), filter=lambda ti: None if Path(ti.name).name in skip else ti)
    os.replace(tmp, out_path)
    return out_path.stat().st_size


def launch(args) -> int:
    t0 = time.time()
    budget = float(args.budget_s)
    deadline = t0 + budget - float(args.save_margin_s)
    hard = t0 + budget + float(args.grace_s)
    profile = read_profile(args.profile)
    backend = args.backend or backend_of(profile)
    name = profile["name"] if backend == "tensorflow" else f"{profile['name']}-{backend}"
    runs = select_runs(profile_runs(profile), args.runs)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("max_train", args.max_train), ("max_val", args.max_val))
                 if v is not None}
    results_root = Path(args.results_root)
    results = results_root / name
    out = Path(args.out) if args.out else None
    log_dir = Path(args.log_dir) if args.log_dir else (results_root / "logs" / name)
    for d in (results, log_dir) + ((out,) if out else ()):
        d.mkdir(parents=True, exist_ok=True)
    launcher_log = open((out or log_dir) / "launcher.log", "a", encoding="utf-8")
    processes = min(args.parallel or len(runs), len(runs))
    data_dir = None if args.synthetic else str(Path(args.data_dir).resolve())
    what = "probe: random pixels, nothing saved" if args.synthetic else f"data {data_dir}"
    _log(f"{len(runs)} runs into {results} ({what}); backend {backend}; {processes} processes at a time; budget "
         f"{budget:.0f} s (runs stop after the epoch that would end past {budget - args.save_margin_s:.0f} s; killed "
         f"at {budget + args.grace_s:.0f} s)", launcher_log)
    if not args.synthetic:
        from lqs_core import data  # verify once here (fast: the file checksums are known), not six times in parallel

        root = data.fetch(DATASET, data_dir=data_dir)
        marker = results / "data" / f"{DATASET}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"dataset": DATASET, "path": str(root)}) + "\n")  # as the workflow's fetch rule
    env = worker_env(backend, processes, args.cpu, args.deterministic, args.jax_cache)
    pending = []
    for label, folder, rid, cfg in runs:
        cfg = {**cfg, **overrides, "data_dir": data_dir}
        job = {"run_id": rid, "label": label, "config": cfg, "backend": backend, "deadline": deadline,
               "synthetic": bool(args.synthetic), "out_dir": None if args.synthetic else str(results / folder / rid)}
        pending.append(job)
    running, finished = {}, []
    last_status = time.time()
    try:
        while pending or running:
            now = time.time()
            while pending and len(running) < processes:
                job = pending.pop(0)
                if now > deadline - args.min_start_s:
                    finished.append({"run_id": job["run_id"], "status": "not started (budget)"})
                    _log(f"{job['run_id']}: not started, too little of the budget left", launcher_log)
                    continue
                log_path = log_dir / f"{job['run_id']}.log"
                log_f = open(log_path, "w", encoding="utf-8")
                proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker", json.dumps(job)],
                                        stdout=log_f, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                                        start_new_session=True)
                running[proc.pid] = (proc, job, log_path, log_f, now)
                _log(f"start {job['run_id']} (pid {proc.pid})", launcher_log)
            for pid, (proc, job, log_path, log_f, started) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log_f.close()
                del running[pid]
                info = _result_of(log_path) or {}
                ok = rc == 0 and (args.synthetic or "saved" in info)
                info.update(run_id=job["run_id"], status="saved" if ok and not args.synthetic else
                            ("probed" if ok else f"failed (exit {rc})"), seconds=round(time.time() - started, 1))
                finished.append(info)
                if "val_accuracy" in info:
                    msg = (f"{job['run_id']}: {info['status']}, epochs {info['epochs']}/{info['epochs_planned']}"
                           f"{' (time budget)' if info['stopped_by_time_budget'] else ''}, val acc "
                           f"{100 * info['val_accuracy']:.2f}%, {info['seconds']:.0f} s")
                else:
                    msg = f"{job['run_id']}: {info['status']}; log {log_path}: {_last_line(log_path)}"
                _log(msg, launcher_log)
            if time.time() > hard:
                for pid, (proc, job, log_path, log_f, started) in list(running.items()):
                    _log(f"{job['run_id']}: killed at the hard limit ({budget + args.grace_s:.0f} s); not saved",
                         launcher_log)
                    _stop(proc, signal.SIGTERM)
                time.sleep(3)
                for pid, (proc, job, log_path, log_f, started) in list(running.items()):
                    _stop(proc, signal.SIGKILL)
                    proc.wait()
                    log_f.close()
                    finished.append({"run_id": job["run_id"], "status": "killed (hard limit)"})
                running.clear()
                break
            if time.time() - last_status >= args.status_every_s and running:
                last_status = time.time()
                for proc, job, log_path, _, _ in running.values():
                    _log(f"  {job['run_id']}: {_last_line(log_path)}", launcher_log)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for proc, *_ in running.values():
            _stop(proc, signal.SIGKILL)
        raise
    wall = time.time() - t0
    steady = sorted(s for r in finished for s in (r.get("epoch_seconds") or [])[1:])
    planned = int(runs[0][3]["epochs"])
    summary = {"profile": str(args.profile), "results": name, "backend": backend, "budget_s": budget,
               "wall_seconds": round(wall, 1), "processes": processes, "synthetic": bool(args.synthetic),
               "overrides": overrides, "runs": finished}
    if steady:
        median = steady[len(steady) // 2]
        summary.update(steady_epoch_seconds_median=round(median, 3),
                       projected_seconds_profile_epochs=round(planned * median, 1))
        _log(f"steady epoch (every epoch after the first, all runs): median {median:.2f} s with {processes} "
             f"processes side by side -> {planned} epochs (the profile's) take about {planned * median:.0f} s at "
             f"these sizes (+ start-up and compilation)", launcher_log)
    if not args.synthetic:
        summary["gpu"] = _nvidia_smi()
    text = json.dumps(summary, indent=2) + "\n"
    (log_dir / SUMMARY).write_text(text)
    if out:
        (out / SUMMARY).write_text(text)
        if not args.synthetic:
            members = [p.relative_to(results_root) for p in sorted(results.iterdir())]
            size = _tar(out / RESULTS_TAR, results_root, members, skip=() if args.with_models else ("model.keras",))
            if size > RETURN_LIMIT:
                _log(f"warning: {RESULTS_TAR} is {size / 2**20:.1f} MiB, above the 16 MiB a returned file may have",
                     launcher_log)
        _tar(out / LOGS_TAR, log_dir, [p.name for p in sorted(log_dir.glob("*.log"))])
    saved = sum(1 for r in finished if r.get("status") in ("saved", "probed"))
    _log(f"done in {wall:.0f} s: {saved} of {len(runs)} runs {'probed' if args.synthetic else 'saved'}"
         + (f"; results: {out / RESULTS_TAR}" if out and not args.synthetic else ""), launcher_log)
    launcher_log.close()
    return 0 if saved == len(runs) else 1


def _nvidia_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ""
    try:
        return subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------------------------------------------
# Import (here): the returned tarball into results/


def import_results(tar_path, results_dir, force: bool = False, profile_path=DEFAULT_PROFILE) -> list:
    """Extract ``tar_path`` (written by ``train``) into ``results_dir``, refusing anything outside
    ``<name>/{runs,baselines,data}/``; every run folder must load with :func:`lqs_core.results.load_result`.
    Returns the run folders imported."""
    from lqs_core.results import load_result

    name = output_name(read_profile(profile_path))
    results_dir = Path(results_dir)
    with tarfile.open(tar_path, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            parts = Path(m.name).parts
            if (m.name.startswith("/") or ".." in parts or not parts or parts[0] != name
                    or (len(parts) > 1 and parts[1] not in ("runs", "baselines", "data"))
                    or not (m.isfile() or m.isdir())):
                raise ValueError(f"{tar_path}: unexpected member {m.name!r} (expected {name}/runs|baselines|data/...)")
        run_dirs = sorted({Path(*Path(m.name).parts[:3]) for m in members
                           if len(Path(m.name).parts) > 3 and Path(m.name).parts[1] in ("runs", "baselines")})
        existing = [d for d in run_dirs if (results_dir / d).exists()]
        if existing and not force:
            raise FileExistsError(f"already in {results_dir}: {', '.join(map(str, existing))} (--force replaces them)")
        for d in existing:
            shutil.rmtree(results_dir / d)
        try:
            tar.extractall(results_dir, members=members, filter="data")
        except TypeError:  # Python without extraction filters (checked above)
            tar.extractall(results_dir, members=members)
    for d in run_dirs:
        load_result(results_dir / d, load_model=False)
    return [results_dir / d for d in run_dirs]


# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the profile's CIFAR-10 runs side by side within a time budget")
    t.add_argument("--profile", default=str(DEFAULT_PROFILE), help="experiment profile (default %(default)s)")
    t.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (gpu/cifar10_data.py unpack writes one)")
    t.add_argument("--synthetic", action="store_true",
                   help="probe: the same training on random pixels of CIFAR-10's shapes; times epochs, saves nothing")
    t.add_argument("--results-root", default="/tmp/lqs_results",
                   help="where <name>/{runs,baselines}/ are written (default %(default)s)")
    t.add_argument("--out", help="folder for the returned files (results and logs tarballs, summary.json); $OUT")
    t.add_argument("--log-dir", help="one log per run (default <results-root>/logs/<name>)")
    t.add_argument("--runs", help="subset: 'float' and λ values, comma-separated (default: all of the profile)")
    t.add_argument("--epochs", type=int, help="epochs per run (default: the profile's, 100)")
    t.add_argument("--max-train", type=int, help="first N training images (tests; default all 50 000)")
    t.add_argument("--max-val", type=int, help="first N validation images (tests; default all 10 000)")
    t.add_argument("--budget-s", type=float, default=270.0,
                   help="wall-clock budget of the whole launcher in seconds (default %(default)s)")
    t.add_argument("--save-margin-s", type=float, default=20.0,
                   help="a run's last epoch must end this long before the budget, to save (default %(default)s)")
    t.add_argument("--grace-s", type=float, default=25.0,
                   help="runs still going this long after the budget are killed, unsaved (default %(default)s)")
    t.add_argument("--min-start-s", type=float, default=60.0,
                   help="a queued run is not started with less than this left (default %(default)s)")
    t.add_argument("--parallel", type=int, help="processes at a time (default: all runs at once)")
    t.add_argument("--backend", choices=("jax", "torch", "tensorflow"), help="override the profile's backend")
    t.add_argument("--cpu", action="store_true", help="CPU test: JAX_PLATFORMS=cpu, one thread per process")
    t.add_argument("--deterministic", action="store_true",
                   help="XLA_FLAGS=--xla_gpu_deterministic_ops=true (repeatable on the same GPU; maybe slower)")
    t.add_argument("--jax-cache", default="/tmp/lqs_jax_cache",
                   help="JAX's persistent compilation cache (a rerun or the run after a probe compiles nothing)")
    t.add_argument("--with-models", action="store_true", help="put model.keras into the results tarball too")
    t.add_argument("--status-every-s", type=float, default=30.0, help="print each run's last line this often")
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("job")
    i = sub.add_parser("import", help="here: the returned results tarball into results/ (each run checked)")
    i.add_argument("tarball")
    i.add_argument("--results-dir", default=str(REPO / "results"))
    i.add_argument("--profile", default=str(DEFAULT_PROFILE))
    i.add_argument("--force", action="store_true", help="replace run folders that exist already")
    return ap


def check_train_args(ap: argparse.ArgumentParser, args) -> None:
    """Refuse bad arguments before anything starts (argparse's error: exit status 2)."""
    if not args.synthetic and not args.data_dir:
        ap.error("--data-dir is required (or --synthetic for the probe)")
    if args.data_dir and not Path(args.data_dir).is_dir():
        ap.error(f"--data-dir {args.data_dir!r} is not a folder")
    for name in ("epochs", "max_train", "max_val", "parallel"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("budget_s", "save_margin_s", "grace_s", "min_start_s", "status_every_s"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            ap.error(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if args.budget_s <= args.save_margin_s:
        ap.error(f"--budget-s ({args.budget_s:g}) must be larger than --save-margin-s ({args.save_margin_s:g})")
    if not Path(args.profile).is_file():
        ap.error(f"--profile {args.profile!r} does not exist")
    try:
        select_runs(profile_runs(read_profile(args.profile)), args.runs)
    except ValueError as e:
        ap.error(str(e))


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd == "worker":
        return worker(json.loads(args.job))
    if args.cmd == "import":
        try:
            dirs = import_results(args.tarball, args.results_dir, args.force, args.profile)
        except (FileExistsError, ValueError, tarfile.TarError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"imported {len(dirs)} runs into {args.results_dir}:")
        for d in dirs:
            print(f"  {d}")
        print(f"next: make figures CONFIG={os.path.relpath(args.profile, REPO)}")
        return 0
    check_train_args(ap, args)
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
