"""Planted signals: what goes into the maps must come out of the tables."""

import numpy as np
import pytest

from breachlab.brain import analysis, rois, stats
from breachlab.brain.corpus import Message
from breachlab.brain.predictions import StoreMeta, StoreWriter, load_store
from breachlab.brain.synth import mesh_adjacency, smooth_field

PLANT = {"dlPFC_lh": 0.05, "dlPFC_rh": 0.03, "ACC": -0.02, "insula": 0.0, "visual_cortex": -0.1, "TPJ": 0.04}


@pytest.fixture(scope="module")
def roiset(need_data):
    return rois.load_rois("destrieux")


def _planted_map(rs, plant):
    m = np.zeros(rois.N_VERTICES)
    for name, v in plant.items():
        m[rs.masks[name]] += v
    return m


def _write(tmp_path, maps: dict, n_tr=3):
    """maps: {(type, language, variant, path): (20484,)} → a store whose TR mean is each map."""
    w = StoreWriter(tmp_path, StoreMeta(model="planted-test"))
    for (t, lang, v, path), m in maps.items():
        msg = Message(id=f"{t}-{lang}-v{v}", type=t, language=lang, text="x", variant=v)
        course = np.stack([m * k for k in np.linspace(0.5, 1.5, n_tr)])  # mean over TRs == m
        w.add(msg, path, course)
    w.close()
    return load_store(tmp_path)


def test_planted_roi_effect_recovered_exactly(tmp_path, roiset):
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.2, rois.N_VERTICES)  # shared by both conditions: cancels in the difference
    effect = _planted_map(roiset, PLANT)
    maps = {}
    for v in range(3):
        maps[("legitimate", "en", v, "text")] = base
        maps[("phishing", "en", v, "text")] = base + effect
    res = analysis.analyze(_write(tmp_path, maps), roiset, n_boot=200, n_perm=200)
    row = analysis.roi_table(res)[0]
    assert (row["path"], row["language"], row["type"]) == ("text", "en", "phishing")
    st = {r["roi"]: r for r in res.roi_stats}
    assert st["dlPFC_lh"]["diff"] == pytest.approx(0.05, abs=1e-6)
    assert st["dlPFC_rh"]["diff"] == pytest.approx(0.03, abs=1e-6)
    n_l, n_r = roiset.masks["dlPFC_lh"].sum(), roiset.masks["dlPFC_rh"].sum()
    assert row["dlPFC"] == pytest.approx((0.05 * n_l + 0.03 * n_r) / (n_l + n_r), abs=1e-6)
    assert row["ACC"] == pytest.approx(-0.02, abs=1e-6)
    assert row["visual_cortex"] == pytest.approx(-0.1, abs=1e-6)
    assert row["TPJ"] == pytest.approx(0.04, abs=1e-6)
    assert row["insula"] == pytest.approx(0.0, abs=1e-6)
    assert row["amygdala"] == "not predicted" and row["NAcc"] == "not predicted"
    assert analysis.fmt_signed(row["visual_cortex"]) == "−0.100"
    assert st["amygdala"]["diff"] is None  # never 0
    # identical variants: CI collapses onto the estimate
    assert st["TPJ"]["ci_low"] == pytest.approx(0.04, abs=1e-6) == st["TPJ"]["ci_high"]


def test_known_correlation_recovered_through_analysis(tmp_path, roiset):
    rng = np.random.default_rng(1)
    cortex = rois.cortex_mask()
    x = rng.standard_normal(rois.N_VERTICES)
    xc = x[cortex] - x[cortex].mean()
    e = rng.standard_normal(cortex.sum())
    e -= e.mean()
    e -= (e @ xc) / (xc @ xc) * xc
    y = np.zeros(rois.N_VERTICES)
    y[cortex] = 0.7 * xc / xc.std() + np.sqrt(1 - 0.49) * e / e.std()
    maps = {("legitimate", "en", 0, "text"): x, ("legitimate", "ja", 0, "text"): y}
    res = analysis.analyze(_write(tmp_path, maps), roiset, n_boot=100, n_perm=100, cortex=cortex)
    (c,) = res.correlations
    assert c["comparison"] == "EN vs JA" and c["r"] == pytest.approx(0.7, abs=1e-6)


def test_null_maps_give_uniform_permutation_p(roiset):
    """Variants drawn from the same distribution: ROI p < 0.05 at about the nominal rate."""
    rng = np.random.default_rng(7)
    ps = []
    for _ in range(150):
        a, b = rng.normal(size=8), rng.normal(size=8)
        ps.append(stats.permutation_test(a, b, n_perm=2000, seed=int(rng.integers(1e9)))[1])
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10


@pytest.fixture(scope="module")
def sphere_and_op(need_data):
    sphere, _ = rois.fsaverage5_mesh("sphere")
    _, faces = rois.fsaverage5_mesh("pial")
    return sphere, mesh_adjacency(faces)


def test_spin_null_rate_and_naive_inflation(sphere_and_op):
    sphere, op = sphere_and_op
    spins = stats.spin_permutations(sphere[:10242], sphere[10242:], n_perm=200, seed=0)
    cortex = rois.cortex_mask()
    rng = np.random.default_rng(3)
    p_spin, p_naive = [], []
    for _ in range(40):
        x, y = smooth_field(rng, op, 30), smooth_field(rng, op, 30)
        p_spin.append(stats.spin_test(x, y, spins, cortex)[1])
        xs, ys = x[cortex], y[cortex]
        p_naive.append(stats.naive_permutation_r_test(xs, ys, n_perm=100, seed=1)[1])
    spin_rate = np.mean(np.array(p_spin) < 0.05)
    naive_rate = np.mean(np.array(p_naive) < 0.05)
    assert spin_rate <= 0.15, spin_rate  # nominal 0.05 (40 maps: binomial 95% range up to ~0.125)
    assert naive_rate > spin_rate  # vertex shuffling ignores smoothness: false positives


def test_spin_detects_a_real_relation(sphere_and_op):
    sphere, op = sphere_and_op
    spins = stats.spin_permutations(sphere[:10242], sphere[10242:], n_perm=100, seed=0)
    rng = np.random.default_rng(5)
    x = smooth_field(rng, op, 30)
    y = x + 0.3 * smooth_field(rng, op, 30)
    r, p = stats.spin_test(x, y, spins, rois.cortex_mask())
    assert r > 0.9 and p == pytest.approx(1 / 101)


def test_window_mean():
    arr = np.arange(12, dtype=float).reshape(6, 2)
    assert analysis.window_mean(arr, 1.0, 2.0, 4.0).tolist() == [5.0, 6.0]
    with pytest.raises(ValueError, match="holds no TR"):
        analysis.window_mean(arr, 1.0, 10.0)


def _write_with_subcortex(tmp_path, labels, planted: dict, n_tr=3):
    """A store with a supplied head's sidecars: column values per (type) from ``planted``."""
    w = StoreWriter(tmp_path, StoreMeta(model="planted-test", has_subcortical=True,
                                        notes={"subcortical": {"status": "user head", "labels": labels}}))
    rng = np.random.default_rng(1)
    for t in ("legitimate", "phishing"):
        for v in range(3):
            msg = Message(id=f"{t}-en-v{v}", type=t, language="en", text="x", variant=v)
            w.add(msg, "text", rng.normal(0, 0.1, (n_tr, rois.N_VERTICES)).astype(np.float32))
            sub = np.tile(np.array([planted.get((t, label), 0.0) for label in labels], np.float32), (n_tr, 1))
            np.save(tmp_path / "predictions" / f"{msg.id}.text.subcortical.npy", sub)
    w.close()
    return load_store(tmp_path)


def test_a_supplied_subcortical_head_is_analysed(tmp_path, roiset):
    labels = ["Left-Amygdala", "Right-Amygdala", "Left-Accumbens-area", "Thalamus"]
    planted = {("phishing", "Left-Amygdala"): 0.3, ("phishing", "Right-Amygdala"): 0.1,
               ("phishing", "Thalamus"): 9.0}
    store = _write_with_subcortex(tmp_path, labels, planted)
    assert store.meta.has_subcortical and len(store.subcortical) == 6
    res = analysis.analyze(store, roiset, n_boot=200, n_perm=200)
    assert res.not_predicted == ()
    row = analysis.roi_table(res)[0]
    assert row["amygdala"] == pytest.approx(0.2, abs=1e-6)  # mean of its two labelled columns
    assert row["NAcc"] == pytest.approx(0.0, abs=1e-6)  # "accumbens" matched; thalamus never counted


def test_subcortex_without_matching_labels_stays_not_predicted(tmp_path, roiset):
    store = _write_with_subcortex(tmp_path, ["v0", "v1"], {})
    res = analysis.analyze(store, roiset, n_boot=200, n_perm=200)
    assert set(res.not_predicted) == {"amygdala", "NAcc"}
    assert analysis.roi_table(res)[0]["amygdala"] == "not predicted"
