"""``torchssc list [models|datasets|recipes]``: what is registered, and what each needs.

* models: name, the batch keys it reads (its declared inputs), its trainable parameters at
  the builder's defaults (built on the CPU, NYU's 12 classes);
* datasets: name, classes, grid and voxel size, camera, layout;
* recipes: the shipped recipes with their model and dataset, and the parts they compose.
"""

from __future__ import annotations

import argparse

from torchssc.report import markdown_table

SECTIONS = ("models", "datasets", "recipes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="*", choices=[*SECTIONS, []], default=[],
                        help=f"sections to list (default: all of {', '.join(SECTIONS)})")


def models_table() -> str:
    """One row per registered model: name, inputs, trainable parameters."""
    import torch

    from torchssc.models import get_model, list_models, model_inputs

    rows = []
    with torch.device("meta"):  # parameter counts need shapes only: no memory, no init cost
        for name in list_models():
            model = get_model(name)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            rows.append([name, ", ".join(model_inputs(name)), f"{trainable:,}"])
    return markdown_table(["model", "inputs (batch keys)", "trainable parameters"], rows)


def datasets_table() -> str:
    """One row per built-in dataset spec."""
    from torchssc.datasets import get_dataset_spec, list_datasets

    rows = []
    for name in list_datasets():
        s = get_dataset_spec(name)
        rows.append([name, f"{s.num_classes}: {', '.join(s.classes)}", "x".join(map(str, s.grid)),
                     f"{s.voxel_size:g} m", ", ".join(f"{v:g}" for v in s.intrinsics) + f" ({s.image_size[0]}x{s.image_size[1]})",
                     s.layout])
    return markdown_table(["dataset", "classes", "grid", "voxel", "camera fx, fy, cx, cy", "layout"], rows)


def recipes_table() -> str:
    """One row per shipped recipe: its model, dataset and composed parts."""
    from torchssc.config import find_recipe, load_config, list_recipes, recipe_layers

    rows = []
    for name in list_recipes():
        cfg = load_config(name)
        parts = [str(src).rsplit("configs/", 1)[-1].removesuffix(".yaml") for src, _ in recipe_layers(find_recipe(name))[:-1]]
        rows.append([name, cfg["model"]["name"], cfg["data"]["dataset"], ", ".join(parts)])
    return markdown_table(["recipe", "model", "dataset", "composes"], rows)


def run(args: argparse.Namespace) -> int:
    from torchssc.config import list_parts

    tables = {"models": models_table, "datasets": datasets_table, "recipes": recipes_table}
    for section in args.what or SECTIONS:
        print(f"## {section}\n")
        print(tables[section]())
        if section == "recipes":
            print(f"\nParts to compose (configs/<kind>/<name>.yaml): {', '.join(list_parts())}")
        print()
    return 0
