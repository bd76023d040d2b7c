"""``torchssc viz``: render volumes to PNG, meshes (PLY/GLB) and an interactive HTML viewer.

Examples::

    # a saved prediction beside its ground truth, masked to the voxels the metrics look at
    torchssc viz results/0001.npy --prepared data/NYU --mask label_weight --out viz/

    # a raw depthbin file (NYU36 labels, mapped to 11 classes; pose and origin from the file)
    torchssc viz NYU0001_0000.bin --out viz/

    # any label volume, only a PNG and a viewer
    torchssc viz volume.npz --formats png,html

    # a trained model's completion of a prepared frame, beside its ground truth (docs/zoo.md)
    torchssc viz --weights NAME --prepared data/NYU --id 0001

A thin layer over :func:`torchssc.viz.export.export_scene`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from torchssc.datasets import get_dataset_spec
from torchssc.geometry import Intrinsics
from torchssc.viz.export import FORMATS, box_mismatch, downsample_volume, export_scene
from torchssc.viz.camera import VIEWS
from torchssc.viz.volumes import CLASS_SPACES, MASKS, load_prepared, load_volume


def _list(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items
    return parse


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m or int(m.group(1)) < 8 or int(m.group(2)) < 8:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT (each >= 8), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", nargs="?", default=None,
                        help="volume to show: .npy/.npz labels (e.g. results/<id>.npy from eval --save; "
                             "flat or 3-D, 60x36x60 or 240x144x240, or 12-class scores) or a depthbin .bin")
    parser.add_argument("--prepared", metavar="ROOT", default=None,
                        help="prepared root: the frame's label is the ground truth shown beside VOLUME; "
                             "it also gives label_weight, pose, origin and intrinsics")
    parser.add_argument("--id", default=None,
                        help="frame id in --prepared (default: VOLUME's file name when it is a number)")
    parser.add_argument("--gt", metavar="PATH", default=None,
                        help="ground-truth volume file (instead of the prepared frame's label)")
    parser.add_argument("--out", metavar="DIR", default="viz", help="output folder (default: viz)")
    parser.add_argument("--name", default=None, help="file stem of the outputs (default: the id or VOLUME's stem)")
    parser.add_argument("--formats", type=_list(FORMATS), default=list(FORMATS),
                        help=f"comma list of outputs (default: {','.join(FORMATS)})")
    parser.add_argument("--views", type=_list(VIEWS), default=None,
                        help=f"comma list from {','.join(VIEWS)} (default: all that the known pose allows)")
    parser.add_argument("--mask", type=_list(MASKS), default=[],
                        help="comma list: label_weight (hide voxels the metrics ignore; makes raw "
                             "predictions readable), frustum (only voxels in the camera's view)")
    parser.add_argument("--size", type=_size, default=(480, 360), help="size of each rendered view (default 480x360)")
    parser.add_argument("--shading", choices=("shaded", "flat"), default="shaded",
                        help="shaded faces with voxel outlines, or flat palette colours")
    parser.add_argument("--show-ceiling", action="store_true",
                        help="keep the ceiling in the views from above (hidden by default)")
    parser.add_argument("--classes", choices=CLASS_SPACES, default="auto",
                        help="label space of .npy/.npz volumes: 11, 36 (raw NYU36, mapped), or auto "
                             "(36 when a value 12..36 occurs)")
    parser.add_argument("--key", default=None, help="array name inside an .npz (default: its only array or arr_0)")
    parser.add_argument("--dataset", default=None, metavar="NAME|YAML",
                        help="the dataset the volumes belong to: a built-in name (torchssc list) or a spec "
                             "YAML; gives the grids, class names and colours (default: nyu, or the model's)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--weights", metavar="NAME", default=None,
                       help="named weights (torchssc weights): their completion of the --prepared frame --id is "
                            "the volume shown beside its ground truth (docs/zoo.md)")
    model.add_argument("--checkpoint", metavar="PATH", default=None,
                       help="a checkpoint, as --weights: its completion of the --prepared frame --id")
    parser.add_argument("--downsample", action="store_true",
                        help="reduce 240x144x240 volumes to 60x36x60 (docs/data.md rule) before showing them")
    parser.add_argument("--class-boundaries", action="store_true",
                        help="meshes keep the faces between occupied voxels of different classes")
    parser.add_argument("--meta", metavar="FILE", default=None,
                        help="an .npz with pose (4x4), origin (3) and optionally intrinsics (6), e.g. "
                             "a prepared Meta/<id>.npz, for volumes that carry none")
    parser.add_argument("--prior", metavar="PNG", default=None,
                        help="a 2D semantic prior (8-bit NYU-13 ids) of your own frame, lifted into the grid "
                             "through the mapping built from --depth (and --pose, else estimated) and shown "
                             "beside the other volume")
    parser.add_argument("--depth", metavar="PNG", default=None, help="the frame's depth, for --prior")
    parser.add_argument("--pose", metavar="FILE", default=None,
                        help="the frame's camera-to-world pose, for --prior (e.g. predict's <name>_pose.txt)")
    parser.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY[,W,H]",
                        help="camera intrinsics (default: the frame's, else NYU's)")


def _read_meta(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such meta file")
    with np.load(p, allow_pickle=False) as data:
        if "pose" not in data or "origin" not in data:
            raise ValueError(f"{p}: needs arrays 'pose' and 'origin' (found {list(data.keys())})")
        meta = {"pose": data["pose"].astype(np.float64).reshape(4, 4),
                "origin": data["origin"].astype(np.float64).reshape(3)}
        if "intrinsics" in data:
            meta["intrinsics"] = Intrinsics.from_array(data["intrinsics"])
    return meta


def lifted_prior_volume(args: argparse.Namespace):
    """The ``--prior`` PNG lifted into the label grid of the frame of ``--depth`` (and ``--pose``,
    else the estimated pose): each voxel holding a depth point takes its pixel's class
    (:class:`torchssc.models.constant.LiftedPrior`), the rest is empty."""
    from torchssc.geometry import LABEL_VOXEL, NYU_INTRINSICS
    from torchssc.models.constant import LiftedPrior
    from torchssc.predict.predict import prepare_inputs
    from torchssc.viz.export import LIFTED_PRIOR
    from torchssc.viz.volumes import Volume

    if args.depth is None:
        raise ValueError("--prior needs --depth (the mapping is built from the frame's depth)")
    intrinsics = Intrinsics.parse(args.intrinsics) if args.intrinsics else NYU_INTRINSICS
    batch, pose, origin, _ = prepare_inputs(args.depth, prior_path=args.prior, pose_path=args.pose,
                                            intrinsics=intrinsics)
    labels = LiftedPrior()(batch)["semantic"].argmax(1)[0].numpy().astype(np.uint8)
    return Volume(labels=labels, voxel=LABEL_VOXEL, origin=origin, pose=pose, intrinsics=intrinsics,
                  name=LIFTED_PRIOR)


def run(args: argparse.Namespace) -> int:
    cfg = checkpoint = None
    if args.weights is not None or args.checkpoint is not None:  # a model completes the prepared frame
        from torchssc.zoo.use import model_source

        if args.volume is not None or args.prepared is None or args.id is None:
            raise ValueError("--weights/--checkpoint show a model's completion of a prepared frame: give "
                             "--prepared ROOT --id ID, and no VOLUME")
        cfg, checkpoint = model_source(args.checkpoint, args.weights, [f"data.root={args.prepared}"])
    spec = get_dataset_spec(args.dataset or (cfg["data"]["dataset"] if cfg else "nyu"))
    pred = None if args.volume is None else load_volume(args.volume, classes=args.classes, key=args.key, spec=spec)
    if args.id is not None and args.prepared is None:
        raise ValueError("--id needs --prepared ROOT")
    frame_id = args.id
    if frame_id is None and args.prepared is not None and pred is not None and pred.name.isdigit():
        frame_id = pred.name
    gt = None
    if args.prepared is not None:
        if frame_id is None:
            raise ValueError("--prepared needs --id (or a VOLUME named <id>.npy)")
        gt = load_prepared(args.prepared, frame_id, spec)
        if checkpoint is not None:
            from torchssc.zoo.use import predict_prepared

            pred = replace(gt, labels=predict_prepared(cfg, checkpoint, frame_id), name=frame_id)
    if args.gt is not None:
        given = load_volume(args.gt, classes=args.classes, key=args.key, spec=spec)
        gt = given if gt is None else replace(gt, labels=given.labels, voxel=given.voxel)
    if args.prior is not None:
        prior = lifted_prior_volume(args)
        if pred is not None and gt is not None:
            raise ValueError("--prior is shown beside one other volume: drop --gt/--prepared or VOLUME")
        gt, pred = (prior, pred) if pred is not None else (gt, prior)
    if gt is None and pred is None:
        raise ValueError("nothing to show: give a VOLUME, --gt, --prepared with --id, or --prior")
    extra = _read_meta(args.meta) if args.meta else {}
    if args.intrinsics:
        extra["intrinsics"] = Intrinsics.parse(args.intrinsics)
    if extra:
        gt, pred = (None if v is None else replace(v, **extra) for v in (gt, pred))
    if args.downsample:
        gt, pred = (v if v is None or v.labels.shape != spec.fine_grid else downsample_volume(v) for v in (gt, pred))
    mismatch = box_mismatch(gt, pred)
    if mismatch:
        print(f"torchssc viz: warning: {mismatch}", file=sys.stderr)
    name = args.name or frame_id or (pred if pred is not None else gt).name
    written = export_scene(
        args.out, name, gt=gt, pred=pred, formats=args.formats, views=args.views, masks=args.mask,
        size=args.size, shading=args.shading, hide_ceiling_above=not args.show_ceiling,
        class_boundaries=args.class_boundaries, spec=spec,
    )
    for path in written:
        print(path)
    return 0
