"""The brain stages, each ``run_*(…) -> Path`` of a run directory; the CLI only parses and calls.

render:  corpus            → screenshots/, video/ (still-video manifests), texts/, grid.png
synth:   corpus/render run → predictions/ (SYNTHETIC, planted effects)
analyze: predictions dir   → tables/, maps/, figures/, report.html, results.json
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Callable

from breachlab.brain.configs import AnalyzeConfig, RenderConfig, SynthConfig
from breachlab.brain.corpus import Corpus, dump_corpus, load_corpus
from breachlab.rundir import RunDir, atomic_write_json, atomic_write_text, sha256_file

log = logging.getLogger("breachlab.brain")


def _render_options(cfg: RenderConfig):
    from breachlab.brain.render import RenderOptions

    return RenderOptions(width=cfg.width, height=cfg.height, scale=cfg.scale, fidelity=cfg.fidelity,
                         presentation=cfg.presentation, fit=cfg.fit_height)


def run_render(corpus_path: str | Path, cfg: RenderConfig, *, out: str | Path | None = None,
               root: str | Path = "runs", corpus: Corpus | None = None) -> Path:
    """Render every message: PNG, still-video manifest, text file; plus the corpus grid."""
    from breachlab.brain import render
    from breachlab.brain.grid import corpus_grid

    corpus = corpus or load_corpus(corpus_path)
    run = RunDir.create("brain-render", cfg, root=root, out=out, inputs=[corpus_path] if corpus_path else [])
    with run.running("breachlab"):
        dump_corpus(corpus, run / "corpus.json")
        opts = _render_options(cfg)
        images, index = {}, []
        for m in corpus:
            img = render.render_message(m, opts)
            png = run / "screenshots" / f"{m.id}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            png.write_bytes(render.png_bytes(img))
            video = render.write_still_video(png, run / "video", m.id, n_frames=cfg.n_frames, fps=cfg.fps,
                                             materialize=cfg.materialize_frames)
            txt = atomic_write_text(run / "texts" / f"{m.id}.txt", m.text + "\n")
            images[m.id] = img
            index.append({"id": m.id, "type": m.type, "language": m.language, "variant": m.variant,
                          "presentation": cfg.presentation or m.presentation,
                          "screenshot": str(png.relative_to(run.path)), "video": str(video.relative_to(run.path)),
                          "text": str(txt.relative_to(run.path)), "sha256": sha256_file(png)})
        grid = corpus_grid(images, corpus, thumb_width=cfg.grid_thumb_width,
                                  title=f"Corpus '{corpus.name}': {len(corpus)} rendered stimuli ({cfg.fidelity})")
        grid.save(run / "grid.png", format="PNG")
        atomic_write_json(run / "stimuli.json", {"corpus": corpus.name, "render": cfg.__dict__, "stimuli": index})
        log.info("rendered %d stimuli into %s", len(index), run)
    return run.path


def run_synth(source: str | Path, cfg: SynthConfig, *, out: str | Path | None = None,
              root: str | Path = "runs") -> Path:
    """Write a SYNTHETIC predictions store for a corpus file or a render run directory."""
    from breachlab.brain import rois as rois_mod
    from breachlab.brain.predictions import SYNTHETIC_MODEL, StoreMeta, StoreWriter
    from breachlab.brain.synth import SynthOptions, synthesize

    corpus = load_corpus(source)
    roiset = rois_mod.load_rois(cfg.atlas)
    _, faces = rois_mod.fsaverage5_mesh("pial")
    run = RunDir.create("brain-synth", cfg, root=root, out=out, seed=cfg.seed, inputs=[source])
    with run.running("breachlab"):
        dump_corpus(corpus, run / "corpus.json")
        render_run = Path(source) if Path(source).is_dir() and (Path(source) / "stimuli.json").is_file() else None
        writer = StoreWriter(run.path, StoreMeta(model=SYNTHETIC_MODEL, synthetic=True, notes={
            "planted": "post 4 ROI table (type - legitimate) inside ROIs; EN-JA r from post 4",
            "render_run": str(render_run.resolve()) if render_run else None, "atlas": cfg.atlas, "seed": cfg.seed}))
        opts = SynthOptions(seed=cfg.seed, paths=tuple(cfg.paths), variant_noise=cfg.variant_noise,
                            pattern_sd=cfg.pattern_sd)
        for m, path, arr in synthesize(corpus, roiset, faces, opts):
            writer.add(m, path, arr)
        writer.close()
        run.update_manifest(synthetic=True, render_run=str(render_run) if render_run else None)
    return run.path


#: the value of the leading ``predictions`` column of every table made from synthetic predictions
SYNTHETIC_LABEL = "SYNTHETIC"


def _csv(rows: list[dict[str, Any]], source: str | None = None) -> str:
    """CSV text; ``source`` (SYNTHETIC or the model id) becomes a leading ``predictions`` column.

    Why a column and not a ``#`` comment line: every CSV reader keeps a column, so a number
    copied out of ``roi_table.csv`` carries its label into any spreadsheet or data frame.
    """
    if not rows:
        return ""
    if source is not None:
        rows = [{"predictions": source, **r} for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _by_roi_table(res) -> list[dict[str, Any]]:
    """Post 4 Figure 14's shape: one row per ROI, one column per 'Type (path)' (per language)."""
    from breachlab.brain.analysis import fmt_signed, roi_table

    table = roi_table(res)
    rois = [k for k in (table[0] if table else {}) if k not in ("path", "language", "type")]
    out = []
    for roi in rois:
        row = {"ROI": roi}
        for r in table:
            row[f"{r['type']} ({r['path']}, {r['language'].upper()})"] = fmt_signed(r[roi])
        out.append(row)
    return out


def run_analyze(pred_dir: str | Path, cfg: AnalyzeConfig, *, out: str | Path | None = None,
                root: str | Path = "runs", progress: Callable[[str], None] | None = None) -> Path:
    """Maps, ROI tables, statistics, figures and the HTML report for a predictions directory.

    ``progress`` receives one line per step (the spin permutations, the statistics and the
    figures each take from seconds to minutes); every line says SYNTHETIC when the
    predictions are, and so do the tables (a ``predictions`` column), the maps (``meta_*``
    arrays), the manifest, ``results.json`` and the report.
    """
    import numpy as np

    from breachlab.brain import analysis, report, rois as rois_mod, stats
    from breachlab.brain.predictions import load_store

    say = progress or (lambda line: log.info("%s", line))
    store = load_store(pred_dir)
    synthetic = store.meta.synthetic
    label = "[SYNTHETIC] " if synthetic else ""

    def step(text: str) -> None:
        say(f"analyze: {label}{text}")

    analysis.check_contrasts({e.type for e in store}, f"{pred_dir}: the predictions")
    step(f"{len(store.entries)} predictions of {store.meta.model}")
    roiset = rois_mod.load_rois(cfg.atlas, cfg.rois_file)
    cortex = rois_mod.cortex_mask("destrieux")
    spins = None
    if cfg.n_spin:
        step(f"{cfg.n_spin} sphere rotations for the spin tests")
        sphere, _ = rois_mod.fsaverage5_mesh("sphere")
        spins = stats.spin_permutations(sphere[:10242], sphere[10242:], cfg.n_spin, cfg.seed)
    run = RunDir.create("brain-analyze", cfg, root=root, out=out, seed=cfg.seed,
                        inputs=[Path(pred_dir) / "predictions" / "index.json"])
    tag = store.title_tag
    source = SYNTHETIC_LABEL if synthetic else store.meta.model
    with run.running("breachlab"):
        run.update_manifest(synthetic=synthetic, model=store.meta.model,
                            **({"label": "SYNTHETIC predictions: planted effects, not brain responses"}
                               if synthetic else {}))
        step(f"ROI statistics ({cfg.n_boot} bootstrap, {cfg.n_perm} permutations) and map correlations")
        res = analysis.analyze(store, roiset, start_s=cfg.window_start_s, end_s=cfg.window_end_s,
                               n_boot=cfg.n_boot, n_perm=cfg.n_perm, ci=cfg.ci, seed=cfg.seed,
                               spins=spins, cortex=cortex)
        step("tables and maps")
        t = run / "tables"
        atomic_write_text(t / "roi_table.csv", _csv(analysis.roi_table(res), source))
        atomic_write_text(t / "roi_table_by_roi.csv", _csv(_by_roi_table(res), source))
        atomic_write_text(t / "roi_stats.csv", _csv(res.roi_stats, source))
        atomic_write_text(t / "roi_values.csv", _csv(res.roi_values, source))
        atomic_write_text(t / "correlations.csv", _csv(res.correlations, source))
        atomic_write_text(t / "roi_labels.csv", _csv([{"roi": k, "atlas": roiset.atlas, "labels": " ".join(v)}
                                                       for k, v in roiset.labels_used.items()], source))
        (run / "maps").mkdir(exist_ok=True)
        meta = {"meta_synthetic": np.array(synthetic), "meta_predictions": np.array(source),
                "meta_model": np.array(store.meta.model)}
        np.savez_compressed(run / "maps" / "condition_maps.npz", **meta,
                            **{"__".join(k): v for k, v in res.condition_maps.items()})
        np.savez_compressed(run / "maps" / "differential_maps.npz", **meta,
                            **{"__".join(k): v for k, v in res.differential_maps.items()})
        figures = _figures(res, store, cfg, run.path / "figures", tag, step) if cfg.figures != "none" else []
        provenance = {"predictions": str(Path(pred_dir).resolve()), "model": store.meta.model,
                      "TR / offset": f"{store.meta.tr_s} s / {store.meta.offset_s} s", "atlas": roiset.atlas,
                      "stimuli": len({e.stimulus_id for e in store}),
                      "predictions (stimulus × path)": len(store.entries),
                      "window": f"{cfg.window_start_s}–{cfg.window_end_s or 'end'} s",
                      "bootstrap / permutations / spins": f"{cfg.n_boot} / {cfg.n_perm} / {cfg.n_spin}"}
        step("report.html")
        atomic_write_text(run / "report.html", report.render_html(res, figures, provenance=provenance))
        atomic_write_json(run / "results.json", {"synthetic": res.synthetic, "model": res.model,
                                                 "roi_table": analysis.roi_table(res), "roi_stats": res.roi_stats,
                                                 "correlations": res.correlations,
                                                 "not_predicted": list(res.not_predicted),
                                                 "figures": [str(p.relative_to(run.path)) for _, p in figures]})
    step(f"done: {run.path}")
    return run.path


def _figures(res, store, cfg: AnalyzeConfig, fig_dir: Path, tag: str,
             step: Callable[[str], None]) -> list[tuple[str, Path]]:
    from breachlab.brain import plots, render
    from breachlab.brain.corpus import load_corpus
    from breachlab.brain.grid import corpus_grid
    from breachlab.brain.plots import symmetric_vmax

    figs: list[tuple[str, Path]] = []
    fig_dir.mkdir(parents=True, exist_ok=True)
    # corpus grid: reuse the render run's grid when there is one
    grid = fig_dir / "corpus_grid.png"
    rr = (store.meta.notes or {}).get("render_run")
    if rr and (Path(rr) / "grid.png").is_file():
        grid.write_bytes((Path(rr) / "grid.png").read_bytes())
    elif (store.root / "corpus.json").is_file():
        corpus = load_corpus(store.root / "corpus.json")
        imgs = {m.id: render.render_message(m) for m in corpus}
        corpus_grid(imgs, corpus, title=f"{tag}Corpus '{corpus.name}' ({len(corpus)} stimuli)").save(grid)
    if grid.is_file():
        figs.append(("Corpus grid: every stimulus as rendered for the screenshot path", grid))
    bars = fig_dir / "roi_bars.png"
    step(f"figure {bars.name}")
    plots.plot_roi_bars(res.roi_stats, f"{tag}ROI response, type − baseline", output_file=bars)
    figs.append(("ROI bars with bootstrap 95% CIs over variants", bars))
    diff_vmax = symmetric_vmax(list(res.differential_maps.values())) if res.differential_maps else None
    scams = [t for t in res.types if any(k[2] == t for k in res.differential_maps)]
    full = cfg.figures == "all"
    if "text" in res.paths and "screenshot" in res.paths:
        for lang in res.languages if full else res.languages[:1]:
            rows = [(f"{t} {p}", res.differential_maps[(p, lang, t)]) for t in (scams if full else scams[:1])
                    for p in ("text", "screenshot") if (p, lang, t) in res.differential_maps]
            if rows:
                f = fig_dir / f"text_vs_screenshot_{lang}.png"
                step(f"figure {f.name}")
                plots.plot_maps_grid(rows, f"{tag}Text vs screenshot, type − baseline ({lang.upper()})", vmax=diff_vmax,
                                     output_file=f)
                figs.append((f"Text path vs screenshot path side by side ({lang.upper()})", f))
    if "en" in res.languages and "ja" in res.languages:
        for p in res.paths if full else res.paths[:1]:
            rows = [(f"{t} {lang.upper()}", res.differential_maps[(p, lang, t)]) for t in (scams if full else scams[:1])
                    for lang in ("en", "ja") if (p, lang, t) in res.differential_maps]
            if rows:
                f = fig_dir / f"en_vs_ja_{p}.png"
                step(f"figure {f.name}")
                plots.plot_maps_grid(rows, f"{tag}EN vs JA, type − baseline ({p} path)", vmax=diff_vmax, output_file=f)
                figs.append((f"English vs Japanese side by side ({p} path)", f))
    if full:
        for p in res.paths:
            for lang in res.languages:
                rows = [(t, res.differential_maps[(p, lang, t)]) for t in scams
                        if (p, lang, t) in res.differential_maps]
                if rows:
                    f = fig_dir / f"differential_{p}_{lang}.png"
                    step(f"figure {f.name}")
                    plots.plot_maps_grid(rows, f"{tag}Differential maps, type − baseline ({p}, {lang.upper()})",
                                         vmax=diff_vmax, output_file=f)
                    figs.append((f"Differential maps ({p} path, {lang.upper()})", f))
                rows = [(t, res.condition_maps[(p, lang, t)]) for t in res.types if (p, lang, t) in res.condition_maps]
                f = fig_dir / f"condition_{p}_{lang}.png"
                step(f"figure {f.name}")
                plots.plot_maps_grid(rows, f"{tag}Condition maps, mean response ({p}, {lang.upper()})", output_file=f)
                figs.append((f"Condition maps ({p} path, {lang.upper()})", f))
    return figs
