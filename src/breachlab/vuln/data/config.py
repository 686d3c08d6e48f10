"""What ``breachlab vuln data build`` builds (:class:`DataConfig`) and where each source's files are.

One data-root rule for every source and both parts (:func:`breachlab.datadir.data_root`):
``data.data_root``, else ``$BREACHLAB_DATA``, else ``../shared/data`` when it exists, else
``./data``. A missing source says where to get it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from breachlab.config import ConfigError, field
from breachlab.datadir import data_root as shared_data_root
from breachlab.errors import UserError
from breachlab.vuln.data.splits import SPLIT_ORDER

SOURCES = ("juliet", "sven", "pairvul", "cvefixes", "diversevul", "generic")
PAIRED_SOURCES = ("sven", "pairvul", "cvefixes")
WHERE_TO_GET = {
    "juliet": "Juliet C/C++ 1.3 from https://samate.nist.gov/SARD/test-suites/112 "
              "(juliet-c-cpp-1.3.tar.xz or the unpacked folder)",
    "sven": "SVEN from https://github.com/eth-sri/sven (data_train_val/{train,val}/cwe-*.jsonl)",
    "pairvul": "PairVul (the Vul-RAG benchmark, MIT: the benchmark/ folder of the KnowledgeRAG4LLMVulD "
               "repository) as pairvul/{train,test}/*CWE-*.json",
    "cvefixes": "the VulLLM sample of CVEfixes (MIT: dataset/CVEfixes/test_512.json of CGCL-codes/VulLLM, with "
                "pair_id and func_name added) as cvefixes/cvefixes_vulllm_test512.jsonl",
    "diversevul": "diversevul_20230702.json from https://github.com/wagner-group/diversevul",
    "generic": "your own JSONL/CSV file",
}


@dataclass
class DataConfig:
    """What ``breachlab vuln data build`` builds; every field can be set in YAML or with --set."""

    sources: list[str] = field(default_factory=lambda: ["juliet", "sven"],
                               help="datasets to draw from: juliet, sven, pairvul, cvefixes, diversevul, generic")
    data_root: str | None = field(None, help="folder with juliet/, sven/, pairvul/, cvefixes/, diversevul/ "
                                             "(default: $BREACHLAB_DATA, else ../shared/data, else ./data)")
    juliet_path: str | None = field(None, help="Juliet .tar.xz or unpacked folder (default: <data_root>/juliet/"
                                               "juliet-c-cpp-1.3.tar.xz)")
    sven_path: str | None = field(None, help="SVEN folder with train/ and val/ (default: <data_root>/sven)")
    sven_splits: list[str] = field(default_factory=lambda: ["train", "val"],
                                   help="SVEN sub-folders to read (we re-split them by commit ourselves)")
    pairvul_path: str | None = field(None, help="PairVul folder with train/ and test/ (default: <data_root>/pairvul)")
    pairvul_splits: list[str] = field(default_factory=lambda: ["train", "test"],
                                      help="PairVul sub-folders to read (re-split by CVE ourselves; the upstream "
                                           "split is kept in each sample's meta)")
    pair_window: bool = field(True, help="pairs (SVEN, PairVul, CVEfixes) with a half longer than max_chars are "
                                         "cut to the same window of lines around the change instead of dropped; "
                                         "pairs that become identical are dropped and counted")
    cvefixes_path: str | None = field(None, help="CVEfixes JSONL file (fields id, code, label, pair_id, func_name) or "
                                                 "its folder (default: "
                                                 "<data_root>/cvefixes/cvefixes_vulllm_test512.jsonl)")
    cvefixes_unpaired: bool = field(True, help="cvefixes: keep the functions without a vulnerable/fixed partner "
                                               "(false: pairs only)")
    diversevul_path: str | None = field(None, help="DiverseVul JSON/JSONL file or the hub id bstee615/diversevul "
                                                   "(default: <data_root>/diversevul/diversevul_20230702.json)")
    generic_path: str | None = field(None, help="a JSONL/JSON/CSV/TSV file for the 'generic' source")
    generic_code_column: str = field("code", help="generic: column with the function source")
    generic_label_column: str = field("label", help="generic: column with the label")
    generic_vulnerable_values: list[str] = field(default_factory=lambda: ["1", "true", "vulnerable", "yes"],
                                                 help="generic: label values that mean vulnerable (case-insensitive)")
    generic_cwe_column: str | None = field(None, help="generic: optional CWE column")
    generic_group_column: str | None = field(None, help="generic: optional split-group column (e.g. commit)")
    generic_id_column: str | None = field(None, help="generic: optional unique id column")
    languages: list[str] = field(default_factory=lambda: ["c", "cpp"], help="languages to keep")
    min_chars: int = field(30, help="keep functions longer than this many characters")
    max_chars: int = field(3200, help="keep functions shorter than this many characters")
    n_train_per_class: int = field(3000, help="training samples per class (0 = no train split)")
    n_val_per_class: int = field(500, help="validation samples per class (0 = no val split)")
    n_test_per_class: int = field(100, help="test samples per class (0 = no test split)")
    train_sources: list[str] = field(default_factory=list,
                                     help="sources the train and val splits draw from (empty = all of sources); "
                                          "leave one out to test on it alone")
    test_sources: list[str] = field(default_factory=list,
                                    help="sources the test split draws from (empty = all of sources), e.g. "
                                         "[cvefixes, juliet] with train_sources [pairvul, sven, juliet]: "
                                         "leave-one-source-out, Juliet by held-out families")
    source_mix: str = field("equal", help="how each split is shared across sources: 'equal' or weights such as "
                                          "'juliet=0.7,sven=0.3'; a source that runs short is topped up by the others")
    max_per_group: int = field(2, help="at most this many samples per class from one group "
                                       "(Juliet family, commit, CVE); 0 = no limit")
    dedup: str = field("whitespace", help="what makes two functions the same for dedup and the leak check: "
                                          "whitespace (the code with whitespace collapsed) or tokens (also "
                                          "ignores comments: catches one fix copied into two datasets)")
    allow_short: bool = field(False, help="write smaller splits instead of failing when the data runs out")
    seed: int = field(42, help="seed for group order, split assignment and sampling")
    cache_dir: str | None = field(None, help="cache for parsed Juliet families (default: $BREACHLAB_CACHE, "
                                             "else ~/.cache/breachlab); 'none' disables it")

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("data.sources: name at least one of " + ", ".join(SOURCES))
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ConfigError(f"data.sources: unknown source(s) {', '.join(bad)}; choose from {', '.join(SOURCES)}")
        if len(set(self.sources)) != len(self.sources):
            raise ConfigError("data.sources: a source is listed twice")
        if "generic" in self.sources and not self.generic_path:
            raise ConfigError("data.generic_path is required when sources include 'generic'")
        if not self.languages:
            raise ConfigError("data.languages: keep at least one language")
        self.languages = [lang.lower() for lang in self.languages]
        if self.min_chars < 0 or self.max_chars <= self.min_chars + 1:
            raise ConfigError(f"data: need 0 <= min_chars < max_chars - 1, got {self.min_chars}, {self.max_chars}")
        for name in ("n_train_per_class", "n_val_per_class", "n_test_per_class", "max_per_group"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.n_train_per_class or self.n_val_per_class or self.n_test_per_class):
            raise ConfigError("data: all split sizes are 0; ask for at least one split")
        if self.dedup not in ("whitespace", "tokens"):
            raise ConfigError(f"data.dedup must be whitespace or tokens, got {self.dedup!r}")
        for name in ("train_sources", "test_sources"):
            extra = [s for s in getattr(self, name) if s not in self.sources]
            if extra:
                raise ConfigError(f"data.{name}: {', '.join(extra)} not in data.sources ({', '.join(self.sources)})")
        self.mix_weights()
        for split in self.targets():
            if not any(w > 0 for w in self.split_weights(split).values()):
                raise ConfigError(f"data.source_mix gives the {split} split's sources "
                                  f"({', '.join(self.split_sources(split))}) no weight")

    def split_sources(self, split: str) -> list[str]:
        """The sources ``split`` draws from (``train`` and ``val`` share ``train_sources``)."""
        chosen = self.test_sources if split == "test" else self.train_sources
        return [s for s in self.sources if s in chosen] if chosen else list(self.sources)

    def split_weights(self, split: str) -> dict[str, float]:
        """:meth:`mix_weights` restricted to the split's sources and renormalised."""
        allowed = self.split_sources(split)
        weights = {s: w for s, w in self.mix_weights().items() if s in allowed}
        total = sum(weights.values())
        return {s: w / total for s, w in weights.items()} if total > 0 else weights

    def targets(self) -> dict[str, int]:
        """Per-class size of each requested split, in fill order (test first)."""
        sizes = {"train": self.n_train_per_class, "val": self.n_val_per_class, "test": self.n_test_per_class}
        return {s: sizes[s] for s in SPLIT_ORDER if sizes[s] > 0}

    def mix_weights(self) -> dict[str, float]:
        if self.source_mix.strip().lower() == "equal":
            return {s: 1.0 / len(self.sources) for s in self.sources}
        weights: dict[str, float] = {}
        for part in self.source_mix.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            try:
                weights[name] = float(value)
            except ValueError:
                raise ConfigError(f"data.source_mix: {part!r} must look like source=weight") from None
            if name not in self.sources or weights[name] < 0:
                raise ConfigError(f"data.source_mix: {name!r} is not one of the sources or has a negative weight")
        total = sum(weights.values())
        if total <= 0:
            raise ConfigError("data.source_mix: weights must add up to more than 0")
        return {s: weights.get(s, 0.0) / total for s in self.sources}


# -- where the data is ---------------------------------------------------------------------------
def data_root(cfg: DataConfig) -> Path:
    """The folder the sources live under: the shared rule, with ``data_root`` as the explicit choice."""
    return shared_data_root(cfg.data_root)


def source_path(cfg: DataConfig, source: str) -> Path | str:
    """The file/folder (or hub id) each source reads; a missing one says where to get it."""
    root = data_root(cfg)
    explicit = {"juliet": cfg.juliet_path, "sven": cfg.sven_path, "pairvul": cfg.pairvul_path,
                "cvefixes": cfg.cvefixes_path, "diversevul": cfg.diversevul_path, "generic": cfg.generic_path}[source]
    if source == "diversevul" and explicit and not Path(explicit).exists() and "/" in explicit \
            and not explicit.startswith((".", "/")) and explicit.count("/") == 1:
        return explicit  # a hub id
    if explicit:
        path = Path(explicit)
    elif source == "juliet":
        path = root / "juliet" / "juliet-c-cpp-1.3.tar.xz"
        if not path.exists() and (root / "juliet" / "testcases").is_dir():
            path = root / "juliet"
    elif source in ("sven", "pairvul"):
        path = root / source
    elif source == "cvefixes":
        path = root / "cvefixes" / "cvefixes_vulllm_test512.jsonl"
    else:
        path = root / "diversevul" / "diversevul_20230702.json"
    if not path.exists():
        raise UserError(f"{source} data not found at {path}: get {WHERE_TO_GET[source]}, then set "
                        f"data.{source}_path or BREACHLAB_DATA (the folder holding {source}/)")
    return path
