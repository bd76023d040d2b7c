"""Training losses. A loss is built by name, ``get_loss(name, **kwargs)``, and called as
``loss(outputs: dict, batch: dict) -> dict[str, Tensor]`` with the key ``"total"`` plus one key
per term. Importing this package registers every built-in loss.
"""

from torchssc.losses.registry import get_loss, list_losses, loss_targets, register_loss
from torchssc.losses import baselines  # noqa: F401  (sscnet_balanced, vvnet, wlj)
from torchssc.losses import sketch_aware  # noqa: F401  (sketch_aware)
from torchssc.losses import class_weighted  # noqa: F401  (class_weighted_ce)
from torchssc.losses import ccpnet, forknet  # noqa: F401  (ccpnet_style, forknet)
from torchssc.losses import ammnet  # noqa: F401  (ammnet)

__all__ = ["get_loss", "list_losses", "loss_targets", "register_loss"]
