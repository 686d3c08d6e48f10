"""NIST Juliet C/C++ 1.3 → one neutralised sample per flawed or fixed function.

**What we take.**  A Juliet test case is a ``bad`` function and ``good*`` variants, sometimes
spread over several functions or files (flow variants 21-84).  We keep only functions whose
label is true *in isolation*, because the model sees one function at a time:

* Self-contained entry functions: ``…_bad`` (label 1) and each good variant ``goodG2B``,
  ``goodB2G``, ``good1``, ``goodG2B2``… (label 0) — but not the ``…_good()`` wrapper, which only
  calls the variants, and not an entry function that hands its data to a sink or gets it from a
  source (it calls a test-case function: ``badSink(data)``, ``CWE…_61b_badSource(data)``,
  ``baseObject.action(data)``): there the flaw lives elsewhere.
* Sink functions of multi-function flows (``…_badSink``, ``badVaSinkB``, the ``action`` method
  or destructor of a ``…_bad`` class): label 1; ``…_goodB2GSink`` / ``goodB2G`` classes: label 0
  — the sink itself carries the fix.  Only in families that *have* a fixed sink (sources-sinks
  templates): in sources-sink templates the bad sink is the same code as the ``goodG2BSink``,
  and whether it overflows depends on the caller's buffer, so no label is true for it.
* Never taken: functions that pass the data on to another test-case function (middle
  sinks of chains such as ``_52b``/``_53c``: ``void f(int data) { g(data); }`` is the same
  code for bad and good), ``goodG2BSink`` (the flawed sink fed safe data — same code as ``badSink``, so
  labelling it SAFE would teach the model that the flaw is fine), source functions and class
  constructors (the data origin, not the flaw), ``main`` and control-flow helpers.

**Label-leak neutralisation** (PRODUCT.md, lessons; the transform is
:mod:`breachlab.vuln.data.sources.neutralise`): all comments removed; every identifier
with a name part ``bad``, ``good``, ``G2B``, ``B2G``, ``Sink``, ``Source``, ``CWE…``, ``FLAW``,
``FIX``, ``Benign`` or a flow-variant suffix (``_01``, ``_51b``) renamed by order of appearance
(``func_1`` for the function itself and called helpers, ``Type_1`` for classes/namespaces,
``var_1`` for the rest) so that the bad and the fixed copy of one function get the *same*
names; ``static`` dropped from the header (bad is public, good helpers are static); string
literals that name the intent (``"fixedstringtest"``, ``"GoodClass"``) and every literal passed
to Juliet's print helpers (``"ERROR: Array index is out-of-bounds"``) replaced by ``"text"``.
Functions with Juliet's dead branch ``if(0) { printLine("Benign, fixed string"); } else …``
are not taken at all: that shape sits almost only in good variants (2,010 good vs 123 bad in
a 77-family sample) and would stay a shortcut whatever the string says.

What is left on purpose is program behaviour: a bad function reads from a socket or stdin and
a good-source variant uses a constant; a fixed sink checks a bound.  A bag of *all*
identifier name parts (keywords and library calls excluded) still separates the classes at a
family-grouped CV ROC-AUC of about 0.7 on a family-balanced sample, through such
data-flow words (``connect``, ``stdin``, ``len``); the artefacts above are what the tests hold
below 0.6.

**Speed.**  The 7.6 MB ``.tar.xz`` unpacks to 549 MB.  One streaming pass builds an index
(family → members), cached under ``$BREACHLAB_CACHE`` keyed by the archive's sha256 and
:data:`LOADER_VERSION`; in the same pass the raw files of the families the build will ask for
first (lowest seeded hash) are kept in memory.  Parsed families are cached one file each, so
a warm build reads a few small JSON files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from breachlab.errors import UserError
from breachlab.vuln.data.sources.neutralise import (  # noqa: F401 - LEAK_TEXT, strip_comments re-exported
    DEAD_BRANCH_MARKER,
    LEAK_PART,
    LEAK_TEXT,
    TOKEN,
    is_leaky_name,
    name_parts,
    neutralise,
    strip_comments,
)
from breachlab.vuln.sample import Sample

LOADER_VERSION = 4
PREFETCH_FRACTION = 0.08  # share of families kept in memory during the index pass

# Juliet file stems: <family>_<NN>[letter | _bad | _goodG2B …]
_STEM = re.compile(r"^(?P<family>CWE\d+_.+?)_(?P<variant>\d{2})(?:[a-z]|_(?:bad|good\w*))?$")
_CWE_DIR = re.compile(r"^CWE(\d+)_")


# -- which functions a test-case file contributes ----------------------------------------------
_ROLE_PREFIX = re.compile(r"^CWE\d+_.*?_\d{2}[a-z]?_")
_OWNER_ROLE = re.compile(r"_(?P<role>bad|goodG2B\d*|goodB2G\d*|good\d*)$")


def role_of(qualified_name: str) -> tuple[str, int] | None:
    """Classify a Juliet function by its name: ``(kind, label)`` or None to skip.

    kinds: ``entry`` (bad / good variant, taken only if self-contained), ``sink`` (taken only
    in families with a fixed sink), ``good_sink`` (a fixed sink; marks the family).
    """
    parts = qualified_name.split("::")
    last = parts[-1].strip()
    owner = parts[-2].strip() if len(parts) > 1 else ""
    if owner and owner.startswith("CWE"):
        # a method of a test-case class (flow variants 81-84): the class says bad/good
        m = _OWNER_ROLE.search(owner)
        if not m or last == owner:  # constructors get the data: the source side
            return None
        role = m.group("role")
        if role == "bad":
            return ("sink", 1)
        if role.startswith("goodB2G") or re.fullmatch(r"good\d*", role):
            return ("good_sink", 0)
        return None  # goodG2B classes: the flawed sink fed safe data
    name = _ROLE_PREFIX.sub("", last)
    if name == "bad":
        return ("entry", 1)
    if name == "good":
        return None  # the wrapper that only calls the variants
    if re.fullmatch(r"good(?:G2B|B2G)?\d*", name):
        return ("entry", 0)
    if "Source" in name or "source" in name:
        return None
    if re.match(r"bad\w*Sink", name):
        return ("sink", 1)
    if re.match(r"goodG2B\w*Sink", name):
        return None
    if re.match(r"good(?:B2G)?\d*\w*Sink", name):
        return ("good_sink", 0)
    return None


_PARSERS: dict[str, Any] = {}


def _parser(lang: str) -> Any:
    if lang not in _PARSERS:
        try:
            from tree_sitter import Language, Parser

            if lang == "cpp":
                import tree_sitter_cpp as grammar
            else:
                import tree_sitter_c as grammar
        except ImportError:
            raise UserError("reading Juliet needs tree-sitter: pip install 'breachlab[vuln]'") from None
        _PARSERS[lang] = Parser(Language(grammar.language()))
    return _PARSERS[lang]


def _function_name(node: Any) -> str | None:
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type != "function_declarator":
        decl = decl.child_by_field_name("declarator")
    if decl is None:
        return None
    name = decl.child_by_field_name("declarator")
    return name.text.decode("utf-8", "replace") if name is not None else None


def find_functions(source: bytes, lang: str) -> list[tuple[str, str]]:
    """``(qualified name, text)`` of every function definition, in file order (tree-sitter)."""
    tree = _parser(lang).parse(source)
    out: list[tuple[str, str]] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            name = _function_name(node)
            if name:
                out.append((name, source[node.start_byte:node.end_byte].decode("utf-8", "replace")))
            continue
        stack.extend(reversed(node.children))
    return out


def _calls_test_case_code(code: str, own_name: str, family_functions: set[str]) -> bool:
    """Does this function hand data to (or take it from) another test-case function?"""
    body = code[code.find("{"):] if "{" in code else code
    for m in TOKEN.finditer(body):
        if m.lastgroup != "id":
            continue
        ident = m.group()
        if ident == own_name:
            continue
        if ident in family_functions and is_leaky_name(ident):
            return True
        if ident.startswith("CWE") and is_leaky_name(ident):
            return True
        if is_leaky_name(ident) and re.match(r"\s*\(", body[m.end():]) and LEAK_PART.match(name_parts(ident)[0]):
            return True
    return False


def family_samples(cwe_dir: str, family: str, files: list[tuple[str, bytes]]) -> list[Sample]:
    """The samples of one test-case family from its ``(member name, bytes)`` files."""
    group = f"{cwe_dir}/{family}"
    cwe_m = _CWE_DIR.match(cwe_dir)
    cwe = f"CWE-{int(cwe_m.group(1))}" if cwe_m else None
    found: list[tuple[str, str, str, str, tuple[str, int]]] = []  # member, lang, name, code, role
    all_names: set[str] = set()
    for member, data in files:
        lang = "cpp" if member.endswith(".cpp") else "c"
        for name, code in find_functions(data, lang):
            all_names.add(name.split("::")[-1])
            role = role_of(name)
            if role:
                found.append((member, lang, name, code, role))
    has_fixed_sink = any(r[0] == "good_sink" for *_, r in found)
    out: list[Sample] = []
    for member, lang, name, code, (kind, label) in found:
        short = name.split("::")[-1]
        if _calls_test_case_code(code, short, all_names):
            continue  # an entry or a middle sink (52b, 53b…) that hands the data on
        if kind in ("sink", "good_sink") and not has_fixed_sink:
            continue
        if DEAD_BRANCH_MARKER in code:
            continue
        stem = PurePosixPath(member).stem
        out.append(Sample(
            id=f"juliet:{stem}:{name}",
            code=neutralise(code),
            label=label,
            cwe=cwe,
            source="juliet",
            group=group,
            lang=lang,
            meta={"file": member, "function": name, "kind": "entry" if kind == "entry" else "sink"},
        ))
    return out


def parse_member(member: str) -> tuple[str, str] | None:
    """``testcases/CWE121_x/s01/CWE121_x__y_51a.c`` → ``(CWE121_x, CWE121_x__y)``; else None."""
    p = PurePosixPath(member)
    if p.suffix not in (".c", ".cpp") or "testcases" not in p.parts:
        return None
    m = _STEM.match(p.stem)
    if not m:
        return None
    cwe_dir = next((q for q in p.parts if _CWE_DIR.match(q) and q != p.name), None)
    if cwe_dir is None:
        return None
    return cwe_dir, m.group("family")


# -- the pool -----------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    return Path(os.environ.get("BREACHLAB_CACHE") or Path.home() / ".cache" / "breachlab")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class JulietPool:
    """Lazy Juliet pool over a ``.tar.xz``/``.tar`` archive or an unpacked directory.

    Args:
        path: the archive, or a folder holding ``testcases/`` (or being it).
        order_key: the build's seeded order of groups; families that come first are the ones
            kept in memory during the index pass.
        cache_dir: where the index and parsed families go; None disables caching.
    """

    name = "juliet"
    lazy = True

    def __init__(self, path: str | Path, order_key: Callable[[str], str] | None = None,
                 cache_dir: str | Path | None = None, progress: Callable[[str], Any] | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"Juliet not found at {self.path}")
        self.order_key = order_key
        self.stats: dict[str, Any] = {"families_parsed": 0, "families_from_cache": 0, "archive_passes": 0}
        self._raw: dict[str, list[tuple[str, bytes]]] = {}
        self._progress = progress
        self.is_archive = self.path.is_file()
        self.cache: Path | None = None
        if cache_dir is not None and self.is_archive:
            key = f"{_sha256(self.path)[:16]}-v{LOADER_VERSION}"
            self.cache = Path(cache_dir) / "juliet" / key
        self.index = self._load_index()

    # index: group -> member names
    def _load_index(self) -> dict[str, list[str]]:
        if not self.is_archive:
            root = self.path
            index: dict[str, list[str]] = {}
            for dirpath, _dirs, files in os.walk(root):
                for f in files:
                    member = str(PurePosixPath(Path(dirpath).relative_to(root).as_posix()) / f)
                    if "testcases" not in member.split("/"):
                        member = "testcases/" + member
                    parsed = parse_member(member)
                    if parsed:
                        index.setdefault("/".join(parsed), []).append(
                            os.path.join(dirpath, f))
            if not index:
                raise UserError(f"{root}: no Juliet test cases (testcases/CWE*/…​.c|.cpp) found")
            return {g: sorted(v) for g, v in index.items()}
        if self.cache and (self.cache / "index.json").is_file():
            return json.loads((self.cache / "index.json").read_text(encoding="utf-8"))
        index = {}
        self._scan(lambda group: self._prefetch(group), index)
        if not index:
            raise UserError(f"{self.path}: no Juliet test cases (testcases/CWE*/…) in the archive")
        if self.cache:
            from breachlab.rundir import atomic_write_text

            atomic_write_text(self.cache / "index.json", json.dumps(index))
        return index

    def _prefetch(self, group: str) -> bool:
        if self.order_key is None:
            return False
        return int(self.order_key(group)[:8], 16) / 0xFFFFFFFF < PREFETCH_FRACTION

    def _scan(self, keep: Callable[[str], bool], index: dict[str, list[str]] | None = None) -> None:
        """One streaming pass over the archive: fill ``index`` and keep raw files of ``keep`` groups."""
        self.stats["archive_passes"] += 1
        if self._progress:
            self._progress(f"reading {self.path.name}")
        try:
            with tarfile.open(self.path, "r:*") as tf:
                for info in tf:
                    if not info.isfile():
                        continue
                    parsed = parse_member(info.name)
                    if not parsed:
                        continue
                    group = "/".join(parsed)
                    if index is not None:
                        index.setdefault(group, []).append(info.name)
                    if keep(group):
                        fh = tf.extractfile(info)
                        if fh is not None:
                            self._raw.setdefault(group, []).append((info.name, fh.read()))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"{self.path}: cannot read the archive ({exc})") from None

    def groups(self) -> list[str]:
        return list(self.index)

    def _cache_file(self, group: str) -> Path | None:
        if not self.cache:
            return None
        return self.cache / "families" / (hashlib.sha1(group.encode()).hexdigest()[:20] + ".json")

    def fetch(self, groups: list[str]) -> list[Sample]:
        out: list[Sample] = []
        missing = []
        for g in groups:
            cf = self._cache_file(g)
            if cf is not None and cf.is_file():
                out.extend(Sample.from_dict(d) for d in json.loads(cf.read_text(encoding="utf-8")))
                self.stats["families_from_cache"] += 1
            else:
                missing.append(g)
        if self.is_archive and any(g not in self._raw for g in missing):
            self._read_archive_for(missing)
        for g in missing:
            if g not in self.index:
                continue
            if self.is_archive:
                files = sorted(self._raw.pop(g, []))
            else:
                files = [(m, Path(m).read_bytes()) for m in self.index[g]]
            cwe_dir, family = g.split("/", 1)
            samples = family_samples(cwe_dir, family, files)
            self.stats["families_parsed"] += 1
            cf = self._cache_file(g)
            if cf is not None:
                from breachlab.rundir import atomic_write_text

                atomic_write_text(cf, json.dumps([s.to_dict() for s in samples]))
            out.extend(samples)
        return out

    def _read_archive_for(self, missing: list[str]) -> None:
        """Another pass: keep the missing groups and the next ones in seeded order."""
        wanted = set(missing)
        if self.order_key is not None:
            ordered = sorted(self.index, key=self.order_key)
            last = max(ordered.index(g) for g in missing if g in self.index) if wanted & set(self.index) else 0
            wanted.update(ordered[last + 1: last + 1 + 4 * len(missing)])
        wanted = {g for g in wanted
                  if g not in self._raw and not (self._cache_file(g) or Path("/nonexistent")).is_file()}
        self._scan(lambda group: group in wanted)
