"""Composition of rendered panels: grids with titles, the class legend, PNG files."""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from torchssc.datasets import DatasetSpec, get_dataset_spec
from torchssc.io.atomic import atomic_path
from torchssc.viz.labels import BACKGROUND

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def legend(width: int, classes: Sequence[int] | None = None, *, font_size: int = 14,
           spec: DatasetSpec | str = "nyu") -> np.ndarray:
    """A class legend strip: a swatch of the spec's palette and the class name, per class.

    Args:
        width: strip width in pixels; entries wrap onto as many rows as needed.
        classes: class ids to list (default every class but empty: 1..11 for NYU).
        spec: the dataset (:mod:`torchssc.datasets`): names and colours.
    Returns:
        ``(h, width, 3) uint8`` image on the default background.
    """
    spec = get_dataset_spec(spec)
    names, palette = spec.classes, spec.palette
    classes = list(range(1, spec.num_classes)) if classes is None else list(classes)
    font = _font(font_size)
    pad, swatch = 8, font_size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [swatch + 6 + int(math.ceil(probe.textlength(names[c], font=font))) + 16 for c in classes]
    rows, x = [[]], pad
    for c, w in zip(classes, widths):
        if x + w > width - pad and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((c, x))
        x += w
    line = swatch + 8
    img = Image.new("RGB", (width, pad * 2 + line * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        y = pad + r * line
        for c, x0 in row:
            draw.rectangle([x0, y, x0 + swatch, y + swatch], fill=tuple(int(v) for v in palette[c]), outline=(60, 60, 60))
            draw.text((x0 + swatch + 6, y + swatch / 2), names[c], fill=(30, 30, 30), font=font, anchor="lm")
    return np.asarray(img)


def add_title(image: np.ndarray, text: str, font_size: int = 14) -> np.ndarray:
    h, w = image.shape[:2]
    bar = font_size + 10
    img = Image.new("RGB", (w, h + bar), BACKGROUND)
    img.paste(Image.fromarray(image), (0, bar))
    ImageDraw.Draw(img).text((w / 2, bar / 2), text, fill=(30, 30, 30), font=_font(font_size), anchor="mm")
    return np.asarray(img)


def compose(
    panels: Sequence[Sequence[np.ndarray]],
    *,
    column_titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    with_legend: bool = True,
    gap: int = 4,
    spec: DatasetSpec | str = "nyu",
) -> np.ndarray:
    """Lay out ``panels[row][column]`` (all ``(H, W, 3) uint8``, same size) in a grid.

    Titles go above the columns and into a small corner label of each row's first panel; a class
    legend (of ``spec``'s classes) is added below. Returns ``(H', W', 3) uint8``.
    """
    if not panels or not panels[0]:
        raise ValueError("compose needs at least one panel")
    h, w = panels[0][0].shape[:2]
    for row in panels:
        for p in row:
            if p.shape != (h, w, 3):
                raise ValueError(f"all panels must be ({h}, {w}, 3), got {p.shape}")
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    canvas = Image.new("RGB", (n_cols * w + (n_cols + 1) * gap, n_rows * h + (n_rows + 1) * gap), (200, 200, 200))
    font = _font(13)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(panels):
        for c, p in enumerate(row):
            x, y = gap + c * (w + gap), gap + r * (h + gap)
            canvas.paste(Image.fromarray(p), (x, y))
            if row_titles is not None and c == 0:
                draw.text((x + 6, y + 4), row_titles[r], fill=(90, 90, 90), font=font)
    out = np.asarray(canvas)
    if column_titles is not None:
        bar = np.asarray(Image.new("RGB", (out.shape[1], 1), BACKGROUND))
        titles = Image.new("RGB", (out.shape[1], 26), BACKGROUND)
        td = ImageDraw.Draw(titles)
        for c, text in enumerate(column_titles[:n_cols]):
            td.text((gap + c * (w + gap) + w / 2, 13), text, fill=(30, 30, 30), font=_font(16), anchor="mm")
        out = np.concatenate([np.asarray(titles), bar, out], axis=0)
    if with_legend:
        out = np.concatenate([out, legend(out.shape[1], spec=spec)], axis=0)
    return out


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``(H, W, 3) uint8`` image as PNG, atomically."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{path}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
