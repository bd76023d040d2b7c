"""``torchssc predict``: one RGB-D frame of your own → completed scene (.npy, renders, meshes)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from torchssc.geometry import LABEL_VOXEL, NYU_INTRINSICS, Intrinsics
from torchssc.io.atomic import save_npy_atomic, write_bytes_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint (.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--depth", help="depth image: 16-bit PNG or .npy in metres")
    source.add_argument("--frames", metavar="DIR",
                        help="a folder of frames: ScanNet's exporter layout (depth/ color/ pose/ "
                             "intrinsic/intrinsic_depth.txt) or depth PNGs with one intrinsics file; "
                             "one volume, picture and viewer per frame (docs/predict.md)")
    parser.add_argument("--floor", type=float, default=None, metavar="METRES",
                        help="--frames with poses: world height of the floor (default: found in each "
                             "frame's depth; SSCNet's worlds have it at 0)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="--frames: every N-th frame (default 1)")
    parser.add_argument("--rgb", help="8-bit RGB image of the same size (needed by RGB models)")
    parser.add_argument("--prior", help="2D semantic prior: an 8-bit PNG of NYU-13 ids 0..13 of the same size "
                        "(needed by the prior models, e.g. sketch_aware_ssc_prior, unet3d_prior)")
    parser.add_argument("--pose", help="camera-to-world pose: .bin (depthbin), .npy or text with 16 numbers "
                        "(default: estimate gravity, floor height and room directions from the depth)")
    parser.add_argument("--intrinsics", type=Intrinsics.parse, default=None,
                        help="fx,fy,cx,cy[,width,height] (default: NYU's 518.8579,518.8579,320,240; "
                             "with --frames, the folder's own camera)")
    parser.add_argument("--depth-encoding", default="auto", choices=("auto", "sscnet", "millimetres"),
                        help="16-bit PNG encoding (auto: decided on evidence, refused when ambiguous; see docs/predict.md)")
    parser.add_argument("--out", default="prediction", help="output folder (default: ./prediction)")
    parser.add_argument("--name", default="scene", help="file stem of the outputs")
    parser.add_argument("--formats", default=None,
                        help="comma list of npy,png,ply,glb,html (default: all; with --frames npy,png,html)")
    parser.add_argument("--no-progress", action="store_true", help="--frames: no progress bar")
    parser.add_argument("--mask", default="", help="comma list of masks for the renders: frustum")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's sampling and of RANSAC")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")


def run(args: argparse.Namespace) -> int:
    from torchssc.engine.checkpoint import load_model
    from torchssc.models import model_inputs
    from torchssc.predict.predict import predict_labels, prepare_inputs
    from torchssc.viz.export import export_scene
    from torchssc.viz.volumes import Volume

    model, state = load_model(args.checkpoint, device=args.device)  # the checkpoint's own recipe
    if args.frames:
        return _run_folder(args, model, state)
    formats = [f for f in (args.formats or "npy,png,ply,glb,html").split(",") if f]
    if args.intrinsics is None:
        args.intrinsics = NYU_INTRINSICS
    fine = "tsdf_fine" in model_inputs(state["config"]["model"]["name"], model)
    batch, pose, origin, how = prepare_inputs(
        args.depth, rgb_path=args.rgb, prior_path=args.prior, pose_path=args.pose, intrinsics=args.intrinsics,
        depth_encoding=args.depth_encoding, fine=fine, seed=args.seed,
    )
    print(how)
    labels = predict_labels(model, batch, seed=args.seed)
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
    counts = np.bincount(labels.ravel(), minlength=12)
    print(f"occupied voxels: {int(counts[1:].sum())} of {labels.size}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _run_folder(args: argparse.Namespace, model, state: dict) -> int:
    """``--frames DIR``: every frame of the folder (:mod:`torchssc.predict.folder`); exit 1 when
    a frame failed (each reported), 0 otherwise."""
    import sys

    from tqdm import tqdm

    from torchssc.io.scans import open_scan_folder
    from torchssc.models import model_inputs
    from torchssc.predict.folder import predict_folder

    folder = open_scan_folder(args.frames, args.intrinsics)
    formats = tuple(f for f in (args.formats or "npy,png,html").split(",") if f)
    needs = tuple(model_inputs(state["config"]["model"]["name"], model))
    print(f"{folder.root}: {len(folder.frames)} frame(s), {folder.kind} layout, camera {folder.intrinsics.describe()}"
          + (", poses aligned by the scene's axisAlignment" if folder.axis_alignment is not None else ""))
    summary = predict_folder(
        model, folder, args.out, needs=needs, formats=formats, floor=args.floor, every=args.every, seed=args.seed,
        progress=not args.no_progress, report=lambda line: tqdm.write(line, file=sys.stderr),
        spec=state["config"].get("data", {}).get("dataset", "nyu"),
    )
    print(f"{summary.line()}; wrote {sum(len(w) for w in summary.written.values())} files to {args.out}")
    return 1 if summary.failed else 0
