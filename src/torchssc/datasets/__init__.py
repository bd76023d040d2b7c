"""Dataset declarations: :class:`DatasetSpec` and the built-in specs (``nyu``, ``synth``, ...),
one YAML file each in this folder (docs/datasets.md)."""

from torchssc.datasets.spec import (
    DatasetSpec,
    LAYOUTS,
    default_palette,
    get_dataset_spec,
    list_datasets,
    read_spec,
    spec_from_dict,
    specs_dir,
)

__all__ = ["DatasetSpec", "LAYOUTS", "default_palette", "get_dataset_spec", "list_datasets", "read_spec",
           "spec_from_dict", "specs_dir"]
