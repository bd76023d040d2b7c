"""The pictures of docs/predict.md's "What the depth decides": predict's observation rule on a
synthetic frame whose truth is known.

    .venv/bin/python benchmarks/predict_pictures.py --out docs/images

writes

* ``predict_observation.png``: a model that answers "wall" everywhere (what a network never shown
  free space tends to), as ``torchssc predict --raw`` writes it and as ``torchssc predict`` writes
  it by default, beside the room's truth through the same rule; the frame's camera view and the
  view from above;
* ``predict_viewer.html``: the viewer page of that truth with the frame's camera, for the
  screenshot of the viewer's first view (the command to take it is printed: a headless Chromium,
  run by hand; nothing here starts a browser).

The frame: synthetic room 1 of seed 3, Kinect-like depth noise, its pose given (as ``--pose``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from torchssc.geometry import LABEL_VOXEL, NYU_INTRINSICS
from torchssc.models.constant import ConstantSSC
from torchssc.predict.observation import apply_observation, region_counts
from torchssc.predict.predict import frame_batch, predict_labels
from torchssc.prepare.pipeline import prepare_frame
from torchssc.synth.generator import generate_frame
from torchssc.viz.camera import content_bounds
from torchssc.viz.compose import compose, save_png
from torchssc.viz.html import write_html
from torchssc.viz.render import render_views

WALL = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--frame", type=int, default=1)
    parser.add_argument("--size", default="320x240", help="panel size WxH")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    frame = generate_frame(args.seed, args.frame, noise="kinect")
    pose, origin = frame.pose.astype(np.float64), frame.origin.astype(np.float64)
    batch = frame_batch(frame.depth, pose, origin)
    vis = batch["visibility"][0].numpy()
    raw = predict_labels(ConstantSSC(WALL), batch)
    masked = apply_observation(raw, vis)
    truth = prepare_frame(frame.depth, frame.pose, frame.origin, frame.labels, intrinsics=NYU_INTRINSICS)
    truth_masked = apply_observation(truth.label.reshape(vis.shape), vis)
    print("regions:", region_counts(vis))

    views = ["camera", "oblique"]
    volumes = [raw, masked, truth_masked]
    boxes = np.stack([content_bounds(v, LABEL_VOXEL, origin) for v in volumes[1:]])
    bounds = np.stack([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])  # framed on what is kept
    columns = [render_views(v, views=views, size=size, pose=pose, origin=origin, voxel=LABEL_VOXEL,
                            bounds=bounds) for v in volumes]
    titles = ["'wall' everywhere, --raw", "the same, default", "the room's truth, default"]
    image = compose([list(row) for row in zip(*columns)], column_titles=titles, row_titles=views)
    save_png(out / "predict_observation.png", image)
    page = out / "predict_viewer.html"
    write_html(page, truth_masked, title="torchssc: a synthetic room, as predict draws it", voxel=LABEL_VOXEL,
               origin=origin, pose=pose)
    print(f"wrote {out / 'predict_observation.png'} and {page}")
    print("screenshot of the viewer's first view (by hand):\n"
          f"  chromium --headless=new --no-sandbox --use-angle=swiftshader --enable-unsafe-swiftshader "
          f"--screenshot={out / 'viewer_default_view.png'} --window-size=800,600 {page.resolve().as_uri()}")


if __name__ == "__main__":
    main()
