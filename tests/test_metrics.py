"""Tests of torchssc.metrics: hand-computed volumes, a naive per-voxel reference on tiny odd
grids, numpy vs torch inputs, streaming, error cases and a 2-process gloo all_reduce."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torchssc import metrics as M
from torchssc.geometry import CLASS_NAMES, IGNORE_LABEL, VIS_OCCLUDED, VIS_SURFACE
from torchssc.metrics import PROTOCOLS, SSCMetrics, scene_histogram, update_all
from torchssc.report import metrics_report

NP = 307200  # NYU "no pixel"

# --------------------------------------------------------------------------------------------
# A hand-computed 2x2x2 scene (flat C-order values).
LABEL = [0, 1, 1, 2, 255, 2, 0, 3]
PRED = [0, 1, 2, 2, 1, 0, 3, 3]
WEIGHT = [1, 1, 1, 0, 1, 1, 1, 1]
MAPPING = [NP, 5, NP, NP, NP, NP, NP, 17]
VIS = [2, 3, 3, 1, 3, 2, 3, 0]


def grid(values, dtype=torch.int64) -> torch.Tensor:
    """One 2x2x2 scene with a batch axis: (1, 2, 2, 2)."""
    return torch.tensor(values, dtype=dtype).reshape(1, 2, 2, 2)


def same_state(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Counts must match exactly; float sums (per-scene SC scores) up to summation order."""
    if x.is_floating_point():
        return torch.allclose(x, y, rtol=1e-12, atol=1e-12)
    return torch.equal(x, y)


def nan_equal(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


def test_all_protocol_hand_computed():
    m = SSCMetrics("all")
    m.update(grid(PRED), grid(LABEL))
    r = m.compute()
    # 7 voxels have label != 255; (gt, pred) pairs: (0,0) (1,1) (1,2) (2,2) (2,0) (0,3) (3,3)
    assert r["protocol"] == "all" and r["scenes"] == 1
    assert r["ssc_voxels"] == 7 and r["sc_voxels"] == 7
    # SC: tp = 4, fp = 1 (0 -> 3), fn = 1 (2 -> 0)
    assert r["sc_precision"] == pytest.approx(0.8)
    assert r["sc_recall"] == pytest.approx(0.8)
    assert r["sc_iou"] == pytest.approx(4 / 6)
    # class 1: tp 1, gt 2, pred 1 (the voxel predicted 1 is label 255, ignored) -> 1/2
    # class 2: tp 1, gt 2, pred 2 -> 1/3; class 3: tp 1, gt 1, pred 2 -> 1/2; others undefined
    assert r["ssc_iou"]["ceiling"] == pytest.approx(0.5)
    assert r["ssc_iou"]["floor"] == pytest.approx(1 / 3)
    assert r["ssc_iou"]["wall"] == pytest.approx(0.5)
    assert all(math.isnan(r["ssc_iou"][n]) for n in CLASS_NAMES[4:])
    assert r["ssc_miou"] == pytest.approx(4 / 9)
    assert r["ssc_miou_classes"] == 3
    assert list(r["ssc_iou"]) == list(CLASS_NAMES[1:])
    assert r["confusion"][1][2] == 1 and r["confusion"][0][3] == 1 and sum(map(sum, r["confusion"])) == 7


def test_torchssc_protocol_hand_computed():
    m = SSCMetrics("torchssc")
    m.update(grid(PRED), grid(LABEL), label_weight=grid(WEIGHT, torch.float32), mapping=torch.tensor([MAPPING]))
    r = m.compute()
    # SSC voxels: weight > 0 and label != 255 -> indices 0,1,2,5,6,7
    # pairs (0,0) (1,1) (1,2) (2,0) (0,3) (3,3)
    assert r["ssc_voxels"] == 6
    assert r["ssc_iou"]["ceiling"] == pytest.approx(0.5)
    assert r["ssc_iou"]["floor"] == pytest.approx(0.0)  # gt 1 (idx 5), pred 1 (idx 2), no hit
    assert r["ssc_iou"]["wall"] == pytest.approx(0.5)
    assert r["ssc_miou"] == pytest.approx(1 / 3) and r["ssc_miou_classes"] == 3
    # SC voxels: SSC voxels with no mapped pixel -> 0,2,5,6: (0,0) (1,2) (2,0) (0,3)
    assert r["sc_voxels"] == 4
    assert r["sc_precision"] == pytest.approx(0.5)
    assert r["sc_recall"] == pytest.approx(0.5)
    assert r["sc_iou"] == pytest.approx(1 / 3)
    assert r["sc_aggregation"] == "summed"


def test_sscnet_protocol_hand_computed_per_scene_mean():
    # scene A = the volume above; scene B has SC voxels but nothing occupied in them (0/0);
    # scene C has one false positive only.
    label = torch.tensor([LABEL, [0, 0, 0, 0, 0, 0, 0, 4], [0] * 8]).reshape(3, 2, 2, 2)
    pred = torch.tensor([PRED, [0, 0, 0, 0, 0, 0, 0, 4], [5, 0, 0, 0, 0, 0, 0, 0]]).reshape(3, 2, 2, 2)
    vis = torch.tensor([VIS, [3, 3, 1, 1, 1, 1, 1, 2], [3, 1, 1, 1, 1, 1, 1, 1]]).reshape(3, 2, 2, 2)
    m = SSCMetrics("sscnet")
    m.update(pred, label, visibility=vis)
    r = m.compute()
    # A: SC voxels (occluded, label != 255) 1,2,6: (1,1) (1,2) (0,3): P 2/3, R 1, IoU 2/3
    # B: SC voxels 0,1: (0,0) (0,0): P 0, R 0 (MATLAB rule), IoU undefined -> not averaged
    # C: SC voxel 0: (0,5): P 0, R 0, IoU 0
    assert r["scenes"] == 3 and r["sc_iou_scenes"] == 2
    assert r["sc_precision"] == pytest.approx((2 / 3) / 3)
    assert r["sc_recall"] == pytest.approx(1 / 3)
    assert r["sc_iou"] == pytest.approx((2 / 3) / 2)
    assert r["sc_aggregation"] == "per-scene mean"
    assert r["sc_voxels"] == 3 + 2 + 1
    # SSC (surface + occluded, label != 255), summed:
    # A: 0,1,2,5,6 -> (0,0) (1,1) (1,2) (2,0) (0,3); B: 0,1,7 -> (0,0) (0,0) (4,4); C: (0,5)
    assert r["ssc_voxels"] == 9
    assert r["ssc_iou"]["ceiling"] == pytest.approx(0.5)
    assert r["ssc_iou"]["floor"] == pytest.approx(0.0)
    assert r["ssc_iou"]["wall"] == pytest.approx(0.0)
    assert r["ssc_iou"]["window"] == pytest.approx(1.0)
    assert r["ssc_iou"]["chair"] == pytest.approx(0.0)
    assert r["ssc_miou_classes"] == 5
    assert r["ssc_miou"] == pytest.approx(1.5 / 5)


def test_empty_state_is_nan_not_an_error():
    r = SSCMetrics("sscnet").compute()
    assert r["scenes"] == 0 and math.isnan(r["sc_iou"]) and math.isnan(r["ssc_miou"])
    assert r["ssc_miou_classes"] == 0


# --------------------------------------------------------------------------------------------
# Naive per-voxel reference.
def naive_metrics(protocol, pred, label, weight, mapping, vis, no_pixel=NP, c=12):
    """Loop over every voxel of every scene, straight from the docs/evaluation.md table."""
    b = pred.shape[0]
    pred, label = pred.reshape(b, -1), label.reshape(b, -1)
    weight, mapping, vis = weight.reshape(b, -1), mapping.reshape(b, -1), vis.reshape(b, -1)
    conf = [[0] * c for _ in range(c)]
    tp = fp = fn = 0
    ssc_n = sc_n = 0
    sums = [0.0, 0.0, 0.0]
    iou_scenes = 0
    for s in range(b):
        stp = sfp = sfn = 0
        for v in range(pred.shape[1]):
            g, p = int(label[s, v]), int(pred[s, v])
            if g == 255:
                continue
            if protocol == "torchssc":
                in_ssc = weight[s, v] > 0
                in_sc = in_ssc and int(mapping[s, v]) == no_pixel
            elif protocol == "sscnet":
                in_ssc = int(vis[s, v]) in (VIS_SURFACE, VIS_OCCLUDED)
                in_sc = int(vis[s, v]) == VIS_OCCLUDED
            else:
                in_ssc = in_sc = True
            if in_ssc:
                conf[g][p] += 1
                ssc_n += 1
            if in_sc:
                sc_n += 1
                stp += g > 0 and p > 0
                sfp += g == 0 and p > 0
                sfn += g > 0 and p == 0
        tp, fp, fn = tp + stp, fp + sfp, fn + sfn
        sums[0] += stp / (stp + sfp) if stp > 0 else 0.0
        sums[1] += stp / (stp + sfn) if stp + sfn > 0 else 0.0
        if stp + sfp + sfn > 0:
            sums[2] += stp / (stp + sfp + sfn)
            iou_scenes += 1

    def div(a, d):
        return a / d if d else math.nan

    if protocol == "sscnet":
        sc = (div(sums[0], b), div(sums[1], b), div(sums[2], iou_scenes))
    else:
        sc = (div(tp, tp + fp), div(tp, tp + fn), div(tp, tp + fp + fn))
    ious = []
    for k in range(1, c):
        inter = conf[k][k]
        union = sum(conf[k]) + sum(conf[r][k] for r in range(c)) - inter
        ious.append(div(inter, union))
    defined = [x for x in ious if not math.isnan(x)]
    return {
        "sc": sc,
        "ious": ious,
        "miou": sum(defined) / len(defined) if defined else math.nan,
        "ssc_voxels": ssc_n,
        "sc_voxels": sc_n,
        "conf": conf,
    }


def random_batch(seed: int, b: int = 3, shape=(5, 3, 7), pix: int = 40):
    """Random tiny scenes with every edge: 255 labels, weight 0/1, unmapped voxels, all VIS codes."""
    g = torch.Generator().manual_seed(seed)
    full = (b, *shape)
    label = torch.randint(0, 12, full, generator=g)
    label[torch.rand(full, generator=g) < 0.4] = 0
    label[torch.rand(full, generator=g) < 0.15] = 255
    pred = label.clamp(max=11).clone()
    flip = torch.rand(full, generator=g) < 0.5
    pred[flip] = torch.randint(0, 12, full, generator=g)[flip]
    weight = (torch.rand(full, generator=g) < 0.6).float()
    mapping = torch.randint(0, pix + 1, (b, int(np.prod(shape))), generator=g)
    mapping[torch.rand(mapping.shape, generator=g) < 0.5] = pix
    vis = torch.randint(0, 6, full, generator=g)
    return pred, label, weight, mapping, vis


def check_against_naive(r, ref):
    assert r["ssc_voxels"] == ref["ssc_voxels"] and r["sc_voxels"] == ref["sc_voxels"]
    assert r["confusion"] == ref["conf"]
    for got, want in zip((r["sc_precision"], r["sc_recall"], r["sc_iou"]), ref["sc"]):
        assert nan_equal(got, want)
    for got, want in zip(r["ssc_iou"].values(), ref["ious"]):
        assert nan_equal(got, want)
    assert nan_equal(r["ssc_miou"], ref["miou"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(protocol, seed):
    pix = 40
    pred, label, weight, mapping, vis = random_batch(seed, pix=pix)
    m = SSCMetrics(protocol, no_pixel=pix)
    m.update(pred, label, label_weight=weight, mapping=mapping, visibility=vis)
    r = m.compute()
    assert r["protocol"] == protocol and r["scenes"] == 3
    check_against_naive(r, naive_metrics(protocol, pred, label, weight, mapping, vis, no_pixel=pix))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_torch_path_matches_numpy_path(protocol, monkeypatch):
    """The accelerator (torch) code path, exercised on the CPU, gives identical counts."""
    pred, label, weight, mapping, vis = random_batch(7, pix=40)
    kw = dict(label_weight=weight, mapping=mapping, visibility=vis)
    a = SSCMetrics(protocol, no_pixel=40)
    a.update(pred, label, **kw)
    monkeypatch.setattr(M, "_use_numpy", lambda device: False)
    b = SSCMetrics(protocol, no_pixel=40)
    b.update(pred, label, **kw)
    for x, y in zip(a.state_tensors(), b.state_tensors()):
        assert torch.equal(x, y)


def test_chunked_cpu_pass_equals_one_pass(monkeypatch):
    """The CPU path works in chunks of voxels; odd chunk sizes change nothing."""
    pred, label, weight, mapping, vis = random_batch(8, pix=40)
    kw = dict(label_weight=weight, mapping=mapping, visibility=vis)
    whole = [SSCMetrics(p, no_pixel=40) for p in PROTOCOLS]
    update_all(whole, pred, label, **kw)
    monkeypatch.setattr(M, "_CHUNK", 7)
    chunked = [SSCMetrics(p, no_pixel=40) for p in PROTOCOLS]
    update_all(chunked, pred, label, **kw)
    for a, b in zip(whole, chunked):
        for x, y in zip(a.state_tensors(), b.state_tensors()):
            assert same_state(x, y)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_numpy_and_torch_inputs_agree(protocol):
    pred, label, weight, mapping, vis = random_batch(3, pix=40)
    a = SSCMetrics(protocol, no_pixel=40)
    a.update(pred, label, label_weight=weight, mapping=mapping, visibility=vis)
    b = SSCMetrics(protocol, no_pixel=40)
    b.update(
        pred.numpy().astype(np.uint8),
        label.numpy().astype(np.uint8),
        label_weight=weight.numpy().astype(np.uint8),
        mapping=mapping.numpy().astype(np.int32),
        visibility=vis.numpy().astype(np.uint8),
    )
    for x, y in zip(a.state_tensors(), b.state_tensors()):
        assert torch.equal(x, y)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_streaming_equals_single_update(protocol):
    pred, label, weight, mapping, vis = random_batch(4, b=5, pix=40)
    once = SSCMetrics(protocol, no_pixel=40)
    once.update(pred, label, label_weight=weight, mapping=mapping, visibility=vis)
    pieces = SSCMetrics(protocol, no_pixel=40)
    for sl in (slice(0, 2), slice(2, 3), slice(3, 5)):
        pieces.update(pred[sl], label[sl], label_weight=weight[sl], mapping=mapping[sl], visibility=vis[sl])
    for x, y in zip(once.state_tensors(), pieces.state_tensors()):
        assert same_state(x, y)
    assert once.compute()["scenes"] == 5
    pieces.reset()
    assert all(int(t.abs().sum()) == 0 for t in pieces.state_tensors())


def test_update_all_equals_one_object_per_protocol():
    pred, label, weight, mapping, vis = random_batch(9, b=4, pix=40)
    kw = dict(label_weight=weight, mapping=mapping, visibility=vis)
    together = [SSCMetrics(p, no_pixel=40) for p in PROTOCOLS]
    update_all(together, pred, label, **kw)
    for m in together:
        alone = SSCMetrics(m.protocol, no_pixel=40)
        alone.update(pred, label, **kw)
        for x, y in zip(alone.state_tensors(), m.state_tensors()):
            assert same_state(x, y)
    # a protocol's missing input is an error for the whole call, and nothing is counted
    fresh = [SSCMetrics(p, no_pixel=40) for p in PROTOCOLS]
    with pytest.raises(ValueError, match="needs visibility"):
        update_all(fresh, pred, label, label_weight=weight, mapping=mapping)
    assert all(m.compute()["scenes"] == 0 for m in fresh)


def protocol_masks(
    protocol: str,
    label: torch.Tensor,
    *,
    label_weight: torch.Tensor | None = None,
    mapping: torch.Tensor | None = None,
    visibility: torch.Tensor | None = None,
    no_pixel: int = 307200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The voxels a protocol scores, as boolean masks: the readable definition of the protocols
    (docs/evaluation.md), the plain reference :class:`SSCMetrics` (through
    :func:`scene_histogram`) is checked against.

    Args:
        protocol: one of :data:`PROTOCOLS`.
        label: ``(B, N)`` integer ground truth, 0..11 or 255 (N = voxels per scene, flat C-order).
        label_weight: ``(B, N)`` 0/1 weights (``torchssc``).
        mapping: ``(B, N)`` integer pixel index per voxel, ``no_pixel`` = none (``torchssc``).
        visibility: ``(B, N)`` integer :mod:`torchssc.geometry` ``VIS_*`` codes (``sscnet``).
        no_pixel: the "no pixel" mapping value, ``H * W`` (307200 for NYU).
    Returns:
        ``(ssc_mask, sc_mask)``, both ``(B, N) bool``, with ``sc_mask`` a subset of ``ssc_mask``.
    Raises:
        ValueError: unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    valid = label != IGNORE_LABEL
    if protocol == "torchssc":
        ssc = valid & (label_weight > 0)
        sc = ssc & (mapping == no_pixel)
    elif protocol == "sscnet":
        occluded = visibility == VIS_OCCLUDED
        sc = valid & occluded
        ssc = sc | (valid & (visibility == VIS_SURFACE))
    else:
        ssc = valid
        sc = valid
    return ssc, sc


def test_protocol_masks_nest():
    pred, label, weight, mapping, vis = random_batch(5, pix=40)
    b = label.shape[0]
    for protocol in PROTOCOLS:
        ssc, sc = protocol_masks(
            protocol, label.reshape(b, -1), label_weight=weight.reshape(b, -1), mapping=mapping,
            visibility=vis.reshape(b, -1), no_pixel=40,
        )
        assert bool((sc & ~ssc).any()) is False
        assert bool((ssc & (label.reshape(b, -1) == 255)).any()) is False
        m = SSCMetrics(protocol, no_pixel=40)
        m.update(pred, label, label_weight=weight, mapping=mapping, visibility=vis)
        r = m.compute()
        assert r["ssc_voxels"] == int(ssc.sum()) and r["sc_voxels"] == int(sc.sum())


def test_scene_histogram_splits_every_labelled_voxel_by_attribute():
    pred, label, weight, mapping, vis = random_batch(6, pix=40)
    hist = scene_histogram(pred, label, label_weight=weight, mapping=mapping, visibility=vis, no_pixel=40)
    assert hist.shape == (3, 3, 2, 2, 12, 12) and hist.dtype == torch.int64
    lab = label.reshape(3, -1)
    assert torch.equal(hist.sum((1, 2, 3, 4, 5)), (lab != 255).sum(1))
    w = weight.reshape(3, -1) > 0
    unmapped = mapping == 40
    v = vis.reshape(3, -1)
    for s in range(3):
        keep = (lab[s] != 255) & w[s] & unmapped[s] & (v[s] == VIS_OCCLUDED)
        want = torch.zeros(12, 12, dtype=torch.int64)
        for g, p in zip(lab[s][keep].tolist(), pred.reshape(3, -1)[s][keep].tolist()):
            want[g, p] += 1
        assert torch.equal(hist[s, 2, 1, 1], want)


def test_update_errors():
    pred, label, weight, mapping, vis = random_batch(0, pix=40)
    m = SSCMetrics("torchssc", no_pixel=40)
    with pytest.raises(ValueError, match="needs mapping"):
        m.update(pred, label, label_weight=weight)
    with pytest.raises(ValueError, match="needs visibility"):
        SSCMetrics("sscnet").update(pred, label)
    with pytest.raises(ValueError, match="argmax"):
        m.update(pred.float(), label, label_weight=weight, mapping=mapping)
    with pytest.raises(ValueError, match="pred values"):
        m.update(torch.full_like(pred, 12), label, label_weight=weight, mapping=mapping)
    bad = label.clone()
    bad[0, 0, 0, 0] = 100
    with pytest.raises(ValueError, match="label values"):
        m.update(pred, bad, label_weight=weight, mapping=mapping)
    with pytest.raises(ValueError, match="mapping has shape"):
        m.update(pred, label, label_weight=weight, mapping=mapping[:, :-1])
    with pytest.raises(ValueError, match="unknown protocol"):
        SSCMetrics("every")
    # nothing was counted by the failed updates
    assert m.compute()["scenes"] == 0


def test_metrics_report_names_the_protocol():
    m = SSCMetrics("all")
    m.update(grid(PRED), grid(LABEL))
    text = metrics_report(m.compute(), title="epoch 3")
    assert "`all`" in text and "66.7" in text and "44.4" in text and "n/a" in text


# --------------------------------------------------------------------------------------------
# all_reduce across a 2-process gloo group equals the single-process result.
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reduce_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        pred, label, weight, mapping, vis = random_batch(11, b=5, pix=40)
        results = {}
        for protocol in PROTOCOLS:
            m = SSCMetrics(protocol, no_pixel=40)
            idx = list(range(rank, 5, world))  # rank r takes scenes r, r + W, ...
            m.update(pred[idx], label[idx], label_weight=weight[idx], mapping=mapping[idx], visibility=vis[idx])
            m.all_reduce()
            results[protocol] = [t.clone() for t in m.state_tensors()]
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_two_processes_equals_single(tmp_path):
    mp.spawn(_reduce_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    pred, label, weight, mapping, vis = random_batch(11, b=5, pix=40)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for protocol in PROTOCOLS:
            m = SSCMetrics(protocol, no_pixel=40)
            m.update(pred, label, label_weight=weight, mapping=mapping, visibility=vis)
            for x, y in zip(m.state_tensors(), got[protocol]):
                assert same_state(x, y), (rank, protocol)


def test_all_reduce_without_group_is_noop():
    m = SSCMetrics("all")
    m.update(grid(PRED), grid(LABEL))
    m.all_reduce()  # no process group: nothing to do
    assert m.compute()["ssc_voxels"] == 7
    m.update(grid(PRED), grid(LABEL))
    assert m.compute()["ssc_voxels"] == 14
