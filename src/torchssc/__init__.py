"""torchssc: semantic scene completion from RGB-D in PyTorch.

Conventions (axes, grids, classes) live in :mod:`torchssc.geometry`.
"""

__version__ = "0.1.0"
