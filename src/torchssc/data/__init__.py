"""Torch datasets over the prepared layout (:mod:`torchssc.data.dataset`)."""

from torchssc.data.dataset import IMAGENET_MEAN, IMAGENET_STD, SSCDataset, normalize_rgb

__all__ = ["SSCDataset", "normalize_rgb", "IMAGENET_MEAN", "IMAGENET_STD"]
