"""A standalone interactive viewer: one self-contained HTML file, hand-written WebGL, no downloads.

Voxels labelled 255 (unknown: outside the room, or not seen by the camera, docs/predict.md) are
not drawn and not a class of the legend; the info line counts them.

The file embeds, per volume, every occupied voxel as base64 of 8-byte little-endian records
``(a: u16, b: u16, c: u16, label: u8, faces: u8)``: grid index (axes X, Z up, Y), label 1..11,
and a bit mask of the faces visible with every class shown (bit ``2k + s``, world axis ``k`` =
x, y, z, ``s`` = 0 for the + side, 1 for the - side; see
:func:`torchssc.viz.mesh.exposed_faces`). The page rebuilds the visible quads itself whenever
classes are toggled or cut away (so hiding the ceiling opens the walls' tops), shades each face
direction like the PNG renders, and offers orbit (drag), pan (right- or shift-drag), zoom
(wheel), a class legend whose entries toggle classes (ceiling starts hidden, so the room's
inside shows from above), a height cut, and a switch between volumes (e.g. ground truth and
prediction). The first view (and double-click's) stands behind the frame's camera and looks along
its optical axis (:func:`torchssc.viz.camera.viewer_view`). No script, style or font is loaded
from anywhere. When its script has run, the page marks its root element
``data-viewer="drawn"`` (``"no-webgl"`` without WebGL) and an uncaught error as
``data-viewer-error``, so a headless browser can tell (tests/viz/test_viz_browser.py).
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import os
from typing import Mapping, Sequence

import numpy as np

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.geometry import IGNORE_LABEL
from torchssc.io.atomic import write_bytes_atomic
from torchssc.viz.camera import viewer_view
from torchssc.viz.mesh import exposed_faces
from torchssc.viz.labels import check_labels, default_voxel, occupied
from torchssc.viz.rays import FACE_SHADE

RECORD = np.dtype([("a", "<u2"), ("b", "<u2"), ("c", "<u2"), ("label", "u1"), ("faces", "u1")])
"""One embedded voxel: grid index, label, visible-face bit mask (8 bytes)."""


def encode_voxels(labels: np.ndarray) -> tuple[np.ndarray, str]:
    """The occupied voxels (labels 1..11) of a volume as :data:`RECORD` rows and base64 text.

    ``faces`` holds the faces visible when every class is shown (:func:`exposed_faces`); the
    page recomputes them as classes are toggled or cut away.

    Args:
        labels: ``(D, H, W)`` 0..11 or 255, each side at most 65535.
    Returns:
        ``(records (N,) RECORD, base64 str)``; voxels in C order.
    """
    labels = check_labels(labels, num_classes=255)  # any class id; the page's palette colours them
    if max(labels.shape, default=0) > 65535:
        raise ValueError(f"volume too large for the viewer: {labels.shape}")
    faces = exposed_faces(labels)
    bits = np.zeros(labels.shape, dtype=np.uint8)
    for code in range(6):
        bits |= faces[code].astype(np.uint8) << code
    idx = np.argwhere(occupied(labels))
    rec = np.empty(len(idx), dtype=RECORD)
    rec["a"], rec["b"], rec["c"] = idx[:, 0], idx[:, 1], idx[:, 2]
    rec["label"] = labels[idx[:, 0], idx[:, 1], idx[:, 2]]
    rec["faces"] = bits[idx[:, 0], idx[:, 1], idx[:, 2]]
    return rec, base64.b64encode(rec.tobytes()).decode("ascii")


def decode_voxels(text: str) -> np.ndarray:
    """Inverse of the base64 part of :func:`encode_voxels`: ``(N,) RECORD``."""
    return np.frombuffer(base64.b64decode(text), dtype=RECORD)


def viewer_html(
    volumes: Mapping[str, np.ndarray] | np.ndarray,
    *,
    title: str = "torchssc viewer",
    voxel: float | None = None,
    origin: Sequence[float] | None = None,
    spec: DatasetSpec | str = "nyu",
    pose: np.ndarray | None = None,
) -> str:
    """The viewer page as a string.

    Args:
        volumes: one ``(D, H, W)`` label volume, or ``{name: volume}`` (same box; shown one at a
            time with buttons to switch, in order).
        title: page title.
        voxel: voxel edge (m) of the first volume (others are scaled to the same box).
        origin: ``(3,)`` world corner, shown in the page's info line and, with ``pose``, placing
            the first view.
        spec: the dataset (:mod:`torchssc.datasets`): class names and colours of the legend.
        pose: ``(4, 4)`` camera-to-world of the frame: the first view stands behind that camera
            (:func:`~torchssc.viz.camera.viewer_view`; without it, NYU's usual camera is assumed).
    """
    spec = get_dataset_spec(spec)
    if isinstance(volumes, np.ndarray):
        volumes = {"volume": volumes}
    if not volumes:
        raise ValueError("viewer_html needs at least one volume")
    first = check_labels(next(iter(volumes.values())), "volume", spec.num_classes)
    voxel = default_voxel(first.shape) if voxel is None else float(voxel)
    box = voxel * np.array([first.shape[0], first.shape[2], first.shape[1]], dtype=np.float64)  # x, y, z metres
    entries = []
    for name, vol in volumes.items():
        vol = check_labels(vol, name, spec.num_classes)
        rec, text = encode_voxels(vol)
        scale = (box / np.array([vol.shape[0], vol.shape[2], vol.shape[1]])).tolist()  # metres per voxel, x y z
        entries.append({"name": str(name), "shape": list(vol.shape), "scale": scale, "count": int(len(rec)),
                        "unknown": int((vol == IGNORE_LABEL).sum()), "data": text})
    data = {
        "title": title,
        "box": box.tolist(),
        "origin": None if origin is None else [float(x) for x in origin],
        "names": list(spec.classes),
        "palette": [list(c) for c in spec.palette],
        "shade": FACE_SHADE[[0, 1, 4, 5, 2, 3]].tolist(),  # per world-axis face code (x+, x-, y+, y-, z+, z-)
        "volumes": entries,
        "view": viewer_view(box, pose, origin).orbit(),
    }
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    return _TEMPLATE.replace("@TITLE@", html_lib.escape(title)).replace("@DATA@", payload)


def write_html(
    path: str | os.PathLike,
    volumes: Mapping[str, np.ndarray] | np.ndarray,
    *,
    title: str = "torchssc viewer",
    voxel: float | None = None,
    origin: Sequence[float] | None = None,
    spec: DatasetSpec | str = "nyu",
    pose: np.ndarray | None = None,
) -> None:
    """Write :func:`viewer_html` to ``path`` atomically (UTF-8)."""
    page = viewer_html(volumes, title=title, voxel=voxel, origin=origin, spec=spec, pose=pose)
    write_bytes_atomic(path, page.encode("utf-8"))


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@TITLE@</title>
<style>
  html, body { margin: 0; height: 100%; background: #fff; font: 13px sans-serif; color: #222; overflow: hidden; }
  #view { position: absolute; top: 0; left: 0; width: 100%; height: 100%; display: block; touch-action: none; }
  #panel { position: absolute; top: 8px; left: 8px; background: rgba(255,255,255,0.9); padding: 8px 10px;
           border: 1px solid #ccc; border-radius: 4px; max-width: 280px; }
  #panel h1 { font-size: 14px; margin: 0 0 6px 0; }
  .sw { display: inline-block; width: 12px; height: 12px; border: 1px solid #444; vertical-align: -2px; margin-right: 4px; }
  label { display: block; cursor: pointer; }
  button { margin: 0 4px 4px 0; }
  button.on { font-weight: bold; }
  #info, #help { color: #666; margin-top: 6px; }
  #msg { position: absolute; top: 45%; width: 100%; text-align: center; color: #a00; }
</style>
</head>
<body>
<canvas id="view"></canvas>
<div id="panel">
  <h1 id="title"></h1>
  <div id="volumes"></div>
  <div id="legend"></div>
  <label>height cut <input id="cut" type="range" min="1" max="1" value="1"> <span id="cutv"></span></label>
  <div id="info"></div>
  <div id="help">drag: orbit &middot; right/shift-drag: pan &middot; wheel: zoom &middot; double-click: reset</div>
</div>
<div id="msg"></div>
<script>
window.addEventListener("error", function (e) { document.documentElement.setAttribute("data-viewer-error", String(e.message)); });
</script>
<script type="application/json" id="data">@DATA@</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const IN_FACE = [[1, 2], [2, 0], [0, 1]];
const CCW = [[0, 0], [1, 0], [1, 1], [0, 1]];
const TRI = [0, 1, 2, 0, 2, 3];
let current = 0;
const visible = DATA.names.map((n, i) => i > 0 && n !== "ceiling");

function decode(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}
const decoded = DATA.volumes.map(v => decode(v.data));

// Dense label grid of volume k (built once), to find which faces show.
const grids = [];
function grid(k) {
  if (grids[k]) return grids[k];
  const vol = DATA.volumes[k], view = decoded[k], sh = vol.shape, g = new Uint8Array(sh[0] * sh[1] * sh[2]);
  for (let r = 0; r < vol.count; r++) {
    const o = r * 8;
    g[(view.getUint16(o, true) * sh[1] + view.getUint16(o + 2, true)) * sh[2] + view.getUint16(o + 4, true)] = view.getUint8(o + 6);
  }
  return (grids[k] = g);
}

// Triangles of the faces between a shown voxel and one that is not shown (empty, a hidden
// class, above the cut, or outside the grid), in metres from the box corner, z up.
function build(k) {
  const vol = DATA.volumes[k], view = decoded[k], n = vol.count, s = vol.scale, sh = vol.shape, g = grid(k);
  const top = Number(document.getElementById("cut").value) * DATA.box[2] / 100;
  const shown = (a, b, c) => {
    if (a < 0 || b < 0 || c < 0 || a >= sh[0] || b >= sh[1] || c >= sh[2]) return false;
    const lab = g[(a * sh[1] + b) * sh[2] + c];
    return lab > 0 && visible[lab] && (b + 0.5) * s[2] <= top;
  };
  const masks = new Uint8Array(n);
  let faces = 0;
  for (let r = 0; r < n; r++) {
    const o = r * 8, a = view.getUint16(o, true), b = view.getUint16(o + 2, true), c = view.getUint16(o + 4, true);
    if (!shown(a, b, c)) continue;
    let bits = 0;
    // face codes 2k+s over world axes x, y, z = grid axes a, c, b
    if (!shown(a + 1, b, c)) bits |= 1;
    if (!shown(a - 1, b, c)) bits |= 2;
    if (!shown(a, b, c + 1)) bits |= 4;
    if (!shown(a, b, c - 1)) bits |= 8;
    if (!shown(a, b + 1, c)) bits |= 16;
    if (!shown(a, b - 1, c)) bits |= 32;
    masks[r] = bits;
    for (let f = 0; f < 6; f++) if (bits & (1 << f)) faces++;
  }
  const pos = new Float32Array(faces * 18), col = new Uint8Array(faces * 18);
  let p = 0;
  for (let r = 0; r < n; r++) {
    const bits = masks[r];
    if (!bits) continue;
    const o = r * 8;
    const corner = [view.getUint16(o, true), view.getUint16(o + 4, true), view.getUint16(o + 2, true)];  // x, y, z
    const rgb = DATA.palette[view.getUint8(o + 6)];
    for (let f = 0; f < 6; f++) {
      if (!(bits & (1 << f))) continue;
      const axis = f >> 1, neg = f & 1, ij = IN_FACE[axis], shade = DATA.shade[f];
      const quad = [];
      for (let q = 0; q < 4; q++) {
        const cc = CCW[neg ? 3 - q : q], v = corner.slice();
        v[axis] += neg ? 0 : 1; v[ij[0]] += cc[0]; v[ij[1]] += cc[1];
        quad.push([v[0] * s[0], v[1] * s[1], v[2] * s[2]]);
      }
      for (const t of TRI) {
        pos.set(quad[t], p);
        col[p] = Math.round(rgb[0] * shade); col[p + 1] = Math.round(rgb[1] * shade); col[p + 2] = Math.round(rgb[2] * shade);
        p += 3;
      }
    }
  }
  return { pos: pos, col: col, count: faces * 6, faces: faces };
}

// ---- minimal matrix helpers (column-major, as WebGL expects)
function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
}
function sub(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
function norm(a) { const l = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / l, a[1] / l, a[2] / l]; }
function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
function lookAt(eye, target, up) {
  const z = norm(sub(eye, target)), x = norm(cross(up, z)), y = cross(z, x);
  return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0, -dot(x, eye), -dot(y, eye), -dot(z, eye), 1];
}
function mul(a, b) {
  const out = new Array(16).fill(0);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) for (let k = 0; k < 4; k++) out[c * 4 + r] += a[k * 4 + r] * b[c * 4 + k];
  return out;
}

// ---- WebGL
const canvas = document.getElementById("view");
const gl = canvas.getContext("webgl", { antialias: true });
const msg = document.getElementById("msg");
let prog = null, bufPos = null, bufCol = null, geom = { count: 0, faces: 0 };
if (!gl) {
  msg.textContent = "This browser has no WebGL: the viewer cannot draw.";
} else {
  const vs = "attribute vec3 pos; attribute vec3 col; uniform mat4 mvp; varying vec3 vcol;" +
             "void main() { vcol = col; gl_Position = mvp * vec4(pos, 1.0); }";
  const fs = "precision mediump float; varying vec3 vcol; void main() { gl_FragColor = vec4(vcol, 1.0); }";
  const compile = (type, src) => {
    const sh = gl.createShader(type); gl.shaderSource(sh, src); gl.compileShader(sh);
    if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
    return sh;
  };
  prog = gl.createProgram();
  gl.attachShader(prog, compile(gl.VERTEX_SHADER, vs));
  gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(prog);
  gl.useProgram(prog);
  bufPos = gl.createBuffer(); bufCol = gl.createBuffer();
  gl.enable(gl.DEPTH_TEST);
  gl.enable(gl.CULL_FACE);
}

function upload() {
  geom = build(current);
  const vol = DATA.volumes[current];
  document.getElementById("info").textContent =
    vol.name + ": " + vol.shape.join("x") + " grid, " + geom.faces + " faces shown" +
    (vol.unknown ? ", " + vol.unknown + " voxels unknown (not seen: not drawn)" : "") +
    (DATA.origin ? ", origin (" + DATA.origin.map(x => x.toFixed(2)).join(", ") + ") m" : "");
  msg.textContent = vol.count === 0 ? "No occupied voxels in this volume." : (gl ? "" : msg.textContent);
  if (!gl) return;
  gl.bindBuffer(gl.ARRAY_BUFFER, bufPos); gl.bufferData(gl.ARRAY_BUFFER, geom.pos, gl.STATIC_DRAW);
  gl.bindBuffer(gl.ARRAY_BUFFER, bufCol); gl.bufferData(gl.ARRAY_BUFFER, geom.col, gl.STATIC_DRAW);
  draw();
}

let cam;
// first view: behind the frame's camera, along its optical axis (torchssc.viz.camera.viewer_view)
function reset() { const v = DATA.view; cam = { yaw: v.yaw, pitch: v.pitch, dist: v.dist, target: v.target.slice() }; }
reset();

function draw() {
  if (!gl) return;
  const w = Math.round(canvas.clientWidth * devicePixelRatio), h = Math.round(canvas.clientHeight * devicePixelRatio);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  gl.viewport(0, 0, canvas.width, canvas.height);
  gl.clearColor(1, 1, 1, 1);
  gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
  if (geom.count === 0) return;
  const cp = Math.cos(cam.pitch), eye = [
    cam.target[0] + cam.dist * cp * Math.cos(cam.yaw),
    cam.target[1] + cam.dist * cp * Math.sin(cam.yaw),
    cam.target[2] + cam.dist * Math.sin(cam.pitch)];
  const proj = perspective(0.75, canvas.width / Math.max(canvas.height, 1), cam.dist * 0.01, cam.dist * 10);
  gl.uniformMatrix4fv(gl.getUniformLocation(prog, "mvp"), false, new Float32Array(mul(proj, lookAt(eye, cam.target, [0, 0, 1]))));
  const lp = gl.getAttribLocation(prog, "pos"), lc = gl.getAttribLocation(prog, "col");
  gl.bindBuffer(gl.ARRAY_BUFFER, bufPos); gl.enableVertexAttribArray(lp); gl.vertexAttribPointer(lp, 3, gl.FLOAT, false, 0, 0);
  gl.bindBuffer(gl.ARRAY_BUFFER, bufCol); gl.enableVertexAttribArray(lc); gl.vertexAttribPointer(lc, 3, gl.UNSIGNED_BYTE, true, 0, 0);
  gl.drawArrays(gl.TRIANGLES, 0, geom.count);
}

// ---- controls
let drag = null;
canvas.addEventListener("contextmenu", e => e.preventDefault());
canvas.addEventListener("pointerdown", e => { drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey }; canvas.setPointerCapture(e.pointerId); });
canvas.addEventListener("pointerup", () => { drag = null; });
canvas.addEventListener("pointermove", e => {
  if (!drag) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  drag.x = e.clientX; drag.y = e.clientY;
  if (drag.pan) {
    const k = cam.dist * 0.0015, sy = Math.sin(cam.yaw), cy = Math.cos(cam.yaw);
    cam.target[0] += k * (dx * sy - dy * cy * Math.sin(cam.pitch));
    cam.target[1] += k * (-dx * cy - dy * sy * Math.sin(cam.pitch));
    cam.target[2] += k * dy * Math.cos(cam.pitch);
  } else {
    cam.yaw -= dx * 0.008;
    cam.pitch = Math.max(-1.55, Math.min(1.55, cam.pitch + dy * 0.008));
  }
  draw();
});
canvas.addEventListener("wheel", e => { e.preventDefault(); cam.dist *= Math.exp(e.deltaY * 0.001); draw(); }, { passive: false });
canvas.addEventListener("dblclick", () => { reset(); draw(); });
window.addEventListener("resize", draw);

// ---- panel
document.getElementById("title").textContent = DATA.title;
const cut = document.getElementById("cut");
cut.max = 100; cut.value = 100;
const showCut = () => { document.getElementById("cutv").textContent = (cut.value * DATA.box[2] / 100).toFixed(2) + " m"; };
cut.addEventListener("input", () => { showCut(); upload(); });
showCut();
const legend = document.getElementById("legend");
DATA.names.forEach((name, i) => {
  if (i === 0) return;
  const row = document.createElement("label"), box = document.createElement("input"), sw = document.createElement("span");
  box.type = "checkbox"; box.checked = visible[i];
  box.addEventListener("change", () => { visible[i] = box.checked; upload(); });
  sw.className = "sw"; sw.style.background = "rgb(" + DATA.palette[i].join(",") + ")";
  row.appendChild(box); row.appendChild(sw); row.appendChild(document.createTextNode(name));
  legend.appendChild(row);
});
const vbar = document.getElementById("volumes");
if (DATA.volumes.length > 1) {
  DATA.volumes.forEach((v, k) => {
    const b = document.createElement("button");
    b.textContent = v.name;
    b.addEventListener("click", () => { current = k; [...vbar.children].forEach((x, j) => x.className = j === k ? "on" : ""); upload(); });
    vbar.appendChild(b);
  });
  vbar.children[0].className = "on";
}
upload();
document.documentElement.setAttribute("data-viewer", gl ? "drawn" : "no-webgl");
</script>
</body>
</html>
"""
