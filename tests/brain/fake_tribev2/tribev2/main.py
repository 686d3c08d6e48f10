"""TribeExperiment's data side, as far as predict() uses it: extractors prepared per call, then freed.

Upstream (``tribev2/main.py``) calls ``extractor.prepare(events)`` and then the module-level
``_free_extractor_model(extractor)`` for every extractor on every ``predict``; the next call loads
the text and audio models again, and the video extractor builds ``neuralset.extractors.video.
_HFVideoModel`` (V-JEPA2) inside every feature call whatever is freed.  ``LOADS`` counts the loads.
"""
import gc

LOADS: dict[str, int] = {}


class _Extractor:
    def __init__(self, name, event_types):
        self.name, self.event_types = name, event_types

    def prepare(self, events):
        if not hasattr(self, "_model"):
            LOADS[self.name] = LOADS.get(self.name, 0) + 1
            self._model = object()  # the real ones load Llama-3.2-3B / w2v-bert-2.0 / V-JEPA2 here


def _free_extractor_model(extractor) -> None:
    if hasattr(extractor, "_model"):
        delattr(extractor, "_model")
    gc.collect()


class _VideoExtractor(_Extractor):
    def prepare(self, events):
        import neuralset.extractors.video as ns_video

        ns_video._HFVideoModel("facebook/vjepa2-vitg-fpc64-256", num_frames=64)


class Data:
    def __init__(self):
        self.extractors = {"text": _Extractor("text", ("Word",)), "audio": _Extractor("audio", ("Audio",)),
                           "video": _VideoExtractor("video", ("Video",))}

    def get_loaders(self, events):
        present = set(events.type)
        for ex in self.extractors.values():
            if present & set(ex.event_types):
                ex.prepare(events)
                _free_extractor_model(ex)
