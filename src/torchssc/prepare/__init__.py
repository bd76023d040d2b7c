"""Raw -> prepared data (docs/data.md): fine TSDF, downsampling, label_weight, mapping, sketch,
visibility, and :func:`prepare_frame` / :func:`prepare_depthbin` that run them all."""

from torchssc.prepare.pipeline import prepare_depthbin, prepare_frame

__all__ = ["prepare_frame", "prepare_depthbin"]
