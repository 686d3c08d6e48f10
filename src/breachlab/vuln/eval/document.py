"""Neutral report blocks rendered twice — Markdown and self-contained HTML — so they never drift.

A block is a tuple: ``("h", level, text)``, ``("p", text)``, ``("warn", [str])``,
``("table", headers, rows)``, ``("fig", key, png_bytes, caption)`` or ``("pre", caption, text)``.
Model outputs are untrusted text (a model can emit ``<script>``), so every string goes
through one escaping path per format; the HTML embeds figures as base64 PNG and needs no
network, no JS and no other file, so it can be mailed or archived in an air-gapped network.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any, Sequence

from breachlab.rundir import atomic_write_text

Block = tuple  # ("h", level, text) | ("p", text) | ("warn", [str]) | ("table", headers, rows)
#                | ("fig", key, png_bytes, caption) | ("pre", caption, text)


# ---------------------------------------------------------------------------- formatting
def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def fmt_ci(ci: Sequence[float] | None) -> str:
    return "–" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "run"


# ---------------------------------------------------------------------------- renderers
def _md_cell(v: Any) -> str:
    return html.escape(str(v), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_inline(v: Any) -> str:
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", str(v))


def render_markdown(title: str, blocks: Sequence[Block], fig_dir: str = "figures") -> str:
    out = [f"# {_md_inline(title)}", ""]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out += ["#" * b[1] + " " + _md_inline(b[2]), ""]
        elif kind == "p":
            out += [_md_inline(b[1]), ""]
        elif kind == "warn":
            out += [f"> **WARNING** {_md_inline(w)}  " for w in b[1]] + [""]
        elif kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in b[1]) + " |")
            out.append("|" + "|".join("---" for _ in b[1]) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]] + [""]
        elif kind == "fig":
            out += [f"![{_md_inline(b[3])}]({fig_dir}/{b[1]}.png)", ""]
        elif kind == "pre":
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", b[2])), default=0))
            out += [f"*{_md_inline(b[1])}*", "", fence + "text", b[2], fence, ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}\
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}.warn{background:#fff0f0;border-left:6px solid #c00;
padding:.5em 1em;font-weight:600;color:#900}\
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}
figure{display:inline-block;margin:.5em}figcaption{font-size:.8em;color:#555}"""


def render_html(title: str, blocks: Sequence[Block]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "warn":
            out += [f'<div class="warn">WARNING: {e(w)}</div>' for w in b[1]]
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</table>")
        elif kind == "fig":
            data = base64.b64encode(b[2]).decode("ascii")
            out.append(f'<figure><img alt="{e(b[3])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(b[3])}</figcaption></figure>")
        elif kind == "pre":
            out.append(f"<p><em>{e(b[1])}</em></p><pre>{e(b[2])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_documents(out_dir: Path, title: str, blocks: Sequence[Block], stem: str = "report") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (+ ``figures/*.png``) and a self-contained ``<stem>.html``."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    for b in blocks:
        if b[0] == "fig":
            fig_dir.mkdir(parents=True, exist_ok=True)
            (fig_dir / f"{b[1]}.png").write_bytes(b[2])
    md = atomic_write_text(out_dir / f"{stem}.md", render_markdown(title, blocks))
    page = atomic_write_text(out_dir / f"{stem}.html", render_html(title, blocks))
    return md, page
