"""Every number the two reports' prose quotes, recomputed from the stored results (results.csv, the runs' histories
and integer files) with plain pandas, independently of lqs_core.report; and the prose's claims about them.

The reports (RESULTS.md for the quick_cpu profile, results/mnist-jax/RESULTS.md for config/mnist.yaml) quote our
numbers only through placeholders: ``{{s.<dataset>.<setting>.<metric>}}`` for one setting of the comparison table,
``{{q.<name>}}`` for a number derived from several (lqs_core.report.setting_values / mnist_quotes / ...).
tests/test_report.py checks that the committed files are exactly what the templates render to; this file checks
that what they render is right, that every placeholder the templates use is recomputed here, and that the
templates' prose states no number of ours outside a placeholder.
"""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lqs_core import report
from lqs_core.export import read_integers

REPO = Path(__file__).resolve().parent.parent
PROFILES = {"quick_cpu": "docs/RESULTS.template.md", "mnist-jax": "docs/RESULTS_mnist.template.md"}
TWIN = {"mnist-jax": "quick_cpu"}  # the same MNIST settings on TensorFlow
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")

pytestmark = pytest.mark.skipif(not all((REPO / "results" / p / "results.csv").exists() for p in PROFILES),
                                reason="the stored quick_cpu / mnist-jax results are not in this checkout")


# ---------------------------------------------------------------------------------------------------------------
# Independent recomputation


def f(x, digits=1):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def span(values, digits=1):
    values = [float(v) for v in values if v == v]
    lo, hi = f(min(values), digits), f(max(values), digits)
    return lo if lo == hi else f"{lo}–{hi}"


def value(x) -> str:
    """A swept value as the reports write it: 1e-10, 0.125, 2, 0.0001."""
    x = float(x)
    if x == int(x) and abs(x) >= 1:
        return str(int(x))
    text = f"{x:g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}e{int(exp)}"
    return text


def strip_lr(v) -> str:
    if not isinstance(v, str):
        return ""
    return "-".join(p for p in v.split("-") if p and not (p.startswith("lr") and p[2:3].isdigit()))


def load(profile):
    return pd.read_csv(REPO / "results" / profile / "results.csv")


def plain(df):
    return df[df["variant"].isna() | (df["variant"].astype(str) == "")]


def settings(df, dataset, best_lr=True):
    """Per setting (method, granularity, mode, param, variant without the lr part[, learning rate]): mean, sd
    (ddof 1, 0 for one seed) and count of the comparison metrics; the float baseline as method "float" with its
    float32 size and 32 bits."""
    d = df[df["dataset"] == dataset].copy()
    base = d["kind"] == "baseline"
    d["m"] = np.where(base, "float", d["family"])
    d["g"] = np.where(base, "", d["granularity"].fillna(""))
    d["mo"] = np.where(base, "", d["mode"].fillna(""))
    d["p"] = np.where(base, -1.0, pd.to_numeric(d["param"], errors="coerce").fillna(-1.0))
    d["v"] = [strip_lr(v) for v in d["variant"]]
    d["lr"] = pd.to_numeric(d["learning_rate"], errors="coerce")
    for col, f32 in (("entropy_bytes", "float32_bytes"), ("packed_bytes", "float32_bytes")):
        d[col] = np.where(base, d[f32], d[col])
    for col in ("mean_bits_fixed", "entropy_bits_per_weight"):
        d[col] = np.where(base, 32.0, d[col])
    rows = []
    for key, g in d.groupby(["m", "g", "mo", "p", "v", "lr"], dropna=False):
        row = dict(zip(["m", "g", "mo", "p", "v", "lr"], key), n=len(g))
        for col in ("val_accuracy", "entropy_bytes", "packed_bytes", "mean_bits_fixed", "entropy_bits_per_weight",
                    "zip_bytes", "unique_integers"):
            x = pd.to_numeric(g[col], errors="coerce")
            row[col] = x.mean()
            row[col + "_sd"] = x.std(ddof=1) if len(x) > 1 else 0.0
        rows.append(row)
    out = pd.DataFrame(rows)
    if best_lr:
        out = (out.sort_values(["m", "g", "mo", "p", "v", "val_accuracy", "lr"],
                               ascending=[True] * 5 + [False, True])
               .drop_duplicates(["m", "g", "mo", "p", "v"]))
    return out


def setting_key(dataset, row, with_lr):
    parts = ["s", dataset, row["m"]] + [x for x in (row["g"], row["mo"]) if x]
    if row["m"] != "float":
        parts.append(value(row["p"]))
    if row["v"]:
        parts.append(row["v"])
    if with_lr:
        parts.append("lr" + value(row["lr"]))
    return ".".join(parts)


def expected_settings(df, dataset):
    base = df[(df["dataset"] == dataset) & (df["kind"] == "baseline")]
    base_acc = 100 * base["val_accuracy"].mean()
    float_zip, float32 = base["float_zip_bytes"].mean(), base["float32_bytes"].mean()
    out = {}
    for with_lr in (False, True):
        for _, r in settings(df, dataset, best_lr=not with_lr).iterrows():
            acc, sd = 100 * r["val_accuracy"], 100 * r["val_accuracy_sd"]
            zip_bytes = float_zip if r["m"] == "float" else r["zip_bytes"]
            metrics = {"acc": f(acc, 2), "acc1": f(acc, 1), "sd": f(sd, 2), "accpm": f"{f(acc, 2)} ± {f(sd, 2)}",
                       "below": f(base_acc - acc, 2), "kB": f(r["entropy_bytes"] / 1000),
                       "packedkB": f(r["packed_bytes"] / 1000), "bits": f(r["mean_bits_fixed"]),
                       "ent": f(r["entropy_bits_per_weight"]), "unique": f(r["unique_integers"], 0),
                       "zip": f(zip_bytes / 2**20, 3), "xzip": f(float_zip / zip_bytes),
                       "xf32": f(float32 / r["entropy_bytes"]), "seeds": str(int(r["n"]))}
            key = setting_key(dataset, r, with_lr)
            out.update({f"{key}.{m}": v for m, v in metrics.items()})
    return out


def rowwise(df, family, param=None, mode="qat", granularity="rowwise"):
    d = plain(df[(df["dataset"] == "mnist") & (df["kind"] == "run") & (df["family"] == family)
                 & (df["granularity"] == granularity) & (df["mode"] == mode)])
    if param is not None:
        d = d[np.isclose(d["param"], param, rtol=1e-9, atol=0)]
    return d.sort_values("seed")


def grouped(n):
    return f"{int(round(n)):,}".replace(",", " ")


def minus(v):
    return f"−{-int(v)}" if v < 0 else str(int(v))


def name_of(r):
    """A setting in words, as the prose names it."""
    method = {"nested": "nested scheme", "maxbin": "MaxBin", "inverse": "Inverse", "difference": "Difference",
              "lsq": "LSQ", "fixed": "fixed-bit QAT", "ptq": "PTQ min-max", "cgmq": "CGMQ", "hgq2": "HGQ2",
              "layer_importance": "layer importance", "keras_quantize": "Keras quantize"}[r["m"]]
    sym = {"nested": "λ=", "maxbin": "γ=", "inverse": "γ=", "difference": "γ="}.get(r["m"])
    if sym:
        setting = f"{sym}{value(r['p'])}"
    elif r["m"] == "cgmq":
        setting = f"budget {value(r['p'])}"
    elif r["m"] == "hgq2":
        setting = f"β={value(r['p'])}"
    elif r["m"] == "keras_quantize":
        setting = f"int{int(r['p'])}"
    elif r["m"] == "layer_importance":
        setting = f"start {int(r['p'])} bits"
    else:
        setting = f"{int(r['p'])} bits"
    detail = [x for x in (r["g"], r["mo"].upper(), r["v"]) if x]
    return f"{method} {setting}" + (f", {' '.join(detail)}" if detail else "")


def expected_quotes(profile, df):
    """Every q.… number of the report of ``profile``, recomputed."""
    q = {}
    mnist = df[df["dataset"] == "mnist"]
    base = mnist[mnist["kind"] == "baseline"].sort_values("seed")
    base_acc = base["val_accuracy"].mean()
    ref = {0.0: 0.9621, 1e-11: 0.9620, 1e-10: 0.9594, 1e-9: 0.9296}
    q["q.mnist.seedacc.float"] = " / ".join(f(100 * a, 2) for a in base["val_accuracy"])
    diffs = [("the float baseline", abs(100 * (base_acc - 0.9636)))]
    rw = rowwise(df, "nested")
    for lam in sorted(set(rw["param"])):
        at, key = rowwise(df, "nested", lam), value(lam)
        q[f"q.mnist.unique.{key}"] = span(at["unique_integers"], 0)
        q[f"q.mnist.seedacc.{key}"] = " / ".join(f(100 * a, 2) for a in at["val_accuracy"])
        q[f"q.mnist.ranges.{key}"] = " and ".join(f"{int(u)} in {minus(a)}…{minus(b)}" for u, a, b in
                                                  zip(at["unique_integers"], at["int_min"], at["int_max"]))
        q[f"q.mnist.absmax.{key}"] = grouped(max(at["int_min"].abs().max(), at["int_max"].abs().max()))
        last = [100 * v for h in at["history"]
                for v in pd.read_csv(REPO / "results" / profile / h)["val_accuracy"].tail(5)]
        q[f"q.mnist.last5.{key}"] = f"{min(last):.2f}–{max(last):.2f}"
        q[f"q.mnist.last5span.{key}"] = f(max(last) - min(last))
        if lam in ref:
            diff = 100 * (at["val_accuracy"].mean() - ref[lam])
            if lam <= 1e-10:
                diffs.append((f"λ = {key}", abs(diff)))
            q[f"q.mnist.ref.{key}.diff"] = f(diff, 2)
            q[f"q.mnist.ref.{key}.nsd"] = f(diff / (100 * at["val_accuracy"].std(ddof=1)))
    worst = max(diffs, key=lambda d: d[1])
    q["q.mnist.ref.maxdiff"], q["q.mnist.ref.maxdiff_at"] = f(worst[1], 2), worst[0]
    float_zip = base["float_zip_bytes"].mean()
    q["q.mnist.float_zip_bytes"] = grouped(float_zip)
    q["q.mnist.float_zip_mib"], q["q.mnist.float_zip_mb"] = f(float_zip / 2**20, 3), f(float_zip / 1e6, 3)
    terms = {"difference": 1e-7, "maxbin": 1e-8, "inverse": 1e-9}
    rows = {t: rowwise(df, t, g) for t, g in terms.items()}
    for t, r in list(rows.items()) + [("nested", rowwise(df, "nested", 1e-10))]:
        gap = 100 * (base_acc - r["val_accuracy"].mean())
        q[f"q.mnist.vsfloat.{t}"] = f"{abs(gap):.2f} points {'below' if gap >= 0 else 'above'}"
    q["q.mnist.terms.acc"] = span([100 * r["val_accuracy"].mean() for r in rows.values()])
    q["q.mnist.terms.unique"] = span([r["unique_integers"].median() for r in rows.values()], 0)
    q["q.mnist.terms.zip"] = span([r["zip_bytes"].mean() / 2**20 for r in rows.values()], 3)
    q["q.mnist.terms.xzip"] = span([float_zip / r["zip_bytes"].mean() for r in rows.values()])

    s = settings(df, "mnist")
    own = s[s["m"] != "float"]

    def named(key, r):
        q[key] = name_of(r)
        q[f"{key}.acc"], q[f"{key}.kB"] = f(100 * r["val_accuracy"], 2), f(r["entropy_bytes"] / 1000)

    def smallest(frame):
        return frame.sort_values(["entropy_bytes", "val_accuracy"], ascending=[True, False]).iloc[0]

    def best(frame):
        return frame.sort_values(["val_accuracy", "entropy_bytes"], ascending=[False, True]).iloc[0]

    within = smallest(own[own["val_accuracy"] >= base_acc - 0.01 - 1e-12])
    named("q.mnist.within1", within)
    q["q.mnist.within1.below"] = f(100 * (base_acc - within["val_accuracy"]), 2)
    named("q.mnist.reach94", smallest(own[own["m"].isin(["nested", *terms]) & (own["val_accuracy"] >= 0.94 - 1e-12)]))
    lsq2 = own[(own["m"] == "lsq") & (own["p"] == 2)]
    if len(lsq2):
        size = lsq2["entropy_bytes"].iloc[0]
        named("q.mnist.atlsq2.nested", best(own[(own["m"] == "nested") & (own["entropy_bytes"] <= size)]))
        named("q.mnist.atlsq2.term", best(own[own["m"].isin(list(terms)) & (own["entropy_bytes"] <= size)]))
    c = own[(own["m"] == "cgmq") & (own["p"] == 0.125)].iloc[0]
    near = own[(own["m"] != "cgmq") & ((own["entropy_bytes"] - c["entropy_bytes"]).abs() <= 0.1 * c["entropy_bytes"])]
    rival = near.sort_values("val_accuracy", ascending=False).iloc[0]
    named("q.mnist.cgmq.rival", rival)
    q["q.mnist.cgmq.gap"] = f(100 * (rival["val_accuracy"] - c["val_accuracy"]))
    losses = []
    for g in ("outputwise", "scalar"):
        p = mnist[(mnist["family"] == "ptq") & (mnist["granularity"] == g) & (mnist["param"] == 4)]
        losses.append(100 * (base[base["seed"].isin(p["seed"])]["val_accuracy"].mean() - p["val_accuracy"].mean()))
    q["q.mnist.ptq4.loss"] = span(losses)

    nested = plain(mnist[(mnist["kind"] == "run") & (mnist["family"] == "nested")])
    cols = [(g, m) for g in ("rowwise", "columnwise", "scalar") for m in ("qat", "ptq")
            if len(nested[(nested["granularity"] == g) & (nested["mode"] == m)])]

    def cell(g, m, lam):
        at = np.isclose(nested["param"], lam, rtol=1e-9, atol=0)
        return nested[(nested["granularity"] == g) & (nested["mode"] == m) & at]

    optimal, others = 0, []
    for g, m in cols:
        per = nested[(nested["granularity"] == g) & (nested["mode"] == m)].groupby("param").agg(
            acc=("val_accuracy", "mean"), zip=("zip_bytes", "mean")).reset_index()
        ok = per[per["acc"] >= base_acc - 0.01 - 1e-12]
        ok = ok.sort_values(["zip", "acc", "param"], ascending=[True, False, False])
        lam = ok["param"].iloc[0]
        if math.isclose(lam, 1e-10):
            optimal += 1
        else:
            others.append(f"{g} {m.upper()} (λ = {value(lam)})")
    q["q.mnist.optimal.count"], q["q.mnist.optimal.others"] = f"{optimal} of {len(cols)}", ", ".join(others) or "none"
    q["q.mnist.loss.1e-9"] = span([100 * (base_acc - cell(g, m, 1e-9)["val_accuracy"].mean()) for g, m in cols])
    q["q.mnist.acc.1e-8"] = span([100 * cell(g, m, 1e-8)["val_accuracy"].mean() for g, m in cols], 0)
    lams = sorted(set(nested["param"]))
    sd = {lam: [100 * cell(g, m, lam)["val_accuracy"].std(ddof=1) for g, m in cols if len(cell(g, m, lam)) > 1]
          for lam in lams}
    q["q.mnist.sd.le1e-10"] = span([v for lam in lams if lam <= 1e-10 for v in sd[lam]], 2)
    q["q.mnist.sd.1e-9"], q["q.mnist.sd.1e-8"] = span(sd[1e-9]), span(sd[1e-8], 0)
    gains, fewer, pairs = [], 0, 0
    for lam in (1e-11, 1e-10, 1e-9):
        for g in ("rowwise", "columnwise", "scalar"):
            a, b = cell(g, "qat", lam), cell(g, "ptq", lam)
            if len(a) and len(b):
                gains.append(100 * (b["val_accuracy"].mean() - a["val_accuracy"].mean()))
                pairs += 1
                fewer += b["unique_integers"].median() <= a["unique_integers"].median()
    if pairs:
        q["q.mnist.ptqgain"], q["q.mnist.ptqfewer"] = span(gains), f"{fewer} of {pairs}"
        for m in ("qat", "ptq"):
            cells = [cell(g, mm, 1e-10) for g, mm in cols if mm == m]
            q[f"q.mnist.{m}.1e-10.acc"] = span([100 * c_["val_accuracy"].mean() for c_ in cells])
            q[f"q.mnist.{m}.1e-10.unique"] = span([c_["unique_integers"].median() for c_ in cells], 0)
        for t, g in terms.items():
            row_acc = rowwise(df, t, g)["val_accuracy"].mean()
            sc = rowwise(df, t, granularity="scalar").groupby("param")["val_accuracy"].mean()
            reach = [p for p in sorted(sc.index, reverse=True) if sc[p] >= row_acc - 1e-12]
            q[f"q.mnist.scalargamma.{t}"] = (f"{g / reach[0]:.0f}×" if reach else
                                             f"more than {g / min(sc.index):.0f}× (never reached)")
        parts = []
        for budget in (20_000, 30_000, 50_000, 70_000, 110_000):
            top = {m: own[(own["m"] == m) & (own["entropy_bytes"] <= budget)]["val_accuracy"].max()
                   for m in ("nested", "maxbin", "inverse", "difference")}
            beat = [n for m, n in (("maxbin", "MaxBin"), ("inverse", "Inverse"), ("difference", "Difference"))
                    if top[m] == top[m] and top[m] > top["nested"]]
            parts.append(f"≤ {budget // 1000} kB: {', '.join(beat) or 'none'}")
        q["q.mnist.eqbytes.terms_beat_nested"] = "; ".join(parts)
        at = np.isclose(own["p"], 1e-10, rtol=1e-9, atol=0)
        grad = own[(own["m"] == "nested") & own["v"].str.startswith("from") & at]
        q["q.mnist.gradual.1e-10.acc"] = span(100 * grad["val_accuracy"], 2)
        every = settings(df, "mnist", best_lr=False)
        every = every[every["m"] != "float"]
        better, lr_losses = [], []
        for _, g in every.groupby(["m", "g", "mo", "p", "v"]):
            if len(g) > 1:
                by = g.set_index("lr")["val_accuracy"]
                better.append(by.idxmax())
                lr_losses.append(100 * (by[1e-4] - by[1e-3]))
        q["q.mnist.lr.n"], q["q.mnist.lr.loss"] = str(len(better)), span(lr_losses, 0)
        q["q.mnist.lr.better_1e-4"] = str(sum(math.isclose(b, 1e-4) for b in better))
        # the b2 ranges, from the integer files (tensors W1, b1, W2, b2)
        medians = {}
        for lam in (1e-10, 1e-9, 1e-8):
            for g, m in cols:
                runs = cell(g, m, lam)
                ranges = [[int(np.abs(t).max()) for t in read_integers(REPO / "results" / profile / p)[0].values()]
                          for p in runs["integers"]]
                medians[(lam, g, m)] = [int(v) for v in np.median(np.array(ranges), axis=0)]
        at9 = {k[1:]: v for k, v in medians.items() if k[0] == 1e-9}
        widest = {k: v for k, v in at9.items() if v[3] > max(v[:3])}
        q["q.mnist.b2.widest"] = f"{len(widest)} of {len(at9)}"
        q["q.mnist.b2.notwidest"] = ", ".join(f"{g} {m.upper()}: {' / '.join(map(str, v))}"
                                              for (g, m), v in at9.items() if (g, m) not in widest) or "none"
        q["q.mnist.b2.b2range"] = span([v[3] for v in widest.values()], 0)
        q["q.mnist.b2.weights"] = span([w for v in widest.values() for w in (v[0], v[2])], 0)
        for lam in (1e-10, 1e-9, 1e-8):
            q[f"q.mnist.modelrange.{value(lam)}"] = span([max(v) for k, v in medians.items() if k[0] == lam], 0)
        q["q.mnist.b2.1e-8"] = span([v[3] for k, v in medians.items() if k[0] == 1e-8], 0)
        q["q.mnist.W1b1.1e-8"] = span([w for k, v in medians.items() if k[0] == 1e-8 for w in v[:2]], 0)
    q["q.total_hours"] = f(pd.to_numeric(df["train_seconds"], errors="coerce").fillna(0).sum() / 3600)

    cifar = df[df["dataset"] == "cifar10"]
    if len(cifar):
        cb = cifar[cifar["kind"] == "baseline"].iloc[0]
        steps = math.ceil(cb["n_train"] / cb["batch_size"]) * int(cb["epochs"])
        thesis = math.ceil(50000 / cb["batch_size"]) * 100
        q["q.cifar10.steps"], q["q.cifar10.thesis_steps"] = grouped(steps), grouped(thesis)
        q["q.cifar10.steps_pct"] = f(100 * steps / thesis)
        runs = plain(cifar[(cifar["kind"] == "run") & (cifar["family"] == "nested")])
        q["q.cifar10.unique.quantized"] = span(runs[runs["param"] > 0]["unique_integers"], 0)
        drops = {p: 100 * (cb["val_accuracy"] - g["val_accuracy"].mean())
                 for p, g in runs.groupby("param") if p <= 1e-9}
        worst = max(drops, key=drops.get)
        q["q.cifar10.maxdrop.le1e-9"], q["q.cifar10.maxdrop.le1e-9.at"] = f(drops[worst]), value(worst)
        fell, trained = [], pd.concat([cifar[cifar["kind"] == "baseline"], runs])
        for _, r in trained.iterrows():
            acc = 100 * pd.read_csv(REPO / "results" / profile / r["history"])["val_accuracy"]
            if acc.iloc[-1] <= acc.iloc[-2]:
                label = "the float baseline" if r["kind"] == "baseline" else f"λ = {value(r['param'])}"
                fell.append(f"{label}: {acc.iloc[-2]:.2f} → {acc.iloc[-1]:.2f} %")
        n = len(trained)
        q["q.cifar10.rising"] = (f"all {n} trained runs' accuracy still rose in the last epoch" if not fell else
                                 f"{n - len(fell)} of the {n} trained runs' accuracy still rose in the last epoch "
                                 f"(not: {'; '.join(fell)})")
    return q


def expected_backend(df, twin):
    """The q.backend.… numbers: the settings both backends ran (same dataset, kind, family, granularity, mode,
    param, epochs, lr, batch size, data; no variant)."""
    keys = ["dataset", "kind", "family", "granularity", "mode", "param", "epochs", "learning_rate", "batch_size",
            "n_train", "n_val"]
    a, b = plain(df).fillna({"granularity": "", "mode": "", "param": -1.0}), plain(twin).fillna(
        {"granularity": "", "mode": "", "param": -1.0})
    merged = []
    for key, mine in a.groupby(keys, sort=False):
        other = b
        for k, v in zip(keys, key):
            other = other[other[k].astype(str) == str(v)]
        if other.empty:
            continue
        x, y = 100 * mine["val_accuracy"], 100 * other["val_accuracy"]
        var = [(len(v) - 1, v.var(ddof=1)) for v in (x, y) if len(v) > 1]
        pooled = math.sqrt(sum(n * s for n, s in var) / sum(n for n, _ in var))
        merged.append(dict(zip(keys, key), delta=x.mean() - y.mean(), nsd=abs(x.mean() - y.mean()) / pooled,
                           other_unique=list(other.sort_values("seed")["unique_integers"]),
                           other_acc=list(y[other["seed"].sort_values().index]),
                           sec=(mine["train_seconds"].median(), other["train_seconds"].median())))
    m = pd.DataFrame(merged)
    q = {"q.backend.this": "JAX", "q.backend.other": "TensorFlow", "q.backend.folder": "results/quick_cpu",
         "q.backend.n": str(len(m)), "q.backend.delta": f"{m['delta'].min():+.2f} to {m['delta'].max():+.2f}",
         "q.backend.over2sd": f"{int((m['nsd'] > 2).sum())} of {len(m)}"}
    fl = m[m["kind"] == "baseline"].iloc[0]
    q["q.backend.float.delta"], q["q.backend.float.nsd"] = f"{fl['delta']:+.2f}", f(fl["nsd"])
    q["q.backend.float.other"] = " / ".join(f(v, 2) for v in fl["other_acc"])
    nested = m[(m["family"] == "nested") & (m["granularity"] == "rowwise") & (m["mode"] == "qat")]
    q["q.backend.nested.maxnsd"] = f(nested["nsd"].max())
    for _, r in nested.iterrows():
        q[f"q.backend.unique.{value(r['param'])}.other"] = span(r["other_unique"], 0)
    trained = [s for s in m["sec"] if s[0] > 0 and s[1] > 0]
    q["q.backend.speedup"] = f(np.median([s[1] for s in trained]) / np.median([s[0] for s in trained]))
    return q


def expected_time(df):
    """The q.time.… cells: the measured training speed and the estimates for the quick / thesis profiles are the
    timing table's (tests/test_report.py checks its arithmetic); here only the median run time."""
    out = {}
    for dataset, g in df[(df["family"] != "ptq") & (df["train_seconds"] > 0)].groupby("dataset"):
        out[f"q.time.{dataset}.median_min"] = f(g["train_seconds"].median() / 60)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The report's own values


@pytest.fixture(scope="module")
def reports():
    """Per profile: (results table, the values report.py fills in, what this file recomputes)."""
    out = {}
    tables = {p: load(p) for p in set(PROFILES) | set(TWIN.values())}
    for profile in PROFILES:
        df = tables[profile]
        results_dir = str(REPO / "results" / profile)
        values = report.report_values(df, results_dir, report_profiles())
        twin = TWIN.get(profile)
        values.update(report.backend_values(df, twin, tables[twin] if twin else None))
        expected = {}
        for dataset in sorted(set(df["dataset"])):
            expected.update(expected_settings(df, dataset))
        expected.update(expected_quotes(profile, df))
        if twin:
            expected.update(expected_backend(df, tables[twin]))
        out[profile] = (df, values, expected)
    return out


def report_profiles():
    from lqs_core.workflow import config as wfconfig

    return {name: wfconfig.load_config(REPO / "config" / f"{name}.yaml") for name in report.ESTIMATED_PROFILES}


def used(template):
    return sorted({m.group(1) for m in PLACEHOLDER.finditer((REPO / template).read_text(encoding="utf-8"))})


# ---------------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_quoted_number_is_recomputed(reports, profile):
    """Each s.… / q.… placeholder of the template: report.py's value equals the independent recomputation (the time
    estimates, q.time.<dataset>.<profile>, are cells of the timing table, whose arithmetic tests/test_report.py
    checks)."""
    _, values, expected = reports[profile]
    expected.update(expected_time(reports[profile][0]))
    quoted = [n for n in used(PROFILES[profile]) if n.startswith(("s.", "q."))]
    assert quoted
    unchecked = [n for n in quoted if n not in expected and not re.fullmatch(r"q\.time\.\w+\.(quick|thesis)", n)]
    assert not unchecked, f"placeholders without an independent recomputation here: {unchecked}"
    wrong = {n: (values.get(n), expected[n]) for n in quoted if n in expected and values.get(n) != expected[n]}
    assert not wrong, wrong


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_committed_report_holds_the_recomputed_numbers(reports, profile):
    """Belt and braces beside tests/test_report.py's byte comparison: every recomputed value the template quotes
    stands in the committed report."""
    _, _, expected = reports[profile]
    output = REPO / ("RESULTS.md" if profile == "quick_cpu" else f"results/{profile}/RESULTS.md")
    text = output.read_text(encoding="utf-8")
    missing = [n for n in used(PROFILES[profile]) if n in expected and expected[n] not in text]
    assert not missing, missing


#: Numbers the templates may write outside a placeholder: the thesis' (with their sources in the text), settings
#: of the profiles, the machine, the Snakemake log's wall time. Anything else with a unit is one of ours and must be
#: a placeholder.
THESIS_NUMBERS = {
    # the thesis' (sourced where they stand) and the reference run's
    "0.36 MB", "0.05 MB", "0.03–0.04 MB", "0.16 MB", "1.02 MB", "6.39 MB", "26–40 %", "85 %", "96 %", "95.94 %",
    "92.96 %", "16–25 points", "60–69 %", "8×", "24 unique", "10 unique", "20 unique", "60 unique", "4 bits",
    "5 bits", "100 epochs", "5 seeds",
    # the profiles' settings and fixed thresholds of the text (budgets of the equal-bytes table, 94 %, a point)
    "20 epochs", "6 epochs", "5 epochs", "10 epochs", "2 seeds", "3 seeds", "1 point", "8 bits", "2 bits", "3 bits",
    "2–3 bits", "94 %", "50 kB", "10 000-image", "20 000-image", "50 000 ×",
    # the machine and the Snakemake log
    "70 minutes", "10 s",
}
NUMBER = re.compile(r"(?<![\w.−-])(?:\d{1,3}(?: \d{3})+|\d+(?:\.\d+)?)(?:[–-]\d+(?:\.\d+)?)? ?"
                    r"(?:%|kB|MiB|MB|points|bits|epochs|seeds|unique|minutes|s\b|×|-image)")


@pytest.mark.parametrize("template", sorted(PROFILES.values()))
def test_the_prose_states_no_number_of_ours_outside_a_placeholder(template):
    """Outside placeholders, tables, code blocks and comments the templates' prose has only the thesis' numbers
    (sourced in the text) and fixed settings: a number of ours typed into the prose would drift from the results."""
    text = (REPO / template).read_text(encoding="utf-8")
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("|"))
    text = PLACEHOLDER.sub("⟨x⟩", text)
    found = {m.group(0).strip() for m in NUMBER.finditer(text)}
    strays = sorted(n for n in found if n not in THESIS_NUMBERS)
    assert not strays, f"numbers in the prose that are not placeholders or the thesis': {strays}"


def test_prose_claims_quick_cpu(reports):
    """The quick_cpu report's statements about its numbers hold (RESULTS.md)."""
    df, _, _ = reports["quick_cpu"]
    s = settings(df, "mnist").set_index(["m", "g", "mo", "p", "v"])
    base = s.loc[("float", "", "", -1.0, "")]
    fixed4, lsq4 = s.loc[("fixed", "outputwise", "qat", 4.0, "")], s.loc[("lsq", "outputwise", "qat", 4.0, "")]
    nested10 = s.loc[("nested", "rowwise", "qat", 1e-10, "")]
    assert fixed4["val_accuracy"] >= base["val_accuracy"] and lsq4["val_accuracy"] >= base["val_accuracy"]
    assert nested10["packed_bytes"] > fixed4["packed_bytes"]  # "does not beat in packed size"
    assert fixed4["entropy_bytes"] < nested10["entropy_bytes"] < lsq4["entropy_bytes"]  # "still the smaller file"
    assert nested10["entropy_bits_per_weight"] < fixed4["entropy_bits_per_weight"]  # "the lower entropy"
    ptq = {b: s.loc[("ptq", "outputwise", "", float(b), "")]["val_accuracy"] for b in (2, 4, 8)}
    assert ptq[2] < 0.5 and ptq[8] >= base["val_accuracy"] - 0.002  # breaks at 2 bits, keeps it at 8
    cifar = settings(df, "cifar10").set_index(["m", "g", "mo", "p", "v"])
    assert abs(cifar.loc[("ptq", "outputwise", "", 4.0, "")]["val_accuracy"]
               - cifar.loc[("float", "", "", -1.0, "")]["val_accuracy"]) < 0.002  # keeps it down to 4 bits
    runs = plain(df[(df["dataset"] == "cifar10") & (df["family"] == "nested")]).sort_values("param")
    quantized = runs[runs["param"] > 0]
    assert list(quantized["unique_integers"]) == sorted(quantized["unique_integers"], reverse=True)  # more λ, fewer
    sizes = rowwise(df, "nested", 1e-10)
    assert (sizes["packed_bytes"] > sizes["zip_bytes"]).all() and (sizes["huffman_bytes"] < sizes["zip_bytes"]).all()
    lam0 = rowwise(df, "nested", 0.0)
    assert max(lam0["int_min"].abs().max(), lam0["int_max"].abs().max()) > 18977  # reaches further than the reference
    assert not (rowwise(df, "nested", 1e-10)["unique_integers"] == 10).any()  # "no run of ours at 1e-10 has 10"


def test_prose_claims_mnist(reports):
    """The complete MNIST report's statements about its numbers hold (results/mnist-jax/RESULTS.md)."""
    df, values, _ = reports["mnist-jax"]
    s = settings(df, "mnist").set_index(["m", "g", "mo", "p", "v"])
    base = s.loc[("float", "", "", -1.0, "")]["val_accuracy"]
    top = s.loc[("nested", "columnwise", "ptq", 1e-10, "")]
    for rival in (("hgq2", "weightwise", "qat", 1e-5, ""), ("lsq", "outputwise", "qat", 4.0, ""),
                  ("fixed", "outputwise", "qat", 4.0, ""), ("keras_quantize", "outputwise", "", 4.0, "")):
        r = s.loc[rival]  # "more accurate and smaller than ..."
        assert top["val_accuracy"] > r["val_accuracy"] and top["entropy_bytes"] < r["entropy_bytes"], rival
    assert s.loc[("nested", "columnwise", "ptq", 1e-11, "")]["val_accuracy"] > base  # "ends above the float baseline"
    lsq2, qat10 = s.loc[("lsq", "outputwise", "qat", 2.0, "")], s.loc[("nested", "rowwise", "qat", 1e-10, "")]
    assert lsq2["val_accuracy"] >= qat10["val_accuracy"]  # dominated: at least as accurate
    assert lsq2["entropy_bytes"] <= qat10["entropy_bytes"]  # and no larger
    fixed2 = s.loc[("fixed", "outputwise", "qat", 2.0, "")]
    assert 2 * fixed2["entropy_bytes"] < float(values["q.mnist.reach94.kB"]) * 1000  # "less than half"
    assert s.loc[("ptq", "outputwise", "", 2.0, "")]["val_accuracy"] < 0.5  # "breaks at 2"
    ptq10 = s.loc[("nested", "rowwise", "ptq", 1e-10, "")]
    grads = [s.loc[("nested", "rowwise", "qat", 1e-10, v)] for v in ("", "from5", "from10", "from15")]
    assert all(ptq10["val_accuracy"] > g["val_accuracy"] for g in grads)  # "better than any k"
    assert all(ptq10["unique_integers"] < g["unique_integers"] for g in grads)  # "with the fewest integers"
    assert values["q.mnist.optimal.others"].startswith("scalar QAT")  # the prose names the one exception so
    eq = values["q.mnist.eqbytes.terms_beat_nested"]
    assert "≤ 50 kB: none; ≤ 70 kB: none; ≤ 110 kB: none" in eq  # "from 50 kB on the nested scheme is ahead"
    assert values["q.mnist.lr.better_1e-4"] == values["q.mnist.lr.n"]  # "for every trained method ... 1e-4"
    maxbin11 = s.loc[("maxbin", "scalar", "qat", 1e-11, "")]
    assert maxbin11["entropy_bytes"] <= 30_000  # the small-end example is in the 30 kB budget
    assert float(values["q.backend.nested.maxnsd"]) <= 2.0  # "agree within ... pooled sd at every λ"
