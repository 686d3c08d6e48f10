"""A CPU stand-in for torchvision, for the contract venv only (not a real torchvision).

PyPI's torchvision wheels for this torch are CUDA builds (several GB, and they fail to import
beside the CPU torch); neuraltrain imports ``torchvision.ops.MLP`` at import time and
``torchvision.models`` / ``torchvision.transforms`` as modules.  This package provides
``ops.MLP`` as torchvision documents it (Linear → norm → activation → dropout per hidden
layer, then Linear → dropout, as one ``Sequential``), so upstream's FmriEncoder has the same
module tree and state-dict keys, and modules that raise if anything else is used.
"""

__version__ = "0.21.0+breachlab.stub"
