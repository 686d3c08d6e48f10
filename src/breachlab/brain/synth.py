"""Synthetic predictions with planted effects: ``breachlab brain synth CORPUS_OR_RENDER_RUN --out DIR``.

A stand-in for the encoder (next issue) so that the analysis, figures and report run end to
end today — and a ground truth for the tests.  Every store it writes says ``synthetic: true``
and its model is named SYNTHETIC; every figure and report title built from it says so too.

What is planted (per path, on fsaverage5):

* a smooth response pattern shared by all messages of a path (text vs screenshot differ);
* for each scam type, a constant added inside each ROI equal to post 4's EN table value
  (type − legitimate), so the ROI table should recover post 4's numbers up to variant noise
  (``variant_noise=0`` recovers them exactly); Japanese phishing text gets dlPFC +0.124,
  the one Japanese value the post reports;
* a language-specific smooth pattern per (type, path) whose size is set so the EN–JA map
  correlation lands at post 4's r (text 0.59–0.91, screenshot 0.98–0.99);
* smooth per-variant noise, and a haemodynamic-like time course whose mean over TRs is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from breachlab.brain.corpus import Corpus, Message
from breachlab.brain.rois import N_VERTICES, RoiSet

#: post 4, Figure 14: ROI means of (type − legitimate), EN corpus.
POST4_ROI_TABLE = {
    "text": {
        "phishing": {"dlPFC": 0.053, "ACC": 0.047, "insula": 0.012, "visual_cortex": 0.007, "TPJ": 0.028},
        "investment": {"dlPFC": 0.061, "ACC": -0.007, "insula": -0.005, "visual_cortex": -0.106, "TPJ": 0.047},
        "fake_shop": {"dlPFC": 0.074, "ACC": 0.023, "insula": 0.023, "visual_cortex": -0.036, "TPJ": 0.039},
        "pyramid": {"dlPFC": 0.024, "ACC": -0.013, "insula": -0.006, "visual_cortex": -0.096, "TPJ": 0.000},
    },
    "screenshot": {
        "phishing": {"dlPFC": -0.038, "ACC": -0.050, "insula": -0.016, "visual_cortex": -0.136, "TPJ": -0.045},
        "investment": {"dlPFC": -0.033, "ACC": -0.049, "insula": -0.014, "visual_cortex": -0.143, "TPJ": -0.046},
        "fake_shop": {"dlPFC": -0.035, "ACC": -0.049, "insula": -0.015, "visual_cortex": -0.148, "TPJ": -0.049},
        "pyramid": {"dlPFC": -0.006, "ACC": 0.005, "insula": 0.045, "visual_cortex": -0.093, "TPJ": 0.030},
    },
}
#: post 4: EN vs JA Pearson r per type and path.
POST4_EN_JA_R = {
    "text": {"phishing": 0.604, "investment": 0.911, "fake_shop": 0.592, "pyramid": 0.610, "legitimate": 0.8},
    "screenshot": {"phishing": 0.994, "investment": 0.998, "fake_shop": 0.995, "pyramid": 0.983, "legitimate": 0.99},
}
JA_OVERRIDES = {("text", "phishing", "dlPFC"): 0.124}


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0
    paths: tuple[str, ...] = ("text", "screenshot")
    variant_noise: float = 0.01
    pattern_sd: float = 0.1
    smooth_iters: int = 12
    tr_noise: float = 0.002
    screenshot_n_tr: int = 8


def mesh_adjacency(faces: np.ndarray, n: int = N_VERTICES):
    """Row-normalised (vertex + neighbours) averaging operator from mesh faces."""
    from scipy import sparse

    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0], np.arange(n)])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2], np.arange(n)])
    a = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sparse.diags(1.0 / deg) @ a


def smooth_field(rng: np.random.Generator, op, iters: int) -> np.ndarray:
    """A spatially smooth random map with zero mean and unit SD."""
    x = rng.standard_normal(op.shape[0])
    for _ in range(iters):
        x = op @ x
    x -= x.mean()
    return x / x.std()


def hrf_course(n_tr: int) -> np.ndarray:
    """A gamma-shaped time course scaled so that its mean is exactly 1."""
    t = np.arange(n_tr, dtype=float) + 1.0
    h = t ** 2 * np.exp(-t / 1.5)
    return h / h.mean()


def n_tr_for(msg: Message, path: str, opts: SynthOptions) -> int:
    if path == "screenshot":
        return opts.screenshot_n_tr
    words = len(msg.text.split()) if msg.language == "en" else len(msg.text) / 4.0
    return max(6, int(math.ceil(words / 2.5)) + 4)


def planted_value(path: str, typ: str, roi: str, language: str) -> float:
    if (path, typ, roi) in JA_OVERRIDES and language == "ja":
        return JA_OVERRIDES[(path, typ, roi)]
    return POST4_ROI_TABLE.get(path, {}).get(typ, {}).get(roi, 0.0)


def synthesize_maps(corpus: Corpus, rois: RoiSet, faces: np.ndarray,
                    opts: SynthOptions) -> dict[tuple[str, str], np.ndarray]:
    """{(message id, path): spatial map (20484,)} — the mean response each prediction will have."""
    rng = np.random.default_rng(opts.seed)
    op = mesh_adjacency(faces)
    hemi_masks = [rois.masks[f"{r}_{h}"] for r in rois.bilateral for h in ("lh", "rh")]

    def fields(demean: bool = False) -> np.ndarray:
        f = smooth_field(rng, op, opts.smooth_iters)
        if demean:  # zero mean inside every ROI: the ROI table then shows only the planted values
            for mask in hemi_masks:
                f[mask] -= f[mask].mean()
        return f

    types = sorted({m.type for m in corpus})
    langs = sorted({m.language for m in corpus})
    out: dict[tuple[str, str], np.ndarray] = {}
    for path in opts.paths:
        base = opts.pattern_sd * fields()
        type_pat = {t: 0.5 * opts.pattern_sd * fields(True) for t in types}
        lang_pat = {}
        for t in types:
            shared_sd = float(np.std(base + type_pat[t]))
            r = POST4_EN_JA_R.get(path, {}).get(t, 0.9)
            # two independent language parts of SD s each: r = S² / (S² + s²)
            s = shared_sd * math.sqrt(max(1.0 / r - 1.0, 0.0))
            lang_pat.update({(t, lang): s * fields(True) for lang in langs})
        for m in corpus:
            vmap = base + type_pat[m.type] + lang_pat[(m.type, m.language)]
            for roi in rois.bilateral:
                v = planted_value(path, m.type, roi, m.language)
                if v:
                    vmap = vmap + v * rois.masks[roi]
            if opts.variant_noise:
                vmap = vmap + opts.variant_noise * fields()
            out[(m.id, path)] = vmap
    return out


def synthesize(corpus: Corpus, rois: RoiSet, faces: np.ndarray, opts: SynthOptions):
    """Yield (message, path, array (n_TR, 20484)) for every message and path."""
    maps = synthesize_maps(corpus, rois, faces, opts)
    rng = np.random.default_rng(opts.seed + 1)
    for m in corpus:
        for path in opts.paths:
            n = n_tr_for(m, path, opts)
            course = hrf_course(n)[:, None] * maps[(m.id, path)][None, :]
            if opts.tr_noise:
                noise = opts.tr_noise * rng.standard_normal(course.shape)
                course = course + (noise - noise.mean(axis=0, keepdims=True))  # keeps the TR mean exact
            yield m, path, course.astype(np.float32)
