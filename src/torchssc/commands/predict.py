"""``torchssc predict``: one RGB-D frame of your own → completed scene (.npy, renders, meshes);
``--depth DIR``: every frame of a folder (:mod:`torchssc.predict.folder`)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from torchssc.geometry import LABEL_VOXEL, NYU_INTRINSICS, Intrinsics
from torchssc.io.atomic import save_npy_atomic, write_bytes_atomic


FOLDER_DEFAULTS = ("npy,png,ply,glb,html", "npy,png,html")
"""``--formats`` default for one frame, and what a folder of frames gets instead when it is not
given (meshes are large)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a training checkpoint (.pt)")
    source.add_argument("--weights", metavar="NAME", help="named weights (torchssc weights lists them; docs/zoo.md)")
    parser.add_argument("--depth", required=True, help="depth image: 16-bit PNG or .npy in metres (a .npy far "
                        "beyond a room in metres is read as millimetres, and said)")
    parser.add_argument("--rgb", help="8-bit RGB image of the same size (needed by RGB models)")
    parser.add_argument("--prior", help="2D semantic prior: an 8-bit PNG of NYU-13 ids 0..13 of the same size "
                        "(needed by the prior models, e.g. sketch_aware_ssc_prior, unet3d_prior)")
    parser.add_argument("--pose", help="camera-to-world pose: .bin (depthbin), .npy or text with 16 numbers "
                        "(default: estimate gravity, floor height and room directions from the depth)")
    parser.add_argument("--intrinsics", type=Intrinsics.parse, default=NYU_INTRINSICS,
                        help="fx,fy,cx,cy[,width,height] (default: NYU's 518.8579,518.8579,320,240)")
    # a folder of frames (--depth DIR): predict/folder.py, docs/predict.md
    parser.add_argument("--floor", type=float, default=None, metavar="METRES",
                        help="--depth DIR with poses: world height of the floor (default: found in each frame's depth)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="--depth DIR: every N-th frame (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="--depth DIR: no progress bar")
    parser.add_argument("--depth-encoding", default="auto", choices=("auto", "sscnet", "millimetres"),
                        help="16-bit PNG encoding (auto: decided on evidence, refused when ambiguous; see docs/predict.md)")
    parser.add_argument("--out", default="prediction", help="output folder (default: ./prediction)")
    parser.add_argument("--name", default="scene", help="file stem of the outputs")
    parser.add_argument("--formats", default="npy,png,ply,glb,html", help="comma list of npy,png,ply,glb,html")
    parser.add_argument("--mask", default="", help="comma list of masks for the renders: frustum")
    parser.add_argument("--raw", action="store_true",
                        help="write and draw the network's output everywhere (default: the depth decides what the "
                        "camera saw: observed free space empty, unseen voxels 255; docs/predict.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's sampling and of RANSAC")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")


INPUT_OPTIONS = {
    "rgb": ("an RGB image", "--rgb (an 8-bit RGB or grey image, the depth image's size)"),
    "prior": ("the 2D semantic prior", "--prior (an 8-bit PNG of NYU-13 ids 0..13, the depth image's size)"),
}
"""Batch key -> (what it is, the option that gives it) of the optional model inputs."""


def _formats(text: str) -> list[str]:
    """The ``--formats`` list, checked: ``npy`` and the picture formats of ``torchssc viz``."""
    from torchssc.viz.export import FORMATS

    allowed = ("npy",) + tuple(FORMATS)
    formats = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in allowed]
    if bad or not formats:
        what = f"unknown format(s) {bad}" if bad else "no format given"
        raise ValueError(f"--formats: {what}; choose from {', '.join(allowed)}")
    return formats


def _check_inputs(model, name: str, args: argparse.Namespace) -> None:
    """Refuse, naming the option, a run without an input the model reads (its declared inputs,
    :func:`torchssc.models.model_inputs`), before any work is done."""
    from torchssc.models import model_inputs

    for key in model_inputs(name, model):
        if key in INPUT_OPTIONS and getattr(args, key) is None:
            what, option = INPUT_OPTIONS[key]
            raise ValueError(f"{args.checkpoint}: its model ({type(model).__name__}) reads {what}: pass {option}")


def run(args: argparse.Namespace) -> int:
    if args.weights is not None:  # named weights: their checked file (downloaded once)
        from torchssc.zoo.resolve import resolve_weights

        args.checkpoint = str(resolve_weights(args.weights))
    if Path(args.depth).is_dir():  # a folder of frames: one volume, picture and viewer per frame
        from torchssc.predict.folder import run_folder

        return run_folder(args, default_formats=FOLDER_DEFAULTS, default_intrinsics=NYU_INTRINSICS)
    from torchssc.engine.checkpoint import load_model
    from torchssc.models import model_inputs
    from torchssc.predict.observation import apply_observation
    from torchssc.predict.predict import predict_labels, prepare_inputs
    from torchssc.viz.export import export_scene
    from torchssc.viz.volumes import Volume

    formats = _formats(args.formats)
    model, state = load_model(args.checkpoint, device=args.device)  # the checkpoint's own recipe
    name = state["config"]["model"]["name"]
    _check_inputs(model, name, args)
    fine = "tsdf_fine" in model_inputs(name, model)
    batch, pose, origin, how = prepare_inputs(
        args.depth, rgb_path=args.rgb, prior_path=args.prior, pose_path=args.pose, intrinsics=args.intrinsics,
        depth_encoding=args.depth_encoding, fine=fine, seed=args.seed,
        report=lambda line: print(f"torchssc predict: warning: {line}", file=sys.stderr),
    )
    print(how)
    labels = predict_labels(model, batch, seed=args.seed)
    if not args.raw:  # the observation decides what the camera saw (predict/observation.py)
        labels = apply_observation(labels, batch["visibility"][0].numpy())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "npy" in formats:
        save_npy_atomic(out / f"{args.name}.npy", labels)
        text = io.StringIO()
        np.savetxt(text, pose, fmt="%.9g")  # 4x4 camera-to-world, readable by --pose
        write_bytes_atomic(out / f"{args.name}_pose.txt", text.getvalue().encode())
        written += [out / f"{args.name}.npy", out / f"{args.name}_pose.txt"]
    viz_formats = [f for f in formats if f != "npy"]
    if viz_formats:
        volume = Volume(labels=labels, voxel=LABEL_VOXEL, origin=origin, pose=pose,
                        intrinsics=args.intrinsics, name="prediction")
        masks = [m for m in args.mask.split(",") if m]
        written += export_scene(out, args.name, pred=volume, formats=viz_formats, masks=masks)
    counts = np.bincount(labels.ravel(), minlength=256)
    unknown = "" if args.raw else f", {int(counts[255])} unknown (not seen, 255)"
    print(f"occupied voxels: {int(counts[1:255].sum())} of {labels.size}{unknown}")
    for path in written:
        print(f"wrote {path}")
    return 0
