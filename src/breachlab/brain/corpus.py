"""Stimulus corpora: ``breachlab brain corpus seed|import-sms|show``.

A corpus is a YAML or JSON file ``{name, description, messages: [...]}``; each message has
``id, type, language, text, presentation, sender, variant`` (and optional ``source``).  The
format is deliberately flat so that a person can add real messages by hand, and every later
stage (render, encode, analyze) keys its outputs by the message ``id``.

Two corpora ship: the seed corpus (post 3's five messages in English and Japanese, with
paraphrased variants so that statistics over variants are possible) and an importer for the
real UCI SMS Spam Collection (spam vs ham).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from breachlab.errors import UserError

#: Message types known to the analysis; ``legitimate`` and ``ham`` are baselines.
TYPES = ("legitimate", "phishing", "investment", "fake_shop", "pyramid", "spam", "ham")
SCAM_TYPES = ("phishing", "investment", "fake_shop", "pyramid")
BASELINE_FOR = {"legitimate": "legitimate", "phishing": "legitimate", "investment": "legitimate",
                "fake_shop": "legitimate", "pyramid": "legitimate", "spam": "ham", "ham": "ham"}
LANGUAGES = ("en", "ja")
PRESENTATIONS = ("whatsapp", "sms", "social_post", "email", "plain")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")


@dataclasses.dataclass(frozen=True)
class Message:
    """One stimulus message; ``id`` names every file derived from it."""

    id: str
    type: str
    language: str
    text: str
    presentation: str = "whatsapp"
    sender: str = ""
    variant: int = 0
    source: str = "seed"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    messages: tuple[Message, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self):
        return iter(self.messages)

    def by_id(self) -> dict[str, Message]:
        return {m.id: m for m in self.messages}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "messages": [m.to_dict() for m in self.messages]}

    def summary(self) -> list[tuple[str, str, int]]:
        """(type, language, n) rows in a stable order."""
        counts: dict[tuple[str, str], int] = {}
        for m in self.messages:
            counts[(m.type, m.language)] = counts.get((m.type, m.language), 0) + 1
        order = {t: i for i, t in enumerate(TYPES)}
        return [(t, lang, n)
                for (t, lang), n in sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0]))]


def _message(raw: Any, where: str) -> Message:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(Message)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key in ("id", "type", "language", "text"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise UserError(f"{where}: '{key}' is required and must be a non-empty string")
    if not _ID_RE.match(raw["id"]):
        raise UserError(f"{where}: id {raw['id']!r} must be letters, digits, '_', '-', '.' (used in file names)")
    if raw["type"] not in TYPES:
        raise UserError(f"{where}: type {raw['type']!r} is not one of {', '.join(TYPES)}")
    if raw["language"] not in LANGUAGES:
        raise UserError(f"{where}: language {raw['language']!r} is not one of {', '.join(LANGUAGES)}")
    pres = raw.get("presentation", "whatsapp")
    if pres not in PRESENTATIONS:
        raise UserError(f"{where}: presentation {pres!r} is not one of {', '.join(PRESENTATIONS)}")
    variant = raw.get("variant", 0)
    if isinstance(variant, bool) or not isinstance(variant, int) or variant < 0:
        raise UserError(f"{where}: variant must be a non-negative integer, got {variant!r}")
    return Message(id=raw["id"], type=raw["type"], language=raw["language"], text=raw["text"].strip(),
                   presentation=pres, sender=str(raw.get("sender") or ""), variant=variant,
                   source=str(raw.get("source") or "seed"))


def corpus_from_dict(data: Any, where: str = "corpus") -> Corpus:
    """Validate a parsed corpus mapping (unique ids, known types/languages/presentations)."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise UserError(f"{where}: a corpus is a mapping with a 'messages' list")
    unknown = sorted(set(data) - {"name", "description", "messages"})
    if unknown:
        raise UserError(f"{where}: unknown top-level key(s) {', '.join(unknown)}")
    if not data["messages"]:
        raise UserError(f"{where}: the corpus has no messages")
    msgs = [_message(m, f"{where}: messages[{i}]") for i, m in enumerate(data["messages"])]
    seen: set[str] = set()
    for i, m in enumerate(msgs):
        if m.id in seen:
            raise UserError(f"{where}: messages[{i}]: duplicate id {m.id!r}")
        seen.add(m.id)
    return Corpus(name=str(data.get("name") or Path(where).stem), messages=tuple(msgs),
                  description=str(data.get("description") or ""))


def load_corpus(path: str | Path) -> Corpus:
    """Read a corpus file (``.yaml``/``.yml``/``.json``), or a run directory holding ``corpus.json``."""
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.json"
    if not path.is_file():
        raise UserError(f"corpus file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a valid corpus file ({str(exc).splitlines()[0]})") from None
    return corpus_from_dict(data, str(path))


def seed_corpus() -> Corpus:
    """The shipped seed corpus (package data ``brain/data/seed_corpus.yaml``)."""
    text = resources.files("breachlab.brain").joinpath("data/seed_corpus.yaml").read_text(encoding="utf-8")
    return corpus_from_dict(yaml.safe_load(text), "seed_corpus.yaml")


def dump_corpus(corpus: Corpus, path: str | Path) -> Path:
    """Write a corpus as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
    from breachlab.rundir import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        return atomic_write_text(path, yaml.safe_dump(corpus.to_dict(), sort_keys=False, allow_unicode=True,
                                                      width=1000))
    return atomic_write_json(path, corpus.to_dict())


def read_sms_spam(path: str | Path) -> list[tuple[int, str, str]]:
    """Rows ``(line_number, label, text)`` of the UCI SMS Spam Collection TSV."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"SMS Spam Collection not found: {path}")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if n == 1 and label.lower() == "label":  # header row of the shared copy
                continue
            if not sep or label not in ("spam", "ham"):
                raise UserError(f"{path}:{n}: expected 'spam<TAB>text' or 'ham<TAB>text'")
            rows.append((n, label, text.strip()))
    return rows


def import_sms_spam(path: str | Path | None = None, *, n_per_class: int | None = 50, seed: int = 0,
                    presentation: str = "sms") -> Corpus:
    """A balanced spam-vs-ham corpus sampled from the SMS Spam Collection.

    ``n_per_class=None`` keeps every message.  The sample is reproducible (``random.Random(seed)``
    over rows in file order); ``variant`` numbers the messages within each class so that the
    analysis treats them as variants of two conditions (``spam`` vs its baseline ``ham``).
    """
    if path is None:
        from breachlab.datadir import data_file

        path = data_file("sms_spam", "SMSSpamCollection.tsv")
    if presentation not in PRESENTATIONS:
        raise UserError(f"presentation {presentation!r} is not one of {', '.join(PRESENTATIONS)}")
    rows = read_sms_spam(path)
    rng = random.Random(seed)
    msgs: list[Message] = []
    for label in ("spam", "ham"):
        pool = [r for r in rows if r[1] == label and r[2]]
        if n_per_class is not None:
            if n_per_class < 1:
                raise UserError("n_per_class must be at least 1")
            pool = sorted(rng.sample(pool, min(n_per_class, len(pool))))
        for k, (line, _, text) in enumerate(pool):
            msgs.append(Message(id=f"sms-{label}-{line:05d}", type=label, language="en", text=text,
                                presentation=presentation, sender="+44 7700 900" + f"{line % 1000:03d}",
                                variant=k, source=f"uci-sms-spam:{line}"))
    return Corpus(name="sms_spam", messages=tuple(msgs),
                  description=f"UCI SMS Spam Collection (CC BY 4.0), {n_per_class or 'all'} per class, seed {seed}")


def filter_corpus(corpus: Corpus, *, types: Iterable[str] | None = None,
                  languages: Iterable[str] | None = None, max_variant: int | None = None) -> Corpus:
    """A sub-corpus (for quick runs and tests)."""
    types = set(types) if types else None
    languages = set(languages) if languages else None
    msgs = tuple(m for m in corpus.messages
                 if (types is None or m.type in types) and (languages is None or m.language in languages)
                 and (max_variant is None or m.variant <= max_variant))
    if not msgs:
        raise UserError("the filter left no messages")
    return dataclasses.replace(corpus, messages=msgs)
