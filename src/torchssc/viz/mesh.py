"""Voxel meshes of label volumes: one cube per occupied voxel with hidden faces removed; PLY/GLB.

A face is kept only where an occupied voxel (label 1..11) borders a voxel that is not occupied
(0, 255, or outside the grid). Faces between two occupied voxels are dropped **whatever their
classes** by default: they can never be seen from outside, and dropping them keeps the mesh a
closed surface with the fewest faces (``class_boundaries=True`` keeps faces between different
classes too, for viewers that cut the mesh open).

Faces are quads with their own four vertices (vertices are not shared between faces), so every
face carries exactly its voxel's palette colour in any viewer, as a per-vertex colour.

World placement follows :mod:`torchssc.geometry`: voxel ``(a, b, c)`` spans
``origin + voxel * (a, c, b)`` to ``+ voxel`` in world (x, y, z) metres, z up. Quads wind
counter-clockwise seen from outside (right-hand rule gives the outward normal).
"""

from __future__ import annotations

import json
import os
import struct
from typing import NamedTuple, Sequence

import numpy as np

from torchssc.geometry import PALETTE
from torchssc.io.atomic import write_bytes_atomic
from torchssc.viz.labels import check_labels, default_voxel, occupied


class VoxelMesh(NamedTuple):
    """A quad mesh in world metres.

    Attributes:
        vertices: ``(4F, 3) float32`` world (x, y, z); face ``i`` uses vertices ``4i .. 4i+3``.
        faces: ``(F, 4) int32`` vertex indices, counter-clockwise seen from outside.
        colors: ``(F, 3) uint8`` RGB of each face (its voxel's palette colour).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray

    def triangles(self) -> np.ndarray:
        """``(2F, 3) int32``: each quad split into two triangles (same winding)."""
        f = self.faces
        return np.concatenate([f[:, [0, 1, 2]], f[:, [0, 2, 3]]], axis=1).reshape(-1, 3).astype(np.int32)

    def face_normals(self) -> np.ndarray:
        """``(F, 3) float32`` unit outward normals."""
        v = self.vertices[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def vertex_colors(self) -> np.ndarray:
        """``(4F, 3) uint8``: each face's colour on its four vertices."""
        return np.repeat(self.colors, 4, axis=0)


# For an outward normal along world axis k, the in-face axes (i, j) with e_i x e_j = e_k.
_IN_FACE = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
# Corner order (i, j) of a quad, counter-clockwise around +e_k (reversed for -e_k).
_CCW = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], dtype=np.float64)
# Grid axis (a, b, c) = world (x, z, y): world axis k lives on grid axis _GRID_AXIS[k].
_GRID_AXIS = (0, 2, 1)


def exposed_faces(labels: np.ndarray, *, class_boundaries: bool = False) -> np.ndarray:
    """Which faces of which voxels are visible.

    Args:
        labels: ``(D, H, W)`` 0..11 or 255 (axes X, Z, Y).
        class_boundaries: also keep faces between occupied voxels of different classes.
    Returns:
        ``(6, D, H, W) bool``: entry ``2 * k + s`` is the face whose outward normal points along
        world axis ``k`` (0 = x, 1 = y, 2 = z), ``s = 0`` for + and 1 for -.
    """
    labels = check_labels(labels, num_classes=255)  # faces only: any class id
    occ = occupied(labels)
    lab = np.where(occ, labels, 0)
    padded = np.pad(lab, 1)
    out = np.zeros((6,) + labels.shape, dtype=bool)
    core = tuple(slice(1, -1) for _ in range(3))
    for k in range(3):
        g = _GRID_AXIS[k]
        for s, shift in ((0, 1), (1, -1)):
            nb = list(core)
            nb[g] = slice(1 + shift, padded.shape[g] - 1 + shift)
            neighbour = padded[tuple(nb)]
            visible = neighbour == 0
            if class_boundaries:
                visible |= neighbour != lab
            out[2 * k + s] = occ & visible
    return out


def voxel_mesh(
    labels: np.ndarray,
    voxel: float | None = None,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    class_boundaries: bool = False,
    palette: np.ndarray = PALETTE,
) -> VoxelMesh:
    """Mesh of the occupied voxels (labels 1..11) with hidden faces removed.

    Args:
        labels: ``(D, H, W)`` 0..11 or 255 (axes X, Z, Y).
        voxel: voxel edge in metres (default :func:`~torchssc.viz.labels.default_voxel`).
        origin: ``(3,)`` world (x, y, z) of the grid's corner.
        class_boundaries: see :func:`exposed_faces`.
        palette: ``(>= num_classes, 3) uint8`` colour per class id (the dataset spec's; NYU's
            by default).
    Returns:
        :class:`VoxelMesh`; faces ordered by direction (+x, -x, +y, -y, +z, -z) then C-order voxel.
    """
    palette = np.asarray(palette, dtype=np.uint8)
    labels = check_labels(labels, num_classes=len(palette))
    voxel = default_voxel(labels.shape) if voxel is None else float(voxel)
    origin = np.asarray(origin, dtype=np.float64)
    if origin.shape != (3,):
        raise ValueError(f"origin must have 3 values (world x, y, z), got shape {origin.shape}")
    faces_mask = exposed_faces(labels, class_boundaries=class_boundaries)
    verts, cols = [], []
    for code in range(6):
        k, s = divmod(code, 2)
        idx = np.argwhere(faces_mask[code])  # (n, 3) grid (a, b, c)
        if idx.size == 0:
            continue
        corner = idx[:, [0, 2, 1]].astype(np.float64)  # world-axis voxel coordinates (x, y, z)
        i, j = _IN_FACE[k]
        order = _CCW if s == 0 else _CCW[::-1]
        quad = np.repeat(corner[:, None, :], 4, axis=1)  # (n, 4, 3)
        quad[:, :, k] += 1.0 if s == 0 else 0.0
        quad[:, :, i] += order[:, 0]
        quad[:, :, j] += order[:, 1]
        verts.append(origin + voxel * quad.reshape(-1, 3))
        cols.append(palette[labels[idx[:, 0], idx[:, 1], idx[:, 2]]])
    if not verts:
        return VoxelMesh(np.zeros((0, 3), np.float32), np.zeros((0, 4), np.int32), np.zeros((0, 3), np.uint8))
    vertices = np.concatenate(verts).astype(np.float32)
    n_faces = vertices.shape[0] // 4
    faces = np.arange(4 * n_faces, dtype=np.int32).reshape(n_faces, 4)
    return VoxelMesh(vertices, faces, np.concatenate(cols).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# PLY
def write_ply(path: str | os.PathLike, mesh: VoxelMesh, *, triangles: bool = False, ascii: bool = False) -> None:
    """Write a mesh as PLY (binary little-endian by default), atomically.

    Vertices carry ``x y z`` (float32, world metres, z up) and ``red green blue`` (uchar);
    faces are quads (or triangles with ``triangles=True``) as ``vertex_indices`` lists.
    """
    faces = mesh.triangles() if triangles else np.asarray(mesh.faces, dtype=np.int32)
    verts = np.asarray(mesh.vertices, dtype=np.float32)
    colors = mesh.vertex_colors()
    per = faces.shape[1] if faces.size else (3 if triangles else 4)
    header = (
        "ply\n"
        f"format {'ascii' if ascii else 'binary_little_endian'} 1.0\n"
        "comment torchssc voxel mesh (world metres, z up)\n"
        f"element vertex {len(verts)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(faces)}\n"
        "property list uchar int vertex_indices\n"
        "end_header\n"
    ).encode("ascii")
    if ascii:
        vlines = [f"{x:.6g} {y:.6g} {z:.6g} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(verts.tolist(), colors.tolist())]
        flines = [" ".join(map(str, [per] + f)) for f in faces.tolist()]
        body = ("\n".join(vlines + flines) + "\n").encode("ascii") if vlines or flines else b""
    else:
        vrec = np.empty(len(verts), dtype=[("xyz", "<f4", (3,)), ("rgb", "u1", (3,))])
        vrec["xyz"], vrec["rgb"] = verts, colors
        frec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (per,))])
        frec["n"], frec["idx"] = per, faces
        body = vrec.tobytes() + frec.tobytes()
    write_bytes_atomic(path, header + body)


# --------------------------------------------------------------------------------------------
# GLB (binary glTF 2.0)
GLB_MAGIC = 0x46546C67  # b"glTF"
CHUNK_JSON = 0x4E4F534A  # b"JSON"
CHUNK_BIN = 0x004E4942  # b"BIN\0"
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UNSIGNED_INT = 5126, 5125
# glTF is y-up; rotating the node by -90 degrees about x keeps POSITION in world z-up metres.
_Z_UP_TO_Y_UP = [-0.7071067811865476, 0.0, 0.0, 0.7071067811865476]


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB ``uint8`` -> linear ``float32`` in [0, 1] (glTF vertex colours are linear)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def glb_bytes(mesh: VoxelMesh, *, name: str = "voxels") -> bytes:
    """The mesh as a binary glTF 2.0 file (one node, one triangle primitive, lit material).

    Attributes: ``POSITION`` (float32, world metres; the node rotates z-up to glTF's y-up),
    ``NORMAL`` (float32), ``COLOR_0`` (float32 RGB, linear: the palette converted from sRGB);
    indices ``uint32``. An empty mesh gives a valid file with an empty scene.
    """
    verts = np.ascontiguousarray(mesh.vertices, dtype="<f4")
    gltf: dict = {
        "asset": {"version": "2.0", "generator": "torchssc.viz"},
        "scene": 0,
        "scenes": [{"name": name}],  # no "nodes": the schema wants at least one when present
    }
    if len(mesh.faces) == 0:
        return _glb_container(gltf, b"")
    normals = np.ascontiguousarray(np.repeat(mesh.face_normals(), 4, axis=0), dtype="<f4")
    colors = np.ascontiguousarray(srgb_to_linear(mesh.vertex_colors()), dtype="<f4")
    indices = np.ascontiguousarray(mesh.triangles().ravel(), dtype="<u4")
    blobs = [verts.tobytes(), normals.tobytes(), colors.tobytes(), indices.tobytes()]
    views, offset = [], 0
    for blob, target in zip(blobs, (_ARRAY_BUFFER, _ARRAY_BUFFER, _ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER)):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob), "target": target})
        offset += len(blob)  # every blob is a multiple of 4 bytes: offsets stay aligned
    binary = b"".join(blobs)
    gltf.update({
        "scenes": [{"name": name, "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0, "rotation": _Z_UP_TO_Y_UP}],
        "meshes": [{"name": name, "primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "COLOR_0": 2},
            "indices": 3, "material": 0, "mode": 4,
        }]}],
        "materials": [{
            "name": "palette",
            "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0},
        }],
        "accessors": [
            {"bufferView": 0, "componentType": _FLOAT, "count": len(verts), "type": "VEC3",
             "min": verts.min(axis=0).tolist(), "max": verts.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": _FLOAT, "count": len(normals), "type": "VEC3"},
            {"bufferView": 2, "componentType": _FLOAT, "count": len(colors), "type": "VEC3"},
            {"bufferView": 3, "componentType": _UNSIGNED_INT, "count": len(indices), "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    })
    return _glb_container(gltf, binary)


def _glb_container(gltf: dict, binary: bytes) -> bytes:
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), CHUNK_JSON) + text
    if binary:
        chunks += struct.pack("<II", len(binary), CHUNK_BIN) + binary
    return struct.pack("<III", GLB_MAGIC, 2, 12 + len(chunks)) + chunks


def write_glb(path: str | os.PathLike, mesh: VoxelMesh, *, name: str = "voxels") -> None:
    """Write a mesh as binary glTF 2.0 (``.glb``), atomically; see :func:`glb_bytes`."""
    write_bytes_atomic(path, glb_bytes(mesh, name=name))
