"""neuralset's video extractor builds its model inside every feature call (``_HFVideoModel``)."""
from tribev2 import main


class _HFVideoModel:
    MODELS = ("vjepa2",)

    def __init__(self, model_name: str, pretrained: bool = True, layer_type: str = "", num_frames=None):
        main.LOADS["video"] = main.LOADS.get("video", 0) + 1  # the real one loads V-JEPA2 here
        self.model_name, self.num_frames = model_name, num_frames or 64
