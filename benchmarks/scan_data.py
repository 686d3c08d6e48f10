"""Labelled C/C++ trees for the scan benchmarks (Juliet 1.3, SVEN, PairVul, CVEfixes).

``python benchmarks/scan_data.py OUT_DIR --split bench|calib`` writes
``OUT_DIR/{juliet,sven,pairvul,cvefixes}`` and ``OUT_DIR/labels.json``.  The two splits never
share a Juliet family, a SVEN pair, a PairVul CVE or a CVEfixes pair: Juliet families go by a
hash bucket of the family name (0-2 → calib, 3-9 → bench), SVEN by the dataset's own split
(train → calib, val → bench), PairVul by a hash bucket of the CVE id (0-4 → calib, 5-9 →
bench; its own train/test share 249 CVEs), CVEfixes by a hash bucket of ``pair_id`` (unpaired
functions by their id) with the same cut.

Juliet files are made fair for a model: comments stripped and label-bearing identifiers
(``CWE121_…_bad``, ``goodG2B``) renamed, string literals that name the intent replaced —
all *line-preserving*, so function spans stay exact.  Each single-file test case becomes
two files: ``*_a`` keeps the bad function, ``*_b`` the good variants (the other side's
functions are blanked), so the file level has both classes.  SVEN pairs become one file
with the vulnerable function and one with the fixed function.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from breachlab.vuln.data.sources.juliet import LEAK_TEXT, is_leaky_name  # noqa: E402
from breachlab.vuln.scan.extract import extract_functions  # noqa: E402

CWES = ("CWE121", "CWE122", "CWE124", "CWE126", "CWE127", "CWE134", "CWE190", "CWE191", "CWE415", "CWE416",
        "CWE476", "CWE401", "CWE457", "CWE369", "CWE78", "CWE23", "CWE680", "CWE761",
        "CWE129", "CWE590", "CWE690", "CWE467", "CWE194", "CWE195", "CWE197", "CWE675")
_SINGLE = re.compile(r"testcases/(CWE\d+)_[^/]*/(?:s\d+/)?"
                     r"(?P<stem>(?P<family>CWE\d+_.+?)_(?P<var>\d{2}))\.(?P<ext>c|cpp)$")
_TOKEN = re.compile(r"""(?P<comment>/\*.*?\*/|//[^\n]*)|(?P<str>(?:u8|[LuU])?"(?:\\.|[^"\\\n])*")|"""
                    r"""(?P<chr>'(?:\\.|[^'\\\n])*')|(?P<id>[A-Za-z_]\w*)|(?P<other>.)""", re.S)
_BAD = re.compile(r"(?:^|_)bad$")
_GOOD_VARIANT = re.compile(r"^good(?:G2B|B2G)?\d*$|_good(?:G2B|B2G)\d*$")


def bucket(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10


def neutralise_file(text: str) -> str:
    """Strip comments and leaky names/strings without moving any line."""
    names: dict[str, str] = {}
    out = []
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind == "comment":
            out.append("\n" * tok.count("\n") if "\n" in tok else " ")
        elif kind == "id" and is_leaky_name(tok) and tok not in ("main",):
            out.append(names.setdefault(tok, f"id_{len(names) + 1}"))
        elif kind == "str" and LEAK_TEXT.search(tok):
            out.append('"string"')
        else:
            out.append(tok)
    return "".join(out)


def label_of(name: str) -> int | None:
    last = name.split("::")[-1]
    if _BAD.search(last):
        return 1
    if _GOOD_VARIANT.search(last):
        return 0
    return None


def flaw_lines(orig: str, start: int, end: int) -> list[int]:
    """Lines Juliet marks as the flaw: the first code line after each ``POTENTIAL FLAW`` comment."""
    lines = orig.split("\n")
    out = []
    i = start - 1
    while i < end:
        if "POTENTIAL FLAW" in lines[i]:
            j = i
            while j < end and "*/" not in lines[j]:
                j += 1
            j += 1
            while j < end and (not lines[j].strip() or lines[j].strip().startswith(("/*", "//", "*"))):
                j += 1
            if j < end:
                out.append(j + 1)
            i = j
        i += 1
    return out


def changed_lines(before: str, after: str) -> list[int]:
    """Lines of ``before`` a fix changed or removed (an insertion marks the line it follows)."""
    import difflib

    a, b = before.split("\n"), after.split("\n")
    out: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            out.update(range(i1 + 1, i2 + 1))
        elif tag == "insert":
            out.add(max(i1, 1))
    return sorted(out)


def blank(lines: list[str], start: int, end: int) -> None:
    for i in range(start - 1, end):
        lines[i] = ""


def build_juliet(out: Path, split: str, per_cwe: int) -> list[dict]:
    want = range(0, 3) if split == "calib" else range(3, 10)
    members: dict[str, list] = {}
    with tarfile.open(DATA / "juliet" / "juliet-c-cpp-1.3.tar.xz") as tar:
        for info in tar:
            if re.search(r"testcasesupport/[^/]+\.h$", info.name) and info.isfile():
                # the suite's own headers sit beside the test cases, as a real tree's headers do:
                # clang-tidy then compiles each file standalone (it gives nothing for a file that does not)
                (out / "juliet").mkdir(parents=True, exist_ok=True)
                (out / "juliet" / Path(info.name).name).write_bytes(tar.extractfile(info).read())
                continue
            m = _SINGLE.search(info.name)
            if not m or not info.isfile() or m.group(1) not in CWES:
                continue
            if bucket(m.group("family")) not in want or int(m.group("var")) > 22:
                continue
            cwe = m.group(1)
            if len(members.setdefault(cwe, [])) >= per_cwe * 4:
                continue
            members[cwe].append((info.name, tar.extractfile(info).read()))
    rows = []
    for cwe, items in sorted(members.items()):
        items.sort(key=lambda it: hashlib.sha256(it[0].encode()).hexdigest())
        taken = 0
        for name, data in items:
            if taken >= per_cwe:
                break
            m = _SINGLE.search(name)
            orig = data.decode("utf-8", "replace")
            orig_funcs = extract_functions(orig.encode(), "cpp" if m.group("ext") == "cpp" else "c")
            labelled = [(f, label_of(f.name)) for f in orig_funcs]
            if not any(lab == 1 for _, lab in labelled) or not any(lab == 0 for _, lab in labelled):
                continue
            text = neutralise_file(orig)
            lines = text.split("\n")
            case = f"{cwe}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
            for side, keep in (("a", 1), ("b", 0)):
                ls = list(lines)
                for f, lab in labelled:
                    if f.name.split("::")[-1] == "main" or (lab is not None and lab != keep) or \
                            (lab is None and re.search(r"(?:^|_)good$", f.name.split("::")[-1])):
                        blank(ls, f.start_line, f.end_line)
                rel = f"juliet/{case}_{side}.{m.group('ext')}"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_text("\n".join(ls))
                funcs = [{"start_line": f.start_line, "label": lab,
                          **({"flaw_lines": flaw_lines(orig, f.start_line, f.end_line)} if lab == 1 else {})}
                         for f, lab in labelled if lab == keep]
                rows.append({"path": rel, "file_label": keep, "functions": funcs, "cwe": cwe, "source": "juliet"})
            taken += 1
    return rows


def build_sven(out: Path, split: str, max_lines: int, limit: int) -> tuple[list[dict], dict]:
    src = "train" if split == "calib" else "val"
    pairs = []
    for f in sorted((DATA / "sven" / src).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            ext = Path(d["file_name"]).suffix.lower()
            if ext in (".c", ".cc", ".cpp", ".h", ".cxx", ".hpp"):
                pairs.append((d, ext))
    pairs.sort(key=lambda p: hashlib.sha256(p[0]["commit_link"].encode() + p[0]["func_name"].encode()).hexdigest())
    rows, dropped = [], {"too_long": 0, "identical": 0}
    for d, ext in pairs:
        if len(rows) >= 2 * limit:
            break
        before, after = d["func_src_before"], d["func_src_after"]
        if max(before.count("\n"), after.count("\n")) + 1 > max_lines:
            dropped["too_long"] += 1
            continue
        if " ".join(before.split()) == " ".join(after.split()):
            dropped["identical"] += 1
            continue
        key = hashlib.sha256((d["commit_link"] + d["func_name"]).encode()).hexdigest()[:10]
        for side, code, lab in (("before", before, 1), ("after", after, 0)):
            rel = f"sven/{d['vul_type']}_{key}_{side}{ext}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(code)
            flaws = {"flaw_lines": changed_lines(before, after)} if lab == 1 else {}
            rows.append({"path": rel, "file_label": lab, "functions": [{"start_line": None, "label": lab, **flaws}],
                         "cwe": d["vul_type"].upper(), "source": "sven"})
    return rows, {"pairs_available": len(pairs), **dropped}


def _pair_files(out: Path, source: str, key: str, name: str, before: str, after: str | None, cwe: str,
                ext: str = ".c") -> list[dict]:
    """Write one vulnerable file (and its fixed twin when ``after`` is given); their label rows."""
    rows = []
    sides = [("before", before, 1)] + ([("after", after, 0)] if after is not None else [])
    for side, code, lab in sides:
        rel = f"{source}/{name}_{key}_{side}{ext}"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(code)
        flaws = {"flaw_lines": changed_lines(before, after)} if lab == 1 and after is not None else {}
        rows.append({"path": rel, "file_label": lab, "functions": [{"start_line": None, "label": lab, **flaws}],
                     "cwe": cwe, "source": source})
    return rows


def _in_split(name: str, split: str) -> bool:
    return (bucket(name) < 5) == (split == "calib")


def build_pairvul(out: Path, split: str, max_lines: int, limit: int) -> list[dict]:
    """PairVul (Linux kernel) before/after pairs, split by CVE id."""
    pairs = []
    for f in sorted((DATA / "pairvul").glob("*/*.json")):
        for d in json.loads(f.read_text()):
            if _in_split(d["cve_id"], split):
                pairs.append(d)
    pairs.sort(key=lambda d: hashlib.sha256((d["cve_id"] + d["code_before_change"]).encode()).hexdigest())
    rows, seen = [], set()
    for d in pairs:
        if len(rows) >= 2 * limit:
            break
        before, after = d["code_before_change"], d["code_after_change"]
        if max(before.count("\n"), after.count("\n")) + 1 > max_lines or before in seen:
            continue
        if " ".join(before.split()) == " ".join(after.split()):
            continue
        seen.add(before)
        cwe = (re.findall(r"CWE-\d+", str(d.get("cwe"))) or ["?"])[0]
        key = hashlib.sha256((d["cve_id"] + before).encode()).hexdigest()[:10]
        rows += _pair_files(out, "pairvul", key, cwe.replace("-", ""), before, after, cwe)
    return rows


def build_cvefixes(out: Path, split: str, max_lines: int, limit: int) -> list[dict]:
    """CVEfixes functions (VulLLM sample): vulnerable/fixed pairs, split by ``pair_id``."""
    items = [json.loads(line)
             for line in (DATA / "cvefixes" / "cvefixes_vulllm_test512.jsonl").read_text().splitlines()]
    by_pair: dict[str, dict[int, str]] = {}
    for d in items:
        if d.get("pair_id") is not None:
            by_pair.setdefault(str(d["pair_id"]), {})[int(d["label"])] = d["code"]
    keys = sorted((k for k, v in by_pair.items() if len(v) == 2 and _in_split(k, split)),
                  key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    rows = []
    for k in keys:
        if len(rows) >= 2 * limit:
            break
        before, after = by_pair[k][1], by_pair[k][0]
        if max(before.count("\n"), after.count("\n")) + 1 > max_lines:
            continue
        if " ".join(before.split()) == " ".join(after.split()):
            continue
        rows += _pair_files(out, "cvefixes", hashlib.sha256(k.encode()).hexdigest()[:10], "fn", before, after, "?")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--split", choices=("bench", "calib"), required=True)
    ap.add_argument("--juliet-per-cwe", type=int, default=4)
    ap.add_argument("--sven-pairs", type=int, default=44)
    ap.add_argument("--sven-max-lines", type=int, default=120)
    ap.add_argument("--pairvul-pairs", type=int, default=40)
    ap.add_argument("--cvefixes-pairs", type=int, default=40)
    ap.add_argument("--max-lines", type=int, default=150, help="longest PairVul/CVEfixes function kept")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows = build_juliet(a.out, a.split, a.juliet_per_cwe)
    sven_rows, sven_info = build_sven(a.out, a.split, a.sven_max_lines, a.sven_pairs)
    pv = build_pairvul(a.out, a.split, a.max_lines, a.pairvul_pairs)
    cf = build_cvefixes(a.out, a.split, a.max_lines, a.cvefixes_pairs)
    (a.out / "labels.json").write_text(json.dumps({"split": a.split, "sven": sven_info,
                                                   "files": rows + sven_rows + pv + cf}, indent=1))
    print(f"{a.split}: {len(rows)} Juliet files, {len(sven_rows)} SVEN files, {len(pv)} PairVul files, "
          f"{len(cf)} CVEfixes files; SVEN {sven_info}")


if __name__ == "__main__":
    main()
