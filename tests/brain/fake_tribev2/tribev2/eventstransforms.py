"""ExtractWordsFromAudio with upstream's language whitelist (Japanese is rejected)."""
from pathlib import Path


class ExtractWordsFromAudio:
    language = "english"

    def __init__(self, language: str = "english", overwrite: bool = False):
        self.language, self.overwrite = language, overwrite

    @staticmethod
    def _get_transcript_from_audio(wav_filename: Path, language: str):
        codes = dict(english="en", french="fr", spanish="es", dutch="nl", chinese="zh")
        if language not in codes:
            raise ValueError(f"Language {language} not supported")
        raise RuntimeError("test double: upstream shells out to `uvx whisperx` here")

    def __call__(self, events):
        audio = events[events.type == "Audio"]
        for path in audio.filepath.unique():
            self._get_transcript_from_audio(Path(path), self.language)
        return events
