"""Resumable training (lqs_core.checkpoint): a training killed with SIGKILL mid-run and started again with the same
call ends bit-identical to an uninterrupted run — metrics, history.csv (timing columns aside), the integer file.

Each case trains in a subprocess; the parent kills it (SIGKILL, no warning) as soon as its checkpoint records at
least ``kill_after`` finished epochs — so the kill lands at an arbitrary point of a later epoch — then runs the same
command again to the end, and compares with an uninterrupted run of the same config in another folder.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lqs_core.checkpoint import CHECKPOINT_FILE, decode_rows, encode_rows

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "keras" / "datasets"

TRAIN = """
import json, sys
from lqs_core.spec import RunConfig
from lqs_core.training import train
train(RunConfig.from_dict(json.loads(sys.argv[1])), out_dir=sys.argv[2], verbose=1)
"""

#: Columns that measure time (they differ between any two runs, interrupted or not).
TIMING = {"epoch_seconds", "train_seconds"}


def _env():
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    env["OMP_NUM_THREADS"] = env["TF_NUM_INTRAOP_THREADS"] = "1"
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def _command(config: dict, out_dir: Path):
    return [sys.executable, "-c", TRAIN, json.dumps(config), str(out_dir)]


def _epochs_in_checkpoint(path: Path) -> int:
    try:
        with zipfile.ZipFile(path) as z, z.open("meta.json.npy") as member:
            meta = json.loads(np.lib.format.read_array(member).tobytes())
        return int(meta["epochs_done"])
    except Exception:  # being replaced or not a complete file yet
        return 0


def _run(config: dict, out_dir: Path, timeout: float = 600):
    done = subprocess.run(_command(config, out_dir), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _run_and_kill(config: dict, out_dir: Path, kill_after: int, timeout: float = 600) -> int:
    """Start the training, SIGKILL it once its checkpoint has ``kill_after`` epochs; returns the epochs it had."""
    proc = subprocess.Popen(_command(config, out_dir), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    checkpoint = out_dir / CHECKPOINT_FILE
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the training ended before it could be killed:\n{proc.stderr.read()[-3000:]}")
            done = _epochs_in_checkpoint(checkpoint) if checkpoint.exists() else 0
            if done >= kill_after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return done
            time.sleep(0.01)
        pytest.fail("no checkpoint appeared in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _compare(resumed: Path, straight: Path):
    a = json.loads((resumed / "metrics.json").read_text())
    b = json.loads((straight / "metrics.json").read_text())
    for key in TIMING:
        a["report"].pop(key, None)
        b["report"].pop(key, None)
    assert a["report"] == b["report"]
    assert a["config"] == b["config"]
    ha = pd.read_csv(resumed / "history.csv")
    hb = pd.read_csv(straight / "history.csv")
    ta = (resumed / "history.csv").read_text().splitlines()
    tb = (straight / "history.csv").read_text().splitlines()
    assert list(ha.columns) == list(hb.columns) and len(ta) == len(tb)
    keep = [c for c in ha.columns if c not in TIMING]
    pd.testing.assert_frame_equal(ha[keep], hb[keep], check_exact=True)
    # and the text of every non-timing cell, as written (no float re-formatting hides a difference)
    cols = ta[0].split(",")
    for la, lb in zip(ta[1:], tb[1:]):
        ca, cb = la.split(","), lb.split(",")
        assert [x for c, x in zip(cols, ca) if c not in TIMING] == [x for c, x in zip(cols, cb) if c not in TIMING]
    if (straight / "integers.lqsint").exists():
        assert (resumed / "integers.lqsint").read_bytes() == (straight / "integers.lqsint").read_bytes()
    assert not (resumed / CHECKPOINT_FILE).exists(), "the checkpoint is removed when the run completes"


CASES = {
    "nested": dict(dataset="digits", scheme="nested", granularity="rowwise", threshold=1e-9, epochs=8),
    "loss_terms": dict(dataset="digits", scheme="loss_terms", granularity="columnwise", terms={"maxbin": 1e-9},
                       epochs=6),
    "gradual": dict(dataset="digits", scheme="nested", granularity="scalar", threshold=1e-9, epochs=7,
                    scale_from_epoch=4),
    "cgmq": dict(dataset="digits", method="cgmq", granularity="scalar", budget=0.125, epochs=6),
    "lsq": dict(dataset="digits", method="lsq", bits=3, granularity="outputwise", epochs=6),
}


@pytest.mark.backends
@pytest.mark.parametrize("case", ["nested", "gradual"])
def test_killed_training_resumes_bit_identical(case, tmp_path):
    config = dict(CASES[case], seed=42)
    _run(config, tmp_path / "straight")
    done = _run_and_kill(config, tmp_path / "resumed", kill_after=2)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    out = _run(config, tmp_path / "resumed")
    assert f"resuming after epoch {done}/" in out
    _compare(tmp_path / "resumed", tmp_path / "straight")


@pytest.mark.parametrize("case", ["loss_terms", "cgmq", "lsq"])
def test_killed_training_resumes_bit_identical_other_methods(case, tmp_path):
    config = dict(CASES[case], seed=43)
    _run(config, tmp_path / "straight")
    _run_and_kill(config, tmp_path / "resumed", kill_after=3)
    _run(config, tmp_path / "resumed")
    _compare(tmp_path / "resumed", tmp_path / "straight")


@pytest.mark.skipif(not (SHARED_DATA / "cifar-10-batches-py").is_dir(), reason="needs the offline CIFAR-10 copy")
def test_killed_cifar10_training_resumes_bit_identical(tmp_path):
    """The CIFAR-10 network (batch norm, dropout: seed-generator states) killed twice, resumed twice."""
    config = dict(dataset="cifar10", scheme="nested", granularity="channelwise", threshold=1e-11, epochs=4,
                  max_train=512, max_val=256, seed=42, data_dir=str(SHARED_DATA))
    _run(config, tmp_path / "straight")
    _run_and_kill(config, tmp_path / "resumed", kill_after=1)
    _run_and_kill(config, tmp_path / "resumed", kill_after=2)
    _run(config, tmp_path / "resumed")
    _compare(tmp_path / "resumed", tmp_path / "straight")


def test_checkpoint_of_another_run_is_not_restored(tmp_path):
    """A checkpoint left by another config (or backend) in the folder is removed with a warning: a fresh start."""
    config = dict(CASES["nested"], seed=42, epochs=3)
    _run_and_kill(config, tmp_path / "run", kill_after=1)
    other = dict(config, threshold=1e-10)
    err = subprocess.run(_command(other, tmp_path / "run"), env=_env(), capture_output=True, text=True)
    assert err.returncode == 0, err.stderr[-2000:]
    assert "not resumed: it belongs to another run" in err.stderr
    _run(other, tmp_path / "straight")
    _compare(tmp_path / "run", tmp_path / "straight")


def test_history_values_keep_their_types():
    rows = [{"epoch": 1, "loss": 0.25, "unique": np.int64(7), "scale": np.float32(0.1), "flag": True, "s": "x"}]
    back = decode_rows(json.loads(json.dumps(encode_rows(rows))))
    assert back == rows
    assert [type(v) for v in back[0].values()] == [type(v) for v in rows[0].values()]
    assert pd.DataFrame(back).to_csv(index=False) == pd.DataFrame(rows).to_csv(index=False)
