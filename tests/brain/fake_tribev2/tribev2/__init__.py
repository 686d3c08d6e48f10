"""Test double of facebookresearch/tribev2 (public API and shapes only)."""
from tribev2.demo_utils import TribeModel  # noqa: F401
