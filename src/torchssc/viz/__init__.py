"""Pictures and meshes of label volumes: headless PNG renders, PLY/GLB meshes, an HTML viewer.

Library entry points (``torchssc viz`` is a thin layer over them):

* :func:`render_views`, :func:`render_comparison`, :func:`save_png` — software ray casting, no
  OpenGL or display (:mod:`torchssc.viz.render`, made of :mod:`~torchssc.viz.labels`,
  :mod:`~torchssc.viz.camera`, :mod:`~torchssc.viz.rays` and :mod:`~torchssc.viz.compose`, the
  helpers that ``mesh``, ``html`` and ``volumes`` share);
* :func:`voxel_mesh`, :func:`write_ply`, :func:`write_glb` — one cube per occupied voxel with
  hidden faces removed (:mod:`torchssc.viz.mesh`);
* :func:`write_html` — one self-contained interactive WebGL page (:mod:`torchssc.viz.html`);
* :func:`load_volume`, :func:`load_prepared`, :func:`mask_volume` — any volume source, and the
  ``label_weight`` / ``frustum`` masks (:mod:`torchssc.viz.volumes`);
* :func:`export_scene` — everything for one scene (:mod:`torchssc.viz.export`).
"""

from torchssc.viz.export import export_scene
from torchssc.viz.html import write_html
from torchssc.viz.mesh import VoxelMesh, voxel_mesh, write_glb, write_ply
from torchssc.viz.camera import Camera
from torchssc.viz.compose import save_png
from torchssc.viz.render import render_comparison, render_panel, render_view, render_views
from torchssc.viz.volumes import Volume, frustum_mask, load_prepared, load_volume, mask_volume

__all__ = [
    "Camera", "Volume", "VoxelMesh", "export_scene", "frustum_mask", "load_prepared", "load_volume",
    "mask_volume", "render_comparison", "render_panel", "render_view", "render_views", "save_png",
    "voxel_mesh", "write_glb", "write_html", "write_ply",
]
