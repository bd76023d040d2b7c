"""The model zoo: named, checksummed weights (docs/zoo.md).

:mod:`torchssc.zoo.registry` reads the registry (``weights.yaml`` in this folder plus
``$TORCHSSC_WEIGHTS_REGISTRY``); :mod:`torchssc.zoo.resolve` turns a name into a checked file
(shipped, cached in ``$TORCHSSC_HOME``, or downloaded once).
"""

from torchssc.zoo.registry import (
    registry_files,
    REGISTRY_ENV,
    WeightsEntry,
    entry_config,
    entry_inputs,
    find_entry,
    load_registry,
    package_registry,
    read_registry,
)
from torchssc.zoo.resolve import HOME_ENV, cache_path, resolve_weights, sha256_of, torchssc_home, weights_state

__all__ = ["HOME_ENV", "REGISTRY_ENV", "WeightsEntry", "cache_path", "entry_config", "entry_inputs", "find_entry",
           "load_registry", "package_registry", "read_registry", "registry_files", "resolve_weights", "sha256_of",
           "torchssc_home", "weights_state"]
