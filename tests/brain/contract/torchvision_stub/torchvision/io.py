"""Placeholder module of the torchvision stub (see torchvision/__init__.py)."""

from torchvision._missing import placeholder

__getattr__ = placeholder("torchvision.io")
