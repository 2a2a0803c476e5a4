"""The GPU-machine scripts of issue #14 (gpu/): CIFAR-10 in parts (gpu/cifar10_data.py) and the full-budget training
launcher (gpu/cifar10_full.py). Fast: synthetic arrays for the transform, the parts and the manifest; the launcher's
argument checks and run list without training. The round trip of the real CIFAR-10 copy is marked slow and skipped
where the verified offline copy is absent."""

import hashlib
import importlib.util
import io
import json
import lzma
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
GPU = REPO / "gpu"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


data_script = _module("cifar10_data")
full = _module("cifar10_full")

SHARED = Path(os.environ.get("LQS_SHARED_DATA", "/work/shared/data/keras/datasets"))


# ---------------------------------------------------------------------------------------------------------------
# the lossless transform and the blob


@pytest.mark.parametrize("kind", ["random", "flat0", "flat255", "ramp", "checker"])
def test_residual_transform_round_trip(kind):
    rng = np.random.default_rng(0)
    shape = (7, 3, 32, 32)
    if kind == "random":
        x = rng.integers(0, 256, shape, dtype=np.uint8)
    elif kind == "flat0":
        x = np.zeros(shape, np.uint8)
    elif kind == "flat255":
        x = np.full(shape, 255, np.uint8)
    elif kind == "ramp":
        x = np.broadcast_to((np.arange(32)[None, :] * 8 + np.arange(32)[:, None] * 3) % 256, shape).astype(np.uint8)
    else:
        x = np.broadcast_to(((np.arange(32)[None, :] + np.arange(32)[:, None]) % 2) * 255, shape).astype(np.uint8)
    e = data_script.encode(x)
    assert e.dtype == np.uint8 and e.shape == x.shape
    assert np.array_equal(data_script.decode(e), x)


def test_residuals_of_smooth_images_are_small():
    """What the transform is for: a smooth image (63 distinct values) becomes a few small residuals, equal colour
    planes zeros (xz then compresses them)."""
    x = np.broadcast_to((np.arange(32)[None, :] + np.arange(32)[:, None]) * 2, (2, 3, 32, 32)).astype(np.uint8)
    e = data_script.encode(x)
    assert len(np.unique(x)) == 63 and len(np.unique(e)) <= 4
    assert not e[:, 1:].any()


def _synthetic_batches(n=20):
    rng = np.random.default_rng(1)
    return [(name, rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8))
            for name in data_script.BATCHES]


def test_blob_round_trip():
    batches = _synthetic_batches()
    back = data_script.from_blob(data_script.to_blob(batches))
    assert [b[0] for b in back] == list(data_script.BATCHES)
    for (n1, x1, y1), (n2, x2, y2) in zip(batches, back):
        assert n1 == n2 and np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_blob_refuses_foreign_data():
    with pytest.raises(data_script.PackError, match="magic"):
        data_script.from_blob(b"not a blob at all")


# ---------------------------------------------------------------------------------------------------------------
# parts, manifest, receive, reassemble


def _packed(tmp_path, **split):
    batches = _synthetic_batches()
    blob = data_script.to_blob(batches)
    out = tmp_path / "pack"
    base = data_script.compress_blob(blob, out, preset=0)
    (out / data_script.MANIFEST).write_text(json.dumps(base))
    manifest = data_script.split_parts(out, **split)
    return blob, out, manifest


@pytest.mark.parametrize("split", [{"parts": 3}, {"part_mib": 0.01}, {"parts": 1}])
def test_pack_split_receive_reassemble(tmp_path, split):
    blob, out, manifest = _packed(tmp_path, **split)
    if "parts" in split:
        assert len(manifest["parts"]) == split["parts"]
    else:
        assert all(p["bytes"] <= 0.01 * data_script.MIB for p in manifest["parts"])
    assert sum(p["bytes"] for p in manifest["parts"]) == manifest["xz_bytes"]
    staging = tmp_path / "staging"
    for k, part in enumerate(manifest["parts"], start=1):  # one call per part, the manifest in each
        carried = tmp_path / f"call{k}" / ".gpu_data"
        carried.mkdir(parents=True)
        (carried / data_script.MANIFEST).write_bytes((out / data_script.MANIFEST).read_bytes())
        (carried / part["file"]).write_bytes((out / part["file"]).read_bytes())
        missing = data_script.receive(carried, staging)
        assert missing == [p["file"] for p in manifest["parts"][k:]]
    data_script.check_parts(staging, manifest)
    xz = b"".join((staging / p["file"]).read_bytes() for p in manifest["parts"])
    assert hashlib.sha256(xz).hexdigest() == manifest["xz_sha256"]
    assert lzma.decompress(xz) == blob


def test_resplit_keeps_the_stream(tmp_path):
    blob, out, first = _packed(tmp_path, parts=2)
    second = data_script.split_parts(out, parts=4)
    assert second["xz_sha256"] == first["xz_sha256"] and len(second["parts"]) == 4
    assert lzma.decompress(b"".join((out / p["file"]).read_bytes() for p in second["parts"])) == blob
    assert sorted(p.name for p in out.glob(data_script.PART_PREFIX + "*")) == [p["file"] for p in second["parts"]]


def test_damaged_or_missing_parts_are_refused(tmp_path):
    blob, out, manifest = _packed(tmp_path, parts=3)
    staging = tmp_path / "staging"
    data_script.receive(out, staging)
    with pytest.raises(data_script.PackError, match="missing"):
        (staging / manifest["parts"][1]["file"]).unlink()
        data_script.check_parts(staging, manifest)
    data_script.receive(out, staging)
    path = staging / manifest["parts"][0]["file"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(data_script.PackError, match="sha256"):
        data_script.check_parts(staging, manifest)
    path.write_bytes(bytes(raw[:-1]))
    with pytest.raises(data_script.PackError, match="bytes"):
        data_script.check_parts(staging, manifest)
    with pytest.raises(data_script.PackError, match="unpack|parts missing|sha256|bytes"):
        data_script.unpack(staging, tmp_path / "data")


def test_parts_of_another_pack_are_refused(tmp_path):
    _, out_a, _ = _packed(tmp_path / "a", parts=2)
    staging = tmp_path / "staging"
    data_script.receive(out_a, staging)
    out_b = tmp_path / "b"
    out_b.mkdir()
    other = json.loads((out_a / data_script.MANIFEST).read_text())
    other["xz_sha256"] = "0" * 64
    (out_b / data_script.MANIFEST).write_text(json.dumps(other))
    with pytest.raises(data_script.PackError, match="two different packs"):
        data_script.receive(out_b, staging)


def test_fit_sizes_fill_each_call():
    mib = data_script.MIB
    sizes = data_script.fit_sizes(total=int(98.83 * mib), base=int(26.83 * mib), wheels=int(2.76 * mib))
    assert sum(sizes) == int(98.83 * mib) and len(sizes) == 3
    room = data_script.CALL_LIMIT - int(data_script.DEFAULT_MARGIN_MIB * mib) - int(26.83 * mib)
    assert sizes[0] + int(2.76 * mib) <= room and sizes[1] <= room
    with pytest.raises(data_script.PackError, match="no room"):
        data_script.fit_sizes(total=mib, base=63 * mib, wheels=mib)


def test_written_batches_pass_the_restricted_reader(tmp_path):
    """The batches written on the device use only the pickle globals lqs' loader admits."""
    from lqs_core import data

    batches = _synthetic_batches(5)
    root = data_script.write_batches(batches, tmp_path)
    for name, x, y in batches:
        got_x, got_y = data._read_cifar_batch(root / name, (root / name).read_bytes())
        assert np.array_equal(got_x, x) and list(got_y) == list(y)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar-10-batches-py").is_dir(), reason="no offline CIFAR-10 copy")
def test_real_cifar10_round_trip(tmp_path):
    """pack (fast preset) -> three parts -> receive -> unpack: the loader verifies the written copy (content sha256
    of lqs_core/datasets.json)."""
    manifest = data_script.pack(SHARED, tmp_path / "pack", preset=0, parts=3)
    staging = tmp_path / "staging"
    assert data_script.receive(tmp_path / "pack", staging) == []
    root = data_script.unpack(staging, tmp_path / "data")
    assert root == tmp_path / "data" / "cifar-10-batches-py"
    assert manifest["content_sha256"] == data_script.expected_content_sha256()


# ---------------------------------------------------------------------------------------------------------------
# the launcher: runs, arguments, time budget, import


def test_profile_runs_are_the_workflows():
    """The runs the launcher trains are the runs `make figures CONFIG=config/cifar10_gpu.yaml` looks for."""
    from lqs_core import spec
    from lqs_core.workflow import config as wconfig
    from lqs_core.workflow import sweep

    path = REPO / "config" / "cifar10_gpu.yaml"
    cfg = wconfig.load_config(path)
    expected = sweep.expand_runs(cfg)
    mine = full.profile_runs(full.read_profile(path))
    assert full.output_name(full.read_profile(path)) == wconfig.output_name(cfg) == "cifar10_gpu-jax"
    assert [(r.folder, r.run_id) for r in expected] == [(m[1], m[2]) for m in mine]
    assert [spec.RunConfig.from_dict(r.config).to_dict() for r in expected] == [m[3] for m in mine]
    configs = [spec.RunConfig.from_dict(m[3]) for m in mine]
    assert {(c.epochs, c.batch_size, c.learning_rate, c.seed, c.max_train, c.max_val) for c in configs} == {
        (100, 128, 1e-4, 42, None, None)}  # Table 4.1, all images
    assert [m[0] for m in mine] == ["float", "0", "1e-11", "1e-10", "1e-09", "1e-08"]
    assert {c.granularity for c in configs if c.quantized} == {"channelwise"}


def test_select_runs():
    runs = full.profile_runs(full.read_profile(full.DEFAULT_PROFILE))
    assert [r[0] for r in full.select_runs(runs, "1e-9, float")] == ["float", "1e-09"]  # profile order
    assert full.select_runs(runs, None) == runs
    for bad, match in (("1e-7", "not in the profile"), ("-1", ">= 0"), ("abc", "neither"), (",", "no run"),
                       ("nan", "finite")):
        with pytest.raises(ValueError, match=match):
            full.select_runs(runs, bad)


@pytest.mark.parametrize("argv, message", [
    ([], "--data-dir is required"),
    (["--data-dir", "/nonexistent/folder"], "is not a folder"),
    (["--synthetic", "--epochs", "0"], "--epochs must be >= 1"),
    (["--synthetic", "--max-train", "0"], "--max-train must be >= 1"),
    (["--synthetic", "--parallel", "0"], "--parallel must be >= 1"),
    (["--synthetic", "--budget-s", "10", "--save-margin-s", "20"], "larger than --save-margin-s"),
    (["--synthetic", "--budget-s", "nan"], "finite number"),
    (["--synthetic", "--grace-s", "-1"], "finite number >= 0"),
    (["--synthetic", "--runs", "1e-7"], "not in the profile"),
    (["--synthetic", "--profile", "/nonexistent.yaml"], "does not exist"),
])
def test_train_arguments_are_checked_before_anything_starts(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        full.main(["train", "--results-root", str(tmp_path / "r"), *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_worker_environment(monkeypatch):
    for name in ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "JAX_PLATFORMS"):
        monkeypatch.delenv(name, raising=False)
    env = full.worker_env("jax", 6, cpu=False, deterministic=True, cache_dir="/tmp/c")
    assert env["KERAS_BACKEND"] == "jax" and env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.150"
    assert "--xla_gpu_deterministic_ops=true" in env["XLA_FLAGS"] and env["JAX_COMPILATION_CACHE_DIR"] == "/tmp/c"
    assert str(REPO) in env["PYTHONPATH"].split(os.pathsep)
    cpu = full.worker_env("jax", 1, cpu=True, deterministic=False, cache_dir=None)
    assert cpu["JAX_PLATFORMS"] == "cpu" and "intra_op_parallelism_threads=1" in cpu["XLA_FLAGS"]
    assert cpu["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.750"


def test_time_budget_stops_before_the_deadline(monkeypatch):
    """Stops at the epoch end after which one more epoch (the slowest after the first, x1.2) would pass it."""
    now = [100.0]
    monkeypatch.setattr(full.time, "time", lambda: now[0])

    class Model:
        stop_training = False

    guard = full._time_budget_callback(deadline=200.0, start=100.0)
    guard.set_model(Model())
    for t in (140.0, 150.0, 160.0, 170.0):  # compile epoch 40 s, then 10 s epochs
        now[0] = t
        guard.on_epoch_end(0)
        assert not guard.model.stop_training
    now[0] = 180.0  # 180 + 12 = 192 <= 200: go on
    guard.on_epoch_end(0)
    assert not guard.model.stop_training
    now[0] = 190.0  # 190 + 12 > 200: stop
    guard.on_epoch_end(0)
    assert guard.model.stop_training and guard.stopped


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            raw = text.encode()
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/path.txt", "other_profile/runs/x/metrics.json",
                                    "cifar10_gpu-jax/figures/x.png"])
def test_import_refuses_members_outside_the_results_folders(tmp_path, member):
    tar = tmp_path / "r.tar.gz"
    _tar(tar, {member: "x"})
    with pytest.raises(ValueError, match="unexpected member"):
        full.import_results(tar, tmp_path / "results")
    assert not (tmp_path / "results").exists()
    assert full.main(["import", str(tar), "--results-dir", str(tmp_path / "results")]) == 1
