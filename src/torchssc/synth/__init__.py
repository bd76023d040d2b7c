"""Seeded procedural indoor rooms in the raw depthbin format plus RGB (docs/synthetic.md).

See ``docs/synthetic.md``. Modules: :mod:`~torchssc.synth.scene` (boxes), ``furniture``,
``rooms`` (layout and camera), ``raycast`` (depth), ``render`` (RGB, Kinect noise),
``voxelize`` (label grid), ``generator`` (frames and datasets), ``command`` (``torchssc
synth``). The pictures and class statistics of the docs come from ``benchmarks/synth_preview.py``.
"""

from torchssc.synth.generator import SynthFrame, generate_dataset, generate_frame, split_ids

__all__ = ["SynthFrame", "generate_dataset", "generate_frame", "split_ids"]
