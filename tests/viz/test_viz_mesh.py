"""Voxel mesh tests: face counts by hand, a naive neighbour loop, world placement, PLY and GLB."""

from __future__ import annotations

import itertools
import json
import struct

import numpy as np
import pytest

from torchssc.geometry import PALETTE
from torchssc.viz.mesh import exposed_faces, glb_bytes, srgb_to_linear, voxel_mesh, write_glb, write_ply


def scene(shape, cells):
    labels = np.zeros(shape, np.uint8)
    for idx, value in cells:
        labels[idx] = value
    return labels


@pytest.mark.parametrize(
    "cells,quads",
    [
        ([((1, 1, 1), 3)], 6),                                   # single voxel
        ([((1, 1, 1), 3), ((1, 1, 2), 3)], 10),                  # two adjacent
        ([((1, 1, 1), 3), ((1, 1, 2), 7)], 10),                  # two classes: shared face dropped
        ([((1, 1, 1), 3), ((2, 1, 1), 3), ((2, 2, 1), 3)], 14),  # L-shape: 3*6 - 2*2
        ([((1, 1, 1), 3), ((3, 1, 1), 3)], 12),                  # a gap keeps both inner faces
        ([((1, 1, 1), 3), ((1, 2, 1), 255)], 6),                 # ignore is not solid
    ],
)
def test_face_counts_by_hand(cells, quads):
    mesh = voxel_mesh(scene((4, 4, 5), cells))
    assert mesh.faces.shape == (quads, 4) and mesh.vertices.shape == (4 * quads, 3)
    assert mesh.triangles().shape == (2 * quads, 3)


def test_block_2x2x2_and_class_boundaries():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 5
    assert len(voxel_mesh(labels).faces) == 24
    labels[1, 1:3, 1:3] = 6  # split in two classes along a: 4 shared faces each side
    assert len(voxel_mesh(labels).faces) == 24
    assert len(voxel_mesh(labels, class_boundaries=True).faces) == 24 + 8


def test_block_at_the_grid_border_is_closed():
    labels = np.full((2, 3, 2), 2, np.uint8)
    assert len(voxel_mesh(labels).faces) == 2 * (2 * 3 + 3 * 2 + 2 * 2)


def naive_faces(labels, class_boundaries=False):
    """Loop over voxels and their 6 neighbours: (grid index, world axis, sign) of visible faces."""
    solid = (labels >= 1) & (labels <= 11)
    out = set()
    grid_step = {0: (1, 0, 0), 1: (0, 0, 1), 2: (0, 1, 0)}  # world axis -> grid offset
    for idx in itertools.product(*[range(n) for n in labels.shape]):
        if not solid[idx]:
            continue
        for k in range(3):
            for s, sign in ((0, 1), (1, -1)):
                nb = tuple(i + sign * o for i, o in zip(idx, grid_step[k]))
                inside = all(0 <= n < m for n, m in zip(nb, labels.shape))
                if not inside or not solid[nb] or (class_boundaries and labels[nb] != labels[idx]):
                    out.add((idx, k, s))
    return out


@pytest.mark.parametrize("class_boundaries", [False, True])
def test_exposed_faces_match_naive_loop(class_boundaries):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, size=(5, 7, 3)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.1] = 255
    got = exposed_faces(labels, class_boundaries=class_boundaries)
    fast = {(tuple(i), c // 2, c % 2) for c in range(6) for i in np.argwhere(got[c])}
    assert fast == naive_faces(labels, class_boundaries)


def test_world_placement_normals_and_colours():
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[2, 1, 3] = 9  # a=2 (x), b=1 (z), c=3 (y)
    origin = np.array([10.0, 20.0, -1.0])
    mesh = voxel_mesh(labels, 0.5, origin)
    lo = origin + 0.5 * np.array([2, 3, 1])
    np.testing.assert_allclose(mesh.vertices.min(axis=0), lo)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), lo + 0.5)
    centre = lo + 0.25
    normals = mesh.face_normals()
    face_centres = mesh.vertices[mesh.faces].mean(axis=1)
    outward = np.sum(normals * (face_centres - centre), axis=1)
    assert np.all(outward > 0)  # counter-clockwise from outside
    np.testing.assert_allclose(np.abs(normals).sum(axis=1), 1.0)
    assert np.all(mesh.colors == PALETTE[9])
    assert voxel_mesh(np.zeros((2, 2, 2), np.uint8)).faces.shape == (0, 4)


def read_ply(path):
    """A tiny PLY reader for the subset write_ply emits (binary LE or ascii)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    fmt = header[1].split()[1]
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    nv, nf = counts["vertex"], counts["face"]
    body = data[end:]
    if fmt == "ascii":
        rows = body.decode("ascii").split("\n")
        verts = np.array([[float(x) for x in r.split()[:3]] for r in rows[:nv]]).reshape(-1, 3)
        cols = np.array([[int(x) for x in r.split()[3:]] for r in rows[:nv]]).reshape(-1, 3)
        faces = [[int(x) for x in r.split()] for r in rows[nv : nv + nf]]
        return verts, cols, [f[1:] for f in faces if len(f) == f[0] + 1]
    assert fmt == "binary_little_endian"
    verts, cols, offset = [], [], 0
    for _ in range(nv):
        x, y, z, r, g, b = struct.unpack_from("<fffBBB", body, offset)
        offset += 15
        verts.append((x, y, z))
        cols.append((r, g, b))
    faces = []
    for _ in range(nf):
        (n,) = struct.unpack_from("<B", body, offset)
        faces.append(list(struct.unpack_from(f"<{n}i", body, offset + 1)))
        offset += 1 + 4 * n
    assert offset == len(body)
    return np.array(verts).reshape(-1, 3), np.array(cols).reshape(-1, 3), faces


@pytest.mark.parametrize("ascii,triangles", [(False, False), (True, False), (False, True)])
def test_ply_parses_back(tmp_path, ascii, triangles):
    labels = np.zeros((3, 3, 4), np.uint8)
    labels[1, 1, 1:3] = (4, 10)
    mesh = voxel_mesh(labels, 0.08, (0.1, 0.2, 0.3))
    path = tmp_path / "m.ply"
    write_ply(path, mesh, ascii=ascii, triangles=triangles)
    verts, cols, faces = read_ply(path)
    np.testing.assert_allclose(verts, mesh.vertices, atol=1e-5)
    np.testing.assert_array_equal(cols, mesh.vertex_colors())
    expected = mesh.triangles() if triangles else mesh.faces
    np.testing.assert_array_equal(np.array(faces), expected)


def parse_glb(data):
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67 and version == 2 and length == len(data)
    offset, chunks = 12, []
    while offset < len(data):
        clen, ctype = struct.unpack_from("<II", data, offset)
        assert clen % 4 == 0
        chunks.append((ctype, data[offset + 8 : offset + 8 + clen]))
        offset += 8 + clen
    assert offset == length
    assert chunks[0][0] == 0x4E4F534A
    return json.loads(chunks[0][1].decode("utf-8")), (chunks[1][1] if len(chunks) > 1 else b"")


def test_glb_structure(tmp_path):
    labels = np.zeros((4, 3, 5), np.uint8)
    labels[1:3, 0, 1:4] = 2
    labels[2, 1, 2] = 11
    mesh = voxel_mesh(labels, 0.08, (1.0, 2.0, 3.0))
    write_glb(tmp_path / "m.glb", mesh)
    gltf, binary = parse_glb((tmp_path / "m.glb").read_bytes())
    assert gltf["asset"]["version"] == "2.0"
    assert gltf["buffers"][0]["byteLength"] <= len(binary) < gltf["buffers"][0]["byteLength"] + 4
    prim = gltf["meshes"][0]["primitives"][0]
    acc = gltf["accessors"]
    n_vert, n_face = len(mesh.vertices), len(mesh.faces)
    assert acc[prim["attributes"]["POSITION"]]["count"] == n_vert
    assert acc[prim["attributes"]["COLOR_0"]]["count"] == n_vert
    assert acc[prim["indices"]]["count"] == 6 * n_face
    for view in gltf["bufferViews"]:
        assert view["byteOffset"] % 4 == 0
        assert view["byteOffset"] + view["byteLength"] <= gltf["buffers"][0]["byteLength"]

    def read(accessor, dtype, width):
        a = acc[accessor]
        view = gltf["bufferViews"][a["bufferView"]]
        raw = binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
        return np.frombuffer(raw, dtype=dtype).reshape(a["count"], width) if width > 1 else np.frombuffer(raw, dtype=dtype)

    pos = read(prim["attributes"]["POSITION"], "<f4", 3)
    np.testing.assert_array_equal(pos, mesh.vertices)
    a = acc[prim["attributes"]["POSITION"]]
    np.testing.assert_allclose(a["min"], pos.min(axis=0))
    np.testing.assert_allclose(a["max"], pos.max(axis=0))
    np.testing.assert_array_equal(read(prim["indices"], "<u4", 1), mesh.triangles().ravel())
    col = read(prim["attributes"]["COLOR_0"], "<f4", 3)
    np.testing.assert_allclose(col, srgb_to_linear(mesh.vertex_colors()))
    assert np.all(read(prim["indices"], "<u4", 1) < n_vert)


def test_glb_of_empty_volume_is_valid():
    gltf, binary = parse_glb(glb_bytes(voxel_mesh(np.zeros((2, 2, 2), np.uint8))))
    assert "nodes" not in gltf["scenes"][0] and "meshes" not in gltf and binary == b""


def test_srgb_to_linear_endpoints():
    np.testing.assert_allclose(srgb_to_linear(np.array([0, 255, 188])), [0.0, 1.0, 0.5028864], atol=1e-6)
