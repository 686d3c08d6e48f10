"""Placeholder module of the torchvision stub (see torchvision/__init__.py).

``InterpolationMode`` is real (an enum with torchvision's members): transformers' image
processors import it at module level once torchvision is found.
"""

from enum import Enum

from torchvision._missing import placeholder


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


__getattr__ = placeholder("torchvision.transforms")
