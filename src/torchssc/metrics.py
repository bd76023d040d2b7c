"""Semantic scene completion metrics under every evaluation protocol in use (docs/evaluation.md).

Two tasks are scored on the label grid (any grid shape; NYU's is ``(60, 36, 60)``):

* **SC** (scene completion): occupancy, ``label > 0`` against ``pred > 0``; precision, recall
  and IoU of the occupied class.
* **SSC** (semantic scene completion): IoU of classes 1..11 from a ``(12, 12)`` confusion matrix
  (rows = ground truth, columns = prediction), and their mean (mIoU).

Which voxels count, and how scenes are aggregated, is the *protocol*:

============  ==========================================  =====================================  ==========================
protocol      SC voxels                                   SSC voxels                             aggregation
============  ==========================================  =====================================  ==========================
``torchssc``  label_weight > 0, label != 255,             label_weight > 0, label != 255         summed over the dataset
              mapping == H*W (no mapped pixel)
``sscnet``    visibility == VIS_OCCLUDED, label != 255    visibility in {VIS_SURFACE,            SC per scene then averaged
                                                          VIS_OCCLUDED}, label != 255            over scenes; SSC summed
``all``       label != 255                                label != 255                           summed over the dataset
============  ==========================================  =====================================  ==========================

``torchssc`` reproduces the TorchSSC / CleanerS / AMMNet evaluation (the paper's 71.3 / 41.1),
``sscnet`` the official SSCNet MATLAB benchmark, ``all`` the MonoScene family. Numbers from
different protocols are not comparable: always report the protocol's name with them.

Edge cases (documented choices):

* The IoU of a class whose union is empty (0 / 0) is ``nan``; mIoU is the mean over classes
  1..11 whose IoU is defined (TorchSSC's ``np.nanmean``). On a full test set every class is
  present, so this is the mean of all 11; ``ssc_miou_classes`` says how many were averaged.
  Summed-SC precision / recall / IoU with a zero denominator are ``nan`` too.
* ``sscnet`` per-scene SC follows the MATLAB code: a scene's precision is 0 when it has no true
  positive and its recall is 0 when it has no occupied ground-truth voxel; its IoU with an empty
  union is 0 / 0 (``NaN`` in MATLAB, which would turn the whole mean into ``NaN``): here such a
  scene is left out of the IoU mean, and ``sc_iou_scenes`` counts the scenes that were averaged.
* The MATLAB benchmark set label 255 to empty before scoring; torchssc makes every protocol
  ignore label 255 instead (with the toolkit's visibility volume those voxels are
  ``VIS_OUTSIDE_ROOM`` anyway).

Everything is a sum of counts (confusion matrices, per-scene SC scores and scene counts), so a
metric object is *streaming* (update batch by batch, in any split) and *all_reduce-able*
(distributed evaluation sums the states across processes).

Speed: one ``bincount`` pass per batch over (scene, protocol attributes, label, prediction)
(:func:`scene_histogram`) feeds every protocol at once (:func:`update_all`); the voxel-wise work
runs in numpy on the CPU and in torch on accelerators.

Usage::

    metrics = {p: SSCMetrics(p) for p in PROTOCOLS}
    for batch in loader:
        pred = model(batch)["semantic"].argmax(1)  # (B, 60, 36, 60)
        update_all(metrics.values(), pred, batch["label"], label_weight=batch["label_weight"],
                   mapping=batch["mapping"], visibility=batch["visibility"])
    for m in metrics.values():
        m.all_reduce()  # no-op without torch.distributed
        print(metrics_report(m.compute()))  # torchssc.report
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from torchssc.geometry import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES, VIS_OCCLUDED, VIS_SURFACE

PROTOCOLS = ("torchssc", "sscnet", "all")
"""Names of the evaluation protocols, defined here only (the table above)."""

NO_PIXEL_NYU = 640 * 480
"""The "no pixel" value of an NYU mapping (``H * W``)."""

_PROTOCOL_NEEDS = {"torchssc": ("label_weight", "mapping"), "sscnet": ("visibility",), "all": ()}
_SC_PER_SCENE = {"torchssc": False, "sscnet": True, "all": False}


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """A torch tensor view of ``x`` (tensor or numpy array); arrays are not copied when possible."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")


# --------------------------------------------------------------------------------------------
# The shared histogram. Every voxel gets an *attribute* from the inputs the protocols look at,
#   attribute = [weight > 0] + 2 [mapping == no pixel] + 4 vis3,   vis3 = 1 surface, 2 occluded,
#                                                                  0 any other visibility code,
# (an absent input counts as 0), and one bincount over (scene, attribute, label + 1, pred) gives
# every protocol's counts: label 255 wraps to 0 in uint8 arithmetic and is dropped afterwards.
N_ATTR = 12  # 3 vis3 x 2 no-pixel x 2 weight
_CHUNK = 1 << 17  # voxels per numpy pass (about one 60x36x60 scene): its temporaries stay in cache


def _check_range(x: Any, hi: int, name: str, allowed: str, use_numpy: bool) -> None:
    """Raise unless every value of integer ``x`` is in ``0..hi`` (one pass on the CPU)."""
    if use_numpy:
        if x.dtype.kind == "i":  # negative values become huge in the unsigned view
            top = int(x.view(np.dtype(f"u{x.dtype.itemsize}")).max())
        else:
            top = int(x.max())
        if top <= hi:
            return
        lo, top = int(x.min()), int(x.max())
    else:
        lo, top = int(x.min()), int(x.max())
        if lo >= 0 and top <= hi:
            return
    raise ValueError(f"{name} values must be in {allowed}, got {lo}..{top}")


def _keys_numpy(prd, lab, weight, mapping, vis, no_pixel: int, c: int) -> np.ndarray:
    """``int32`` histogram keys (without the scene offset), same shape as the numpy inputs.

    Written for speed: uint8 work arrays, in-place doubling instead of shifts, no int64 temporaries.
    """
    _check_range(prd, c - 1, "pred", f"0..{c - 1}", True)
    if prd.dtype != np.uint8:
        prd = prd.astype(np.uint8)
    if lab.dtype != np.uint8:
        _check_range(lab, 255, "label", f"0..{c - 1} or {IGNORE_LABEL}", True)
        lab = lab.astype(np.uint8)
    shifted = lab + np.uint8(1)  # 255 (ignore) -> 0, class k -> k + 1
    if int(shifted.max()) > c:
        raise ValueError(f"label values must be in 0..{c - 1} or {IGNORE_LABEL}")
    attr = np.zeros(lab.shape, np.uint8) if weight is None else (weight > 0).view(np.uint8)
    if mapping is not None:
        unmapped = (mapping == no_pixel).view(np.uint8)
        unmapped += unmapped  # x2
        attr += unmapped
    if vis is not None:
        vis3 = (vis == VIS_SURFACE).view(np.uint8)
        occluded = (vis == VIS_OCCLUDED).view(np.uint8)
        occluded += occluded
        vis3 += occluded
        np.multiply(vis3, np.uint8(4), out=vis3)
        attr += vis3
    key = attr.astype(np.int32)
    key *= c + 1
    key += shifted
    key *= c
    key += prd
    return key


def _keys_torch(prd, lab, weight, mapping, vis, no_pixel: int, c: int) -> torch.Tensor:
    """The same keys as :func:`_keys_numpy` from torch tensors (accelerators)."""
    _check_range(prd, c - 1, "pred", f"0..{c - 1}", False)
    _check_range(lab, 255, "label", f"0..{c - 1} or {IGNORE_LABEL}", False)
    shifted = lab.to(torch.uint8) + 1
    if int(shifted.max()) > c:
        raise ValueError(f"label values must be in 0..{c - 1} or {IGNORE_LABEL}")
    attr = torch.zeros(lab.shape, dtype=torch.int32, device=lab.device)
    if weight is not None:
        attr += (weight > 0).to(torch.int32)
    if mapping is not None:
        attr += 2 * (mapping == no_pixel).to(torch.int32)
    if vis is not None:
        attr += 4 * (vis == VIS_SURFACE).to(torch.int32) + 8 * (vis == VIS_OCCLUDED).to(torch.int32)
    return (attr * (c + 1) + shifted.to(torch.int32)) * c + prd.to(torch.int32)


def _use_numpy(device: torch.device) -> bool:
    """numpy on the CPU (torch's CPU comparison kernels are several times slower), torch elsewhere."""
    return device.type == "cpu"


def _flatten_inputs(pred: Any, label: Any, extras: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Validate shapes and dtypes; everything as ``(B, N)`` tensors on pred's device."""
    pred_t = _as_tensor(pred, "pred")
    if pred_t.is_floating_point() or pred_t.is_complex() or pred_t.dtype == torch.bool:
        raise ValueError(f"pred must hold integer class ids (argmax over the class axis), got {pred_t.dtype}")
    if pred_t.ndim < 2:
        raise ValueError(f"pred must be (B, ...) with a batch axis, got shape {tuple(pred_t.shape)}")
    b = pred_t.shape[0]
    per_scene = pred_t.numel() // b if b else 0

    def flat(x: Any, name: str) -> torch.Tensor:
        t = _as_tensor(x, name).to(pred_t.device)
        if t.ndim == 0 or t.shape[0] != b or t.numel() != pred_t.numel():
            raise ValueError(
                f"{name} has shape {tuple(t.shape)}, expected {b} scenes of {per_scene} voxels "
                f"like pred {tuple(pred_t.shape)}"
            )
        return t.detach().reshape(b, -1)

    lab = flat(label, "label")
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise ValueError(f"label must hold integer class ids, got {lab.dtype}")
    return pred_t.detach().reshape(b, -1), lab, {k: flat(v, k) for k, v in extras.items() if v is not None}


@torch.no_grad()
def _raw_histogram(
    pred: Any,
    label: Any,
    *,
    label_weight: Any = None,
    mapping: Any = None,
    visibility: Any = None,
    no_pixel: int = NO_PIXEL_NYU,
    num_classes: int = NUM_CLASSES,
) -> torch.Tensor:
    """``(B, N_ATTR, (C + 1) * C) int64``: :func:`scene_histogram` before dropping label 255
    (label index 0 after the shift) and splitting the attribute axis."""
    c = num_classes
    prd, lab, extras = _flatten_inputs(
        pred, label, {"label_weight": label_weight, "mapping": mapping, "visibility": visibility}
    )
    b = prd.shape[0]
    per_attr = (c + 1) * c
    if b == 0 or prd.shape[1] == 0:
        return torch.zeros(b, N_ATTR, per_attr, dtype=torch.int64, device=prd.device)
    args = (extras.get("label_weight"), extras.get("mapping"), extras.get("visibility"))
    if _use_numpy(prd.device):
        # scene by scene: a scene's temporaries stay in cache (a batch's would not)
        arrays = [prd.numpy(), lab.numpy(), *(None if a is None else a.numpy() for a in args)]
        hist = torch.zeros(b, N_ATTR * per_attr, dtype=torch.int64)
        n = prd.shape[1]
        for s in range(b):
            for lo in range(0, n, _CHUNK):
                part = slice(lo, lo + _CHUNK)
                key = _keys_numpy(*(None if a is None else a[s, part] for a in arrays), int(no_pixel), c)
                hist[s] += torch.bincount(torch.from_numpy(key), minlength=N_ATTR * per_attr)
        return hist.reshape(b, N_ATTR, per_attr)
    key_t = _keys_torch(prd, lab, *args, int(no_pixel), c)
    key_t = key_t + (torch.arange(b, dtype=torch.int32, device=key_t.device) * (N_ATTR * per_attr))[:, None]
    return torch.bincount(key_t.reshape(-1), minlength=b * N_ATTR * per_attr).reshape(b, N_ATTR, per_attr)


@torch.no_grad()
def scene_histogram(
    pred: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray,
    *,
    label_weight: torch.Tensor | np.ndarray | None = None,
    mapping: torch.Tensor | np.ndarray | None = None,
    visibility: torch.Tensor | np.ndarray | None = None,
    no_pixel: int = NO_PIXEL_NYU,
    num_classes: int = NUM_CLASSES,
) -> torch.Tensor:
    """Per-scene confusion counts split by the attributes the protocols select on.

    Args:
        pred: ``(B, ...)`` integer predictions in 0..C-1 (torch on any device, or numpy).
        label: same number of voxels per scene, 0..C-1 or 255 (255 is not counted).
        label_weight, mapping, visibility: optional, same number of voxels per scene
            (``mapping`` flat ``(B, N)``); an absent one counts as weight 0 / mapped / other.
        no_pixel: the mapping value meaning "no pixel" (``H * W``).
    Returns:
        ``(B, 3, 2, 2, C, C) int64`` on pred's device: ``[scene, vis3, no_pixel, weight > 0,
        ground truth, prediction]``, vis3 = 0 other visibility code, 1 ``VIS_SURFACE``,
        2 ``VIS_OCCLUDED``.
    Raises:
        ValueError: as :meth:`SSCMetrics.update`.
    """
    hist = _raw_histogram(
        pred, label, label_weight=label_weight, mapping=mapping, visibility=visibility,
        no_pixel=no_pixel, num_classes=num_classes,
    )
    c = num_classes
    return hist.reshape(hist.shape[0], 3, 2, 2, c + 1, c)[..., 1:, :]


def update_all(
    metrics: Iterable[SSCMetrics],
    pred: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray,
    *,
    label_weight: torch.Tensor | np.ndarray | None = None,
    mapping: torch.Tensor | np.ndarray | None = None,
    visibility: torch.Tensor | np.ndarray | None = None,
    no_pixel: int | None = None,
) -> None:
    """Update several metric objects (e.g. one per protocol) with one pass over the voxels.

    Same arguments as :meth:`SSCMetrics.update`; ``no_pixel`` defaults to the first object's.
    Every object must have the same ``num_classes``. Nothing is counted if any check fails.
    """
    metrics = list(metrics)
    if not metrics:
        return
    c = metrics[0].num_classes
    if any(m.num_classes != c for m in metrics):
        raise ValueError("update_all: every metric object must have the same num_classes")
    given = {"label_weight": label_weight, "mapping": mapping, "visibility": visibility}
    for m in metrics:
        if m._reduced:
            raise RuntimeError("update() after all_reduce(): call reset() first")
        missing = [k for k in _PROTOCOL_NEEDS[m.protocol] if given[k] is None]
        if missing:
            raise ValueError(f"protocol {m.protocol!r} needs {', '.join(missing)} (got None)")
    needed = {k for m in metrics for k in _PROTOCOL_NEEDS[m.protocol]}
    hist = _raw_histogram(
        pred,
        label,
        **{k: (v if k in needed else None) for k, v in given.items()},
        no_pixel=metrics[0].no_pixel if no_pixel is None else int(no_pixel),
        num_classes=c,
    )
    hist_np = hist.cpu().numpy()
    total = hist_np.sum(0)
    for m in metrics:
        m._accumulate(hist_np, total)


def _selections(protocol: str, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant matrices of :meth:`SSCMetrics._accumulate`.

    Returns ``(ssc_select, sc_select, sc_cells)``: ``(N_ATTR,) int64`` 0/1 vectors marking the
    attributes (``4 vis3 + 2 no_pixel + weight``) of the protocol's SSC and SC voxels, and the
    ``((C + 1) * C, 4) int64`` map of (label + 1, pred) cells to SC (tn, fp, fn, tp); label 255
    (row 0) maps nowhere.
    """
    attr = np.arange(N_ATTR)
    weight, unmapped, vis3 = attr & 1, (attr >> 1) & 1, attr >> 2
    if protocol == "torchssc":
        ssc, sc = weight == 1, (weight == 1) & (unmapped == 1)
    elif protocol == "sscnet":
        ssc, sc = vis3 >= 1, vis3 == 2
    else:
        ssc = sc = np.ones(N_ATTR, bool)
    gt, pr = np.divmod(np.arange((c + 1) * c), c)
    gt = gt - 1  # shifted labels: -1 is 255
    cells = np.zeros(((c + 1) * c, 4), np.int64)
    valid = gt >= 0
    cells[valid, 2 * (gt[valid] > 0) + (pr[valid] > 0)] = 1  # [gt empty/occ][pred empty/occ]
    return ssc.astype(np.int64), sc.astype(np.int64), cells


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


class SSCMetrics:
    """Streaming SC / SSC metrics under one named protocol.

    State (all sums, so :meth:`all_reduce` is exact):

    * ``confusion``: ``(C, C) int64`` SSC confusion, rows = ground truth, columns = prediction.
    * ``sc_confusion``: ``(2, 2) int64`` SC occupancy confusion summed over scenes
      (``[gt empty/occupied, pred empty/occupied]``).
    * ``scene_sums``: ``(3,) float64`` sums of per-scene SC precision, recall, IoU (``sscnet``).
    * ``counts``: ``(4,) int64`` scenes, scenes with a defined SC IoU (``sscnet``; else 0), SSC
      voxels, SC voxels.

    Args:
        protocol: one of :data:`PROTOCOLS`.
        num_classes: classes including empty (12).
        class_names: a name per class (the dataset spec's ``classes``); default NYU's
            :data:`torchssc.geometry.CLASS_NAMES` when ``num_classes`` is 12, else ``class_<i>``.
        no_pixel: default "no pixel" mapping value ``H * W`` (307200 for NYU).
    """

    def __init__(
        self,
        protocol: str = "torchssc",
        num_classes: int = NUM_CLASSES,
        *,
        class_names: Sequence[str] | None = None,
        no_pixel: int = NO_PIXEL_NYU,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if not 2 <= num_classes < IGNORE_LABEL:
            raise ValueError(f"num_classes must be in 2..{IGNORE_LABEL - 1}, got {num_classes}")
        self.protocol = protocol
        self.num_classes = num_classes
        self.no_pixel = int(no_pixel)
        if class_names is not None:
            if len(class_names) != num_classes:
                raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
            self.class_names = tuple(class_names)
        elif num_classes == NUM_CLASSES:
            self.class_names = tuple(CLASS_NAMES)
        else:
            self.class_names = tuple(f"class_{i}" for i in range(num_classes))
        self._ssc_select, self._sc_select, self._sc_cells = _selections(protocol, num_classes)
        self.reset()

    # ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero every count."""
        c = self.num_classes
        # CPU tensors sharing memory with numpy arrays (the accumulation runs in numpy)
        self.confusion = torch.zeros(c, c, dtype=torch.int64)
        self.sc_confusion = torch.zeros(2, 2, dtype=torch.int64)
        self.scene_sums = torch.zeros(3, dtype=torch.float64)
        self.counts = torch.zeros(4, dtype=torch.int64)
        # numpy views of the same memory, for the accumulation
        self._np = [t.numpy() for t in self.state_tensors()]
        self._reduced = False

    def state_tensors(self) -> list[torch.Tensor]:
        """The state, in a fixed order (what :meth:`all_reduce` sums)."""
        return [self.confusion, self.sc_confusion, self.scene_sums, self.counts]

    # ----------------------------------------------------------------------------------------
    def update(
        self,
        pred: torch.Tensor | np.ndarray,
        label: torch.Tensor | np.ndarray,
        *,
        label_weight: torch.Tensor | np.ndarray | None = None,
        mapping: torch.Tensor | np.ndarray | None = None,
        visibility: torch.Tensor | np.ndarray | None = None,
        no_pixel: int | None = None,
    ) -> None:
        """Add a batch of scenes.

        Args:
            pred: ``(B, D, H, W)`` (any grid; or ``(B, N)`` flat) integer predicted labels in
                0..C-1, i.e. the argmax of the logits over the class axis. Torch (any device) or
                numpy.
            label: ground truth with the same number of voxels per scene, 0..C-1 or 255.
            label_weight: 0/1 weights, ``(B, ...)``; required by ``torchssc``.
            mapping: ``(B, N)`` pixel index per voxel (flat C-order of the grid); required by
                ``torchssc``.
            visibility: ``(B, ...)`` ``VIS_*`` codes; required by ``sscnet``.
            no_pixel: overrides the object's "no pixel" mapping value for this batch.
        Raises:
            ValueError: on a non-integer prediction or label, mismatched shapes, a prediction
                outside 0..C-1, a label outside 0..C-1 and 255, or a missing protocol input
                (nothing is counted then).
        """
        update_all(
            [self], pred, label, label_weight=label_weight, mapping=mapping, visibility=visibility, no_pixel=no_pixel
        )

    def _accumulate(self, hist: np.ndarray, total: np.ndarray) -> None:
        """Add a raw histogram ``(B, N_ATTR, (C + 1) * C)`` (numpy) under this protocol;
        ``total`` is its sum over scenes (shared by the protocols of one :func:`update_all`)."""
        c = self.num_classes
        confusion, sc_confusion, scene_sums, counts = self._np
        ssc = (self._ssc_select @ total)[c:]  # ((C+1)*C,) -> drop label index 0 (255)
        sc = (self._sc_select @ total) @ self._sc_cells  # (4,): tn, fp, fn, tp
        confusion += ssc.reshape(c, c)
        sc_confusion += sc.reshape(2, 2)
        defined = 0  # scenes with a non-empty SC union (used by the per-scene mean)
        if _SC_PER_SCENE[self.protocol]:
            # MATLAB benchmark: precision 0 without a true positive, recall 0 without an
            # occupied ground-truth voxel; IoU undefined (left out of the mean) for an empty union.
            tn, fp, fn, tp = ((self._sc_select @ hist) @ self._sc_cells).T  # (B,) each
            union = tp + fp + fn
            tpf = tp.astype(np.float64)
            precision = np.where(tp > 0, tpf / np.maximum(tp + fp, 1), 0.0)
            recall = np.where(tp + fn > 0, tpf / np.maximum(tp + fn, 1), 0.0)
            iou = np.where(union > 0, tpf / np.maximum(union, 1), 0.0)
            scene_sums += [precision.sum(), recall.sum(), iou.sum()]
            defined = int(np.count_nonzero(union))
        counts += [hist.shape[0], defined, int(ssc.sum()), int(sc.sum())]

    # ----------------------------------------------------------------------------------------
    def all_reduce(self) -> None:
        """Sum the state over every process of the default ``torch.distributed`` group.

        Call once, after the last :meth:`update`, on every rank; afterwards every rank's
        :meth:`compute` gives the global result. A no-op without an initialised process group.
        With the NCCL backend the state travels through the current CUDA device.
        """
        if self._reduced:
            raise RuntimeError("all_reduce() called twice: the counts would be summed again")
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        comm_device = torch.device("cpu")
        if dist.get_backend() == "nccl":
            comm_device = torch.device("cuda", torch.cuda.current_device())
        for t in self.state_tensors():
            buf = t.to(comm_device)
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            t.copy_(buf)
        self._reduced = True

    # ----------------------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        """The metrics so far, as plain Python values (fractions in [0, 1], ``nan`` = undefined).

        Returns:
            A dict with ``protocol``; ``scenes``, ``ssc_voxels``, ``sc_voxels``;
            ``sc_aggregation`` (``"summed"`` or ``"per-scene mean"``); ``sc_precision``,
            ``sc_recall``, ``sc_iou``; ``sc_iou_scenes`` (scenes in the per-scene IoU mean);
            ``ssc_iou`` (class name -> IoU for classes 1..C-1); ``ssc_miou`` and
            ``ssc_miou_classes``; ``ssc_precision`` / ``ssc_recall`` (class name -> value);
            ``confusion`` (C x C nested list, rows = ground truth).
        """
        conf = self.confusion.cpu().to(torch.float64)
        counts = self.counts.cpu().tolist()
        scenes, iou_scenes, ssc_voxels, sc_voxels = (int(v) for v in counts)
        tn, fp, fn, tp = (float(v) for v in self.sc_confusion.cpu().reshape(-1).tolist())
        if _SC_PER_SCENE[self.protocol]:
            sums = self.scene_sums.cpu().tolist()
            sc_precision = _safe_div(sums[0], scenes)
            sc_recall = _safe_div(sums[1], scenes)
            sc_iou = _safe_div(sums[2], iou_scenes)
            aggregation = "per-scene mean"
        else:
            sc_precision = _safe_div(tp, tp + fp)
            sc_recall = _safe_div(tp, tp + fn)
            sc_iou = _safe_div(tp, tp + fp + fn)
            aggregation = "summed"
            iou_scenes = scenes
        diag = conf.diagonal()
        gt_total = conf.sum(1)
        pred_total = conf.sum(0)
        iou = [_safe_div(diag[i], gt_total[i] + pred_total[i] - diag[i]) for i in range(self.num_classes)]
        prec = [_safe_div(diag[i], pred_total[i]) for i in range(self.num_classes)]
        rec = [_safe_div(diag[i], gt_total[i]) for i in range(self.num_classes)]
        defined = [v for v in iou[1:] if not math.isnan(v)]
        names = self.class_names
        return {
            "protocol": self.protocol,
            "scenes": scenes,
            "ssc_voxels": ssc_voxels,
            "sc_voxels": sc_voxels,
            "sc_aggregation": aggregation,
            "sc_precision": sc_precision,
            "sc_recall": sc_recall,
            "sc_iou": sc_iou,
            "sc_iou_scenes": iou_scenes,
            "ssc_iou": {names[i]: iou[i] for i in range(1, self.num_classes)},
            "ssc_miou": sum(defined) / len(defined) if defined else math.nan,
            "ssc_miou_classes": len(defined),
            "ssc_precision": {names[i]: prec[i] for i in range(1, self.num_classes)},
            "ssc_recall": {names[i]: rec[i] for i in range(1, self.num_classes)},
            "confusion": self.confusion.cpu().tolist(),
        }
