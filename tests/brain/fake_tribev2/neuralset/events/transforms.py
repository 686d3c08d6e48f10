"""The events transforms tribev2's inference path chains (simplified, same contracts)."""
import logging

import numpy as np
import pandas as pd

import neuralset.utils as _ns_utils

logger = logging.getLogger(__name__)
MISSING_SENTENCE = "# MISSING SENTENCE #"


def parse_text(text, language=""):
    return _ns_utils.get_spacy_model(language=language)(text)  # module attribute: patchable


class _T:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __call__(self, events):
        return self._run(events)


class ExtractAudioFromVideo(_T):
    def _run(self, events):  # our still videos are silent: nothing to add
        return events


class ChunkEvents(_T):
    def _run(self, events):
        long = events[(events.type == self.event_type_to_chunk) & (events.duration > self.max_duration)]
        if len(long):
            raise NotImplementedError("fake ChunkEvents: stimuli longer than max_duration")
        return events


class AddText(_T):
    def _run(self, events):
        if "Text" in events.type.unique():
            return events
        words = events[events.type == "Word"]
        if words.empty:
            return events
        langs = words["language"].unique()
        assert len(langs) == 1, f"Several languages found in the same timeline: {langs}"
        doc = parse_text(" ".join(words.text.values), langs[0])
        text = ". ".join(s.text.capitalize().rstrip(".") for s in doc.sents)
        row = words.iloc[0].to_dict() | {"type": "Text", "start": words.start.min(),
                                         "duration": words.stop.max() - words.start.min(), "text": text}
        return pd.concat([events, pd.DataFrame([row])], ignore_index=True)


def _norm(s):
    return "".join(ch for ch in s.lower() if ch.isalnum())


class AddSentenceToWords(_T):
    max_unmatched_ratio = 0.0

    def _run(self, events):
        if "Word" not in events.type.unique():
            logger.info("No Word events found, skipping")
            return events
        texts = events[events.type == "Text"]
        if texts.empty:
            raise RuntimeError("No Text event in dataframe")
        events = events.copy()
        events["sentence"] = ""
        events["sentence_char"] = np.nan
        ctx = texts.iloc[0]
        if not isinstance(ctx.get("language"), str):
            raise ValueError("Need language for Text field")
        doc = parse_text(ctx["text"], ctx["language"])
        toks = [(t, s) for s in doc.sents for t in s]
        k = 0
        for i in events.index[events.type == "Word"]:
            w = _norm(events.at[i, "text"])
            for j in range(k, len(toks)):
                if _norm(toks[j][0].text) == w:
                    tok, sent = toks[j]
                    events.at[i, "sentence"] = sent.text
                    events.at[i, "sentence_char"] = tok.idx - sent[0].idx
                    k = j + 1
                    break
        words = events[events.type == "Word"]
        ratio = (words.sentence == "").mean()
        if ratio > self.max_unmatched_ratio:
            raise RuntimeError(f"Ratio of unmatched words is {ratio:.4f} on {len(words)} words")
        return events


class AddContextToWords(_T):
    sentence_only = True
    max_context_len = None
    split_field = "split"

    def _run(self, events):
        events = events.copy()
        events["context"] = ""
        past, last_sentence = "", None
        for i in events.index[events.type == "Word"]:
            sent, ch = events.at[i, "sentence"], events.at[i, "sentence_char"]
            if not sent or not np.isfinite(ch):
                continue
            if sent != last_sentence:
                if last_sentence is not None and not self.sentence_only:
                    past += last_sentence  # the real one appends the rest of the sentence, no separator
                last_sentence = sent
            end = int(ch) + len(events.at[i, "text"])
            events.at[i, "context"] = past + sent[:end]
        return events


class RemoveMissing(_T):
    def _run(self, events):
        bad = (events.type == "Word") & (events.get("context", pd.Series("", index=events.index)) == "")
        return events[~bad].reset_index(drop=True)
