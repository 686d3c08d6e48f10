"""neuralset.utils.get_spacy_model: same language whitelist as 0.0.2 (no Japanese)."""
import re

_ISO = {"en": "english", "fr": "french", "es": "spanish", "zh": "chinese"}
_DEFAULTS = dict(english="en_core_web_lg", french="fr_core_news_lg", spanish="es_core_news_lg",
                 chinese="zh_core_web_lg")


class _Tok:
    def __init__(self, text, idx):
        self.text, self.idx = text, idx

    def __len__(self):
        return len(self.text)


class _Sent(list):
    text = ""


class _Doc:
    def __init__(self, text):
        self.text, self.sents = text, []
        for m in re.finditer(r"[^.!?]+[.!?]*", text):
            toks = [_Tok(t.group(), m.start() + t.start()) for t in re.finditer(r"\w+|[^\w\s]", m.group())]
            if toks:
                s = _Sent(toks)
                s.text = text[toks[0].idx: toks[-1].idx + len(toks[-1])]
                self.sents.append(s)


def get_spacy_model(*, model: str = "", language: str = ""):
    if language and model:
        raise ValueError("Language and model cannot be specified at the same time")
    language = _ISO.get(language or "english", language or "english")
    if not model and language not in _DEFAULTS:
        raise ValueError(f"Language {language!r} not available: {_DEFAULTS}")
    return _Doc
