"""End-to-end training runs on the embedded digits data (seconds each), diverging runs and unwritable output
folders, the run configuration (:mod:`lqs_core.spec`) and the result files (:mod:`lqs_core.results`)."""

import json
import os
import stat

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import requires_tensorflow

from lqs_core import loss_terms, provenance, results, spec, training
from lqs_core.layers import QuantizedLayer, quantized_params
from lqs_core.results import RunResult, is_complete, load_result
from lqs_core.spec import DATASET_DEFAULTS, RunConfig, run_id
from lqs_core.training import RunDiverged, train


@pytest.fixture(scope="module")
def digits_pair():
    """The key experiment: digits, rowwise, seed 42, dataset defaults, λ = 0 and λ = 1e-10."""
    base = train(RunConfig(dataset="digits", threshold=0.0), verbose=0)
    learned = train(RunConfig(dataset="digits", threshold=1e-10), verbose=0)
    return base, learned


# ---------------------------------------------------------------------------------------------------------------
# Training


def test_threshold_cuts_unique_integers_and_keeps_accuracy(digits_pair):
    base, learned = digits_pair
    print("\nλ=0     :", base.report_line())
    print("λ=1e-10 :", learned.report_line())
    assert base.report["val_accuracy"] > 0.90
    assert learned.report["val_accuracy"] > base.report["val_accuracy"] - 0.03
    assert base.report["unique_integers"] >= 10 * learned.report["unique_integers"]
    assert learned.report["int_range"] < base.report["int_range"] / 10
    # λ = 0 leaves the scales at their initial value; λ > 0 only grows them
    for (*_, q0), (*_, q1) in zip(quantized_params(base.model), quantized_params(learned.model)):
        np.testing.assert_allclose(q0.scale.numpy(), q0.scale_init)
        assert np.all(q1.scale.numpy() >= q1.scale_init) and np.any(q1.scale.numpy() > 10 * q1.scale_init)


def test_history_and_report(digits_pair):
    _, run = digits_pair
    h = run.history
    epochs = DATASET_DEFAULTS["digits"]["epochs"]
    assert list(h["epoch"]) == list(range(1, epochs + 1))
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "unique_integers", "int_range", "int_min",
                   "int_max", "scale_mean/dense_1/kernel", "scale_mean/dense_2/bias"):
        assert column in h.columns, column
        assert h[column].notna().all(), column
    np.testing.assert_allclose(h["lr"], DATASET_DEFAULTS["digits"]["learning_rate"])
    assert h["unique_integers"].iloc[-1] == run.report["unique_integers"]
    assert h["scale_mean/dense_1/kernel"].is_monotonic_increasing
    # the final report: metrics.report(model) + the last epoch's numbers
    assert run.report["val_accuracy"] == pytest.approx(h["val_accuracy"].iloc[-1])
    assert run.report["epochs"] == epochs and run.report["train_seconds"] > 0
    for key in ("unique_integers", "int_min", "int_max", "bits_unique", "zip_bytes", "float_zip_bytes"):
        assert key in run.report
    assert run.summary is not None and run.summary["tensor"].iloc[-1] == "total"
    line = run.report_line()
    for part in ("digits", "nested", "rowwise", "1e-10", "qat", "42", "val acc", "unique", "bits", "zip"):
        assert part in line, (part, line)
    # the validation numbers are Keras' evaluation of the final model
    acc = run.model.evaluate(*_digits_val(), verbose=0)[1]
    assert acc == pytest.approx(run.report["val_accuracy"], abs=1e-6)


def _digits_val():
    from lqs_core import data

    _, (x, y) = data.load_arrays("digits")
    return x, y


def test_same_seed_gives_identical_history(digits_pair):
    _, first = digits_pair
    again = train(RunConfig(dataset="digits", threshold=1e-10), verbose=0)
    cols = [c for c in first.history.columns if c not in spec.TIME_COLUMNS]
    pd.testing.assert_frame_equal(first.history[cols], again.history[cols], check_exact=True)
    for (*_, v1, q1), (*_, v2, q2) in zip(quantized_params(first.model), quantized_params(again.model)):
        np.testing.assert_array_equal(v1.numpy(), v2.numpy())
        np.testing.assert_array_equal(q1.scale.numpy(), q2.scale.numpy())


def test_loss_terms_scheme_grows_scales_and_lr_schedule(capsys):
    # With γ = 0 nothing moves the scales (λ is 0 in this scheme, cf. the λ = 0 run above): they stay at scale_init.
    config = RunConfig(dataset="digits", scheme="loss_terms", terms={"maxbin": 1e-8}, threshold=1e-9, epochs=3,
                       max_train=256, max_val=64, lr_schedule=[[1, 0.5], [2, 0.2]])
    assert config.threshold == 0.0  # forced for the loss-term scheme
    maxbin = train(config, verbose=1)
    out = capsys.readouterr().out
    assert out.count("epoch ") == 3 and "maxbin γ=1e-08" in out  # one readable line per epoch
    for *_, q in quantized_params(maxbin.model):
        assert q.threshold == 0.0
        assert [(type(t), t.term, t.gamma) for t in q.loss_terms] == [(loss_terms.MaxBin, "maxbin", 1e-8)]
        assert 0 < q.loss_terms[0].weight < 1  # #P / sum #P
        assert np.all(q.scale.numpy() > 2 * q.scale_init)  # MaxBin pushed every scale up
    first = maxbin.history["unique_integers"].iloc[0]
    assert maxbin.report["unique_integers"] < first
    # cumulative schedule, 0-based epochs: 1e-3, 5e-4, 1e-4
    np.testing.assert_allclose(maxbin.history["lr"], [1e-3, 5e-4, 1e-4], rtol=1e-6)
    assert run_id(config) == "digits-loss_terms-rowwise-maxbin1e-08-qat-s42-e3-sched1x0.5+2x0.2-n256-v64"


def test_float_baseline_and_ptq_start(tmp_path):
    small = dict(dataset="digits", epochs=2, max_train=256, max_val=64)
    float_run = train(RunConfig(scheme="float", **small), out_dir=tmp_path / "float", verbose=0)
    assert not quantized_params(float_run.model)
    assert float_run.summary is None and "unique_integers" not in float_run.history.columns
    for key in ("val_accuracy", "val_loss", "accuracy", "loss", "float_zip_bytes", "float32_bytes", "params"):
        assert key in float_run.report
    assert float_run.report["params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert "float zip" in float_run.report_line()
    assert not (tmp_path / "float" / spec.INTEGERS_FILE).exists()

    captured = {}

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            captured["weights"] = {
                layer.name: [v.numpy().copy() for _, v, _ in layer.quantized_params()]
                for layer in self.model.layers
                if isinstance(layer, QuantizedLayer)
            }

    ptq = RunConfig(mode="ptq", float_weights=str(tmp_path / "float"), threshold=1e-10, **small)
    result = train(ptq, verbose=0, callbacks=[Capture()])
    float_layers = {layer.name: layer.get_weights() for layer in float_run.model.layers}
    assert set(captured["weights"]) == {"dense_1", "dense_2"}
    for name, values in captured["weights"].items():
        for got, want in zip(values, float_layers[name]):
            np.testing.assert_array_equal(got, want)
    assert result.report["val_accuracy"] >= float_run.report["val_accuracy"] - 0.1
    # the float baseline can also be given as its .keras file or a .weights.h5 file
    float_run.model.save_weights(tmp_path / "float.weights.h5")
    for path in (tmp_path / "float" / "model.keras", tmp_path / "float.weights.h5"):
        loaded = training.load_float_model(path, ptq)
        for layer in loaded.layers:
            for got, want in zip(layer.get_weights(), float_layers[layer.name]):
                np.testing.assert_array_equal(got, want)
    # a quantized run is not a float baseline
    result.save(tmp_path / "quantized")
    with pytest.raises(ValueError, match="quantized"):
        train(ptq.replace(float_weights=str(tmp_path / "quantized"), epochs=1), verbose=0)
    with pytest.raises(FileNotFoundError):
        train(ptq.replace(float_weights=str(tmp_path / "missing"), epochs=1), verbose=0)


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading


def test_save_and_load_round_trip(digits_pair, tmp_path):
    _, run = digits_pair
    out = tmp_path / run_id(run.config)
    run.save(out)
    names = sorted(os.listdir(out))
    assert names == sorted(["history.csv", "summary.csv", "integers.lqsint", "model.keras", "metrics.json"])
    with open(out / "metrics.json") as f:
        payload = json.load(f)
    assert payload["run_id"] == run_id(run.config)
    assert payload["config"] == run.config.to_dict()
    assert list(payload) == ["run_id", "config", "report", "files", "versions", "machine"]
    assert payload["files"] == {"history": spec.HISTORY_FILE, "summary": spec.SUMMARY_FILE,
                                "integers": spec.INTEGERS_FILE, "model": spec.MODEL_FILE}
    machine = json.loads(json.dumps(provenance.record()))
    assert payload["machine"] == machine and payload["machine"]["cpu_instruction_set"]

    back = load_result(out)
    assert back.config == run.config
    assert back.report == pytest.approx(run.report)
    pd.testing.assert_frame_equal(back.history, run.history, check_dtype=False)
    assert back.report_line() == run.report_line()
    x, _ = _digits_val()
    np.testing.assert_array_equal(back.model.predict(x, verbose=0), run.model.predict(x, verbose=0))
    from lqs_core import metrics

    for name, values in metrics.integer_tensors(back.model).items():
        np.testing.assert_array_equal(values, metrics.integer_tensors(run.model)[name])
    assert is_complete(out)
    assert load_result(out, load_model=False).model is None


def test_save_is_atomic(digits_pair, tmp_path, monkeypatch):
    _, run = digits_pair
    out = tmp_path / "run"
    run.save(out)
    assert is_complete(out)

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(run.model), "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run.save(out)
    assert not (out / "metrics.json").exists()  # the old run no longer looks complete
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary files left behind
    with pytest.raises(FileNotFoundError, match="not a complete run"):
        load_result(out)
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError):
        run.save(fresh)
    assert not (fresh / "metrics.json").exists() and not (fresh / "model.keras").exists()
    monkeypatch.undo()
    run.save(out)
    assert is_complete(out)


def test_save_removes_stale_temporary_files(digits_pair, tmp_path):
    # a save killed before its renames leaves .tmp-* files; the next save of the run removes them
    _, run = digits_pair
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".tmp-model.keras.x.keras"
    stale.write_bytes(b"half a model")
    (out / ".tmp-metrics.json.abc123.json").write_text("{")
    (out / ".keep").write_text("")  # not a temporary file of a save: left alone
    run.save(out)
    assert not stale.exists()
    assert sorted(n for n in os.listdir(out) if n.startswith(".")) == [".keep"]
    assert is_complete(out) and load_result(out).report == pytest.approx(run.report)


# ---------------------------------------------------------------------------------------------------------------
# Configuration


def test_defaults_per_dataset():
    expected = {"mnist": (1e-4, 32, 20, []), "cifar10": (1e-4, 128, 100, []),
                "imagenette": (1e-4, 64, 100, [[40, 0.5], [60, 0.2]])}
    for name, (lr, bs, ep, sched) in expected.items():
        c = RunConfig(dataset=name)
        assert (c.learning_rate, c.batch_size, c.epochs, c.lr_schedule) == (lr, bs, ep, sched)
    c = RunConfig(dataset="imagenette")
    assert [c.lr_at(e) for e in (0, 39, 40, 59, 60, 99)] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 1e-5, 1e-5])
    c = RunConfig(dataset="mnist", epochs=3, batch_size=8, learning_rate=1e-3, lr_schedule=[])
    assert (c.epochs, c.batch_size, c.learning_rate) == (3, 8, 1e-3)
    assert c.scheme == "nested" and c.mode == "qat" and c.seed == 42 and c.granularity == "rowwise"
    assert spec.TERMS == tuple(loss_terms.TERM_CLASSES)
    from lqs_core import data, models

    assert spec.DATASETS == tuple(data.DATASETS) == tuple(models.MODELS) == tuple(DATASET_DEFAULTS)


def test_config_round_trip_and_run_id():
    c = RunConfig(dataset="cifar10", granularity="channelwise", threshold=1e-11, seed=3)
    assert RunConfig.from_dict(c.to_dict()) == c
    assert RunConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert run_id(c) == "cifar10-nested-channelwise-lam1e-11-qat-s3"
    lt = RunConfig(dataset="mnist", scheme="loss_terms", terms={"inverse": 1e-9, "MaxBin": 1e-8})
    assert run_id(lt) == "mnist-loss_terms-rowwise-inverse1e-09+maxbin1e-08-qat-s42"
    assert run_id(RunConfig(dataset="mnist", scheme="float")) == "mnist-float-s42"
    ptq = RunConfig(dataset="mnist", mode="ptq", float_weights="/runs/float", threshold=1e-10, epochs=5, max_train=100)
    assert run_id(ptq) == "mnist-nested-rowwise-lam1e-10-ptq-s42-e5-n100"
    assert run_id(c) == run_id(RunConfig.from_dict(c.to_dict()))  # stable
    for config in (c, lt, ptq):
        assert all(ch.isalnum() or ch in "._+-" for ch in run_id(config))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"dataset": "svhn"}, "dataset"),
        ({"scheme": "magic"}, "scheme"),
        ({"mode": "finetune"}, "mode"),
        ({"granularity": "diagonal"}, "granularity"),
        ({"granularity": "channelwise"}, "granularity"),  # digits quantizes Dense layers
        ({"threshold": -1e-10}, "threshold"),
        ({"threshold": "big"}, "threshold"),
        ({"scheme": "loss_terms", "terms": {"maxbin": -1e-8}}, "gamma"),
        ({"scheme": "loss_terms", "terms": {"entropy": 1e-8}}, "terms"),
        ({"scheme": "loss_terms"}, "terms"),
        ({"terms": {"maxbin": 1e-8}}, "terms"),  # terms with the nested scheme
        ({"mode": "ptq"}, "float_weights"),
        ({"scheme": "float", "mode": "ptq", "float_weights": "x"}, "mode"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"lr_schedule": [[10, -0.5]]}, "lr_schedule"),
        ({"lr_schedule": [10, 0.5]}, "lr_schedule"),
        ({"max_train": 0}, "max_train"),
        ({"image_size": 64}, "image_size"),
        ({"seed": "42"}, "seed"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 1.5}, "seed"),
        ({"scale_init": 1e-6}, "scale_init"),
        ({"jit_compile": "yes"}, "jit_compile"),
    ],
)
def test_bad_config_raises(changes, field):
    with pytest.raises(ValueError, match=field):
        RunConfig(**{"dataset": "digits", **changes})


def test_from_dict_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match="lambda"):
        RunConfig.from_dict({"dataset": "digits", "lambda": 1e-10})
    with pytest.raises(ValueError, match="dataset"):
        RunConfig.from_dict({"threshold": 1e-10})


def test_channelwise_is_fine_for_conv_networks():
    assert RunConfig(dataset="cifar10", granularity="channelwise").granularity == "channelwise"
    assert RunConfig(dataset="digits", scheme="float", granularity="channelwise").scheme == "float"


# ---------------------------------------------------------------------------------------------------------------
# Diverging runs, unwritable output folders


class _Started(keras.callbacks.Callback):
    """Records whether training began."""

    def __init__(self):
        super().__init__()
        self.started = False

    def on_train_begin(self, logs=None):
        self.started = True


@requires_tensorflow  # JAX / PyTorch: the clipped cross-entropy saturates (loss ~15) instead of turning NaN
def test_huge_learning_rate_raises_run_diverged_and_saves_nothing(tmp_path):
    config = RunConfig(dataset="digits", learning_rate=1e9, epochs=1, max_train=64, max_val=32)
    out = tmp_path / "diverged"
    with pytest.raises(RunDiverged, match="diverged") as e:
        train(config, out_dir=out, verbose=0)
    assert "learning_rate 1e+09" in str(e.value)
    assert isinstance(e.value, RuntimeError)
    assert not (out / spec.METRICS_FILE).exists() and not is_complete(out)
    assert os.listdir(out) == []  # checked for writing before training, then nothing written
    with pytest.raises(FileNotFoundError):
        load_result(out)


def test_check_converged():
    config = RunConfig(dataset="digits")
    ok = pd.DataFrame({"epoch": [1, 2], "loss": [2.3, training.DIVERGED_LOSS], "val_loss": [2.0, 1e9]})
    training.check_converged(ok, config)  # at the bound is fine, and a large (finite) val_loss too
    for column, values in [("loss", [2.3, 2 * training.DIVERGED_LOSS]), ("loss", [np.nan, 1.0]),
                           ("val_loss", [1.0, np.inf]), ("loss", [1.0, -np.inf])]:
        history = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 1.0], "val_loss": [1.0, 1.0]})
        history[column] = values
        with pytest.raises(RunDiverged, match=f": {column} = .* at epoch {1 + int(np.isfinite(values[0]))} "):
            training.check_converged(history, config)


def test_unwritable_out_dir_under_a_file_is_refused_before_training(tmp_path):
    # a path below a regular file can be written by no one (root included)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    started = _Started()
    with pytest.raises(ValueError, match="cannot be written") as e:
        train(RunConfig(dataset="digits", epochs=1, max_train=64), out_dir=blocker / "sub", verbose=0,
              callbacks=[started])
    assert str(blocker / "sub") in str(e.value)
    assert not started.started
    assert blocker.read_text() == "not a folder"


def test_read_only_out_dir_is_refused_before_training(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable (the file case covers root)")
        started = _Started()
        with pytest.raises(ValueError, match="cannot be written"):
            train(RunConfig(dataset="digits", epochs=1, max_train=64), out_dir=folder / "run", verbose=0,
                  callbacks=[started])
        assert not started.started
        with pytest.raises(ValueError, match="cannot be written"):
            train(RunConfig(dataset="digits", epochs=1, max_train=64), out_dir=folder, verbose=0)
    finally:
        folder.chmod(stat.S_IRWXU)


def test_run_result_of_a_float_run_saves_no_integers(tmp_path):
    config = RunConfig(dataset="digits", scheme="float")
    result = RunResult(config=config, model=None, history=pd.DataFrame({"epoch": [1], "loss": [0.5]}),
                       report={"val_accuracy": 0.5, "loss": float("nan")})
    out = result.save(tmp_path / "r")
    assert sorted(os.listdir(out)) == [spec.HISTORY_FILE, spec.METRICS_FILE]
    back = load_result(out)
    assert back.model is None and back.config == config and np.isnan(back.report["loss"])
    assert results.is_complete(out) and back.run_id == "digits-float-s42"
