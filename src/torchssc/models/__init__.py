"""SSC models. Importing this package registers every built-in model (see ``registry``)."""

from torchssc.models.registry import get_model, list_models, model_inputs, register_model
from torchssc.models import aicnet, ddrnet, sscnet, vvnet  # noqa: F401  (baselines register themselves)
from torchssc.models import sketch_aware  # noqa: F401  (sketch_aware_ssc* variants)
from torchssc.models import unet3d  # noqa: F401  (unet3d_prior)
from torchssc.models import ccpnet, forknet  # noqa: F401  (ccpnet_style, forknet)
from torchssc.models import ammnet  # noqa: F401  (ammnet_prior, ammnet_segformer)

__all__ = ["get_model", "list_models", "model_inputs", "register_model"]
