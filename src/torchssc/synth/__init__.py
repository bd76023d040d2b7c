"""Seeded procedural indoor rooms in the raw depthbin format plus RGB (SPEC §8).

See ``docs/synthetic.md``. Modules: :mod:`~torchssc.synth.scene` (boxes), ``furniture``,
``rooms`` (layout and camera), ``raycast`` (depth), ``render`` (RGB, Kinect noise),
``voxelize`` (label grid), ``generator`` (frames and datasets), ``preview`` (pictures and
class statistics), ``command`` (``torchssc synth``).
"""

from torchssc.synth.generator import SynthFrame, generate_dataset, generate_frame, split_ids

__all__ = ["SynthFrame", "generate_dataset", "generate_frame", "split_ids"]
