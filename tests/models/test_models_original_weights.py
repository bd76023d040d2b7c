"""Checkpoints of the original TorchSSC and of the DDRNet/AICNet authors, imported.

The original's names and shapes are transcribed here layer by layer from its published model
definition (the SketchAwareSSC network and its deep-stem ResNet-50, at the paper's settings:
feature 128, 12 classes, latent 16, CVAE hidden 16, stem 64): an independent list that the key map
of ``torchssc.models.original_weights`` must reproduce, dead branches included. The files the
import reads are made here from our models, by the inverse key map.
"""

from __future__ import annotations

import pytest
import torch

from torchssc.cli import main
from torchssc.config import load_config
from torchssc.engine.builders import build_model
from torchssc.engine.checkpoint import load_checkpoint, load_model
from torchssc.engine.import_weights import wlj_default_recipe
from torchssc.models import get_model
from torchssc.models.authors_weights import authors_key
from torchssc.models.original_weights import (
    dead_branch_shapes,
    from_original_state_dict,
    is_original_checkpoint,
    original_key,
    original_key_map,
    our_key,
    to_original_state_dict,
)

BN_BUFFERS = ("running_mean", "running_var")


# ----------------------------------------------------------------------------------------------
# The original's state dict: names and shapes, transcribed from its model definition.


def _bn(name: str, c: int) -> dict:
    return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
            f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()}


def _conv(name: str, c_out: int, c_in: int, kernel: tuple[int, ...], bias: bool = False) -> dict:
    return {f"{name}.weight": (c_out, c_in, *kernel), **({f"{name}.bias": (c_out,)} if bias else {})}


def _conv_t(name: str, c_in: int, c_out: int) -> dict:
    """ConvTranspose3d k3 with bias: its weight is (in, out, 3, 3, 3)."""
    return {f"{name}.weight": (c_in, c_out, 3, 3, 3), f"{name}.bias": (c_out,)}


def _resnet50(p: str) -> dict:
    """get_resnet50: deep stem 3->64->64->128, layers [3, 4, 6, 3] of Bottleneck (expansion 4)."""
    shapes = {**_conv(p + "conv1", 64, 3, (3, 3)), **_bn(p + "bn1", 64),
              **_conv(p + "conv2", 64, 64, (3, 3)), **_bn(p + "bn2", 64),
              **_conv(p + "conv3", 128, 64, (3, 3)), **_bn(p + "bn3", 128)}
    inplanes = 128
    for layer, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for i in range(blocks):
            b = f"{p}layer{layer}.{i}."
            shapes.update({**_conv(b + "conv1", planes, inplanes, (1, 1)), **_bn(b + "bn1", planes),
                           **_conv(b + "conv2", planes, planes, (3, 3)), **_bn(b + "bn2", planes),
                           **_conv(b + "conv3", 4 * planes, planes, (1, 1)), **_bn(b + "bn3", 4 * planes)})
            if i == 0:  # stride 2 or inplanes != 4 * planes: every layer's first block
                shapes.update({**_conv(b + "downsample.0", 4 * planes, inplanes, (1, 1)),
                               **_bn(b + "downsample.1", 4 * planes)})
            inplanes = 4 * planes
    return shapes


def _bottleneck3d(p: str, inplanes: int, planes: int, expansion: int, residual: int | None) -> dict:
    """Bottleneck3D: conv1..5 + bn1..5, downsample2/3/4 (AvgPool, conv, BN) always, the residual
    ``downsample`` (AvgPool, conv, BN) when given (``residual`` output channels)."""
    shapes = {**_conv(p + "conv1", planes, inplanes, (1, 1, 1)), **_bn(p + "bn1", planes)}
    for i, kernel in ((2, (1, 1, 3)), (3, (1, 3, 1)), (4, (3, 1, 1))):
        shapes.update({**_conv(f"{p}conv{i}", planes, planes, kernel), **_bn(f"{p}bn{i}", planes)})
    shapes.update({**_conv(p + "conv5", planes * expansion, planes, (1, 1, 1)), **_bn(p + "bn5", planes * expansion)})
    for i in (2, 3, 4):
        shapes.update({**_conv(f"{p}downsample{i}.1", planes, planes, (1, 1, 1)), **_bn(f"{p}downsample{i}.2", planes)})
    if residual is not None:
        shapes.update({**_conv(p + "downsample.1", residual, inplanes, (1, 1, 1)), **_bn(p + "downsample.2", residual)})
    return shapes


def _layers(p1: str, p2: str, f: int) -> dict:
    """The two DDR layers of a stage (completion_layer1/2, semantic_layer1/2)."""
    shapes = _bottleneck3d(f"{p1}.0.", f, f // 4, 4, f)
    for i in (1, 2, 3):
        shapes.update(_bottleneck3d(f"{p1}.{i}.", f, f // 4, 4, None))
    shapes.update(_bottleneck3d(f"{p2}.0.", f, f // 4, 8, 2 * f))
    for i in (1, 2, 3):
        shapes.update(_bottleneck3d(f"{p2}.{i}.", 2 * f, f // 2, 4, None))
    return shapes


def _stem(p: str, c_in: int, f: int) -> dict:
    """conv c_in->3, BN, ReLU, conv 3->64, BN, ReLU, conv 64->f, BN, ReLU (indices 0..8)."""
    return {**_conv(p + "0", 3, c_in, (3, 3, 3)), **_bn(p + "1", 3), **_conv(p + "3", 64, 3, (3, 3, 3)),
            **_bn(p + "4", 64), **_conv(p + "6", f, 64, (3, 3, 3)), **_bn(p + "7", f)}


def _cvae_body(p: str, c_in: int, latent: int) -> dict:
    """CVAE encoder / decoder_x: c_in->3->16->16, AvgPool, 16->latent, AvgPool, latent->latent."""
    return {**_conv(p + "0", 3, c_in, (3, 3, 3)), **_bn(p + "1", 3), **_conv(p + "3", 16, 3, (3, 3, 3)),
            **_bn(p + "4", 16), **_conv(p + "6", 16, 16, (3, 3, 3)), **_bn(p + "7", 16),
            **_conv(p + "10", latent, 16, (3, 3, 3)), **_bn(p + "11", latent),
            **_conv(p + "14", latent, latent, (3, 3, 3)), **_bn(p + "15", latent)}


def _classifier(p: str, f: int, classes: int) -> dict:
    """classify_sketch / classify_semantic: up (ConvT 2f->f, BN), up (ConvT f->f, BN), Dropout + conv."""
    return {**_conv_t(p + "0.0", 2 * f, f), **_bn(p + "0.1", f), **_conv_t(p + "1.0", f, f), **_bn(p + "1.1", f),
            **_conv(p + "2.1", classes, f, (1, 1, 1), bias=True)}


def original_shapes(f: int = 128, classes: int = 12, latent: int = 16) -> dict[str, tuple[int, ...]]:
    """Every state tensor of the original ``Network`` (train mode), name -> shape."""
    shapes = _resnet50("backbone.")
    shapes.update(_stem("stage1.oper1.", 1, f))
    shapes.update(_layers("stage1.completion_layer1", "stage1.completion_layer2", f))
    shapes.update(_cvae_body("stage1.cvae.encoder.", 2, latent))
    shapes.update(_conv("stage1.cvae.mean", latent, latent, (1, 1, 1), bias=True))
    shapes.update(_conv("stage1.cvae.log_var", latent, latent, (1, 1, 1), bias=True))
    shapes.update(_cvae_body("stage1.cvae.decoder_x.", 1, latent))
    shapes.update({**_conv_t("stage1.cvae.decoder.0", 2 * latent, latent), **_bn("stage1.cvae.decoder.1", latent),
                   **_conv_t("stage1.cvae.decoder.3", latent, latent),
                   **_bn("stage1.cvae.decoder.4", latent),
                   **_conv("stage1.cvae.decoder.7", 2, latent, (1, 1, 1), bias=True)})
    shapes.update(_classifier("stage1.classify_sketch.", f, 2))
    shapes.update({**_conv("stage2.downsample.0", f, 2048, (1, 1)), **_bn("stage2.downsample.1", f)})
    shapes.update(_layers("stage2.semantic_layer1", "stage2.semantic_layer2", f))
    shapes.update(_classifier("stage2.classify_semantic.", f, classes))
    shapes.update(_stem("stage2.oper_sketch.", 2, f))
    shapes.update(_stem("stage2.oper_sketch_cvae.", 2, f))
    return shapes


# ----------------------------------------------------------------------------------------------
# Helpers


def _meta(name: str = "sketch_aware_ssc", **kwargs):
    with torch.device("meta"):
        return get_model(name, **kwargs)


def _randomised(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of ``model``'s names and dtypes with seeded random values in every tensor
    (positive variances, random counters), so that a swapped tensor cannot pass."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            fresh = torch.rand(value.shape, generator=g) + 0.5 if key.endswith("running_var") else \
                torch.randn(value.shape, generator=g)
            out[key] = fresh.to(value.dtype)
        else:
            out[key] = torch.randint(0, 10_000, value.shape, generator=g, dtype=value.dtype)
    return out


def _original_file(model: torch.nn.Module, ours: dict, seed: int = 1) -> dict:
    """The original's ``epoch-N.pth`` contents for our state dict ``ours``: every tensor under its
    original name, plus the dead branches with their names and shapes (random values)."""
    g = torch.Generator().manual_seed(seed)
    sd = {original_key(k): v for k, v in ours.items()}
    for key, shape in dead_branch_shapes(model).items():
        sd[key] = (torch.randint(0, 100, shape, generator=g) if key.endswith("num_batches_tracked")
                   else torch.randn(shape, generator=g))
    return {"model": sd, "optimizer": {}, "epoch": 3, "iteration": 99}


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------------------------
# The key map


def test_the_key_map_gives_the_original_names_and_counts():
    model = _meta()
    ours = model.state_dict()
    mapped = {original_key(k): tuple(v.shape) for k, v in ours.items()}
    dead = {k: tuple(s) for k, s in dead_branch_shapes(model).items()}
    expected = original_shapes()
    assert len(ours) == 1078
    assert len(dead) == 216
    assert len(expected) == 1294
    assert not mapped.keys() & dead.keys()
    assert {**mapped, **dead} == expected
    dead_parameters = sum(torch.Size(s).numel() for k, s in dead.items()
                          if not k.endswith((*BN_BUFFERS, "num_batches_tracked")))
    assert dead_parameters == 95_616
    # the dead branches are exactly the stride-1 blocks' downsample2/3/4 (12 blocks x 3 x 6)
    assert all(".0.downsample" not in k and k.split(".")[3] in ("downsample2", "downsample3", "downsample4")
               for k in dead)
    assert {our_key(k) for k in mapped} == set(ours)


@pytest.mark.parametrize("name", ["sketch_aware_ssc_lite", "sketch_aware_ssc_tsdf", "sketch_aware_ssc_tsdf_lite"])
def test_the_key_map_applies_to_the_variants(name):
    model = _meta(name)
    key_map = original_key_map(model)
    assert len(key_map) == len(model.state_dict())
    assert all(our_key(theirs) == ours for theirs, ours in key_map.items())
    assert len(dead_branch_shapes(model)) == 216
    names = set(key_map)
    assert ("stage2.downsample.0.weight" in names) == (name == "sketch_aware_ssc_lite")


def test_the_prior_variant_has_no_original_counterpart():
    with pytest.raises(ValueError, match=r"stage2\.seg_embed\.0\.weight.*no counterpart.*2D-prior"):
        original_key_map(_meta("sketch_aware_ssc_prior_lite"))


# ----------------------------------------------------------------------------------------------
# Import: bit-identical, both ways; errors naming the tensor


@pytest.fixture(scope="module")
def paper_original(tmp_path_factory):
    """The paper's model's state dict (random values) and its original-format file."""
    torch.manual_seed(0)
    model = get_model("sketch_aware_ssc")  # no backbone_weights: no ImageNet file needed
    ours = _randomised(model)
    path = tmp_path_factory.mktemp("original") / "epoch-3.pth"
    torch.save(_original_file(model, ours), path)
    return ours, path


def test_import_command_is_bit_identical_and_counts_the_dead_branches(paper_original, tmp_path, capsys):
    ours, path = paper_original
    out = tmp_path / "imported.pt"
    assert main(["import-weights", str(path), "--from", "torchssc-original", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1078 tensors imported" in printed and "216 skipped" in printed
    state = torch.load(out, map_location="cpu", weights_only=True)
    _assert_identical(state["model"], ours)
    assert (state["epoch"], state["iteration"]) == (3, 99)
    assert state["config"]["model"]["name"] == "sketch_aware_ssc"
    assert "backbone_weights" not in state["config"]["model"]["kwargs"]
    assert state["imported_from"] == {"format": "torchssc-original", "file": "epoch-3.pth", "skipped": 216}
    assert not is_original_checkpoint(state)  # ours is read as ours
    assert load_checkpoint(out)["model"].keys() == ours.keys()
    # and back: ours -> the original's naming gives the file's tensors (the dead branches aside)
    original = torch.load(path, map_location="cpu", weights_only=True)["model"]
    back = to_original_state_dict(state["model"])
    _assert_identical(back, {k: v for k, v in original.items() if k in back})
    assert len(original) - len(back) == 216


def test_eval_and_predict_load_an_original_file_directly(paper_original, caplog):
    ours, path = paper_original
    with caplog.at_level("WARNING", logger="torchssc.import"):
        model, state = load_model(path)  # predict: no recipe given -> the default one
    assert "default recipe sketch_aware_ssc_nyu" in caplog.text
    assert state["config"]["model"]["name"] == "sketch_aware_ssc" and state["epoch"] == 3
    assert not model.training
    _assert_identical(model.state_dict(), ours)


def test_round_trip_ours_to_original_to_ours():
    model = _meta("sketch_aware_ssc_tsdf_lite")
    ours = _randomised(model, seed=5)
    original = to_original_state_dict(ours, dead_branches=model)
    assert len(original) == len(ours) + 216
    back, skipped = from_original_state_dict(model, original)
    assert skipped == 216
    _assert_identical(back, ours)
    # a DataParallel prefix on every key is accepted
    back, _ = from_original_state_dict(model, {f"module.{k}": v for k, v in original.items()})
    _assert_identical(back, ours)


@pytest.fixture
def lite_original():
    model = _meta("sketch_aware_ssc_lite")
    return model, _original_file(model, _randomised(model))["model"]


def test_a_missing_tensor_is_named(lite_original):
    model, sd = lite_original
    del sd["stage1.cvae.log_var.bias"]
    with pytest.raises(ValueError, match=r"^f\.pth: .*missing 1 tensor: 'stage1\.cvae\.log_var\.bias'$"):
        from_original_state_dict(model, sd, source="f.pth")


def test_an_extra_tensor_is_named(lite_original):
    model, sd = lite_original
    sd["stage2.classify_semantic.3.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected 1 tensor: 'stage2\.classify_semantic\.3\.weight'$"):
        from_original_state_dict(model, sd)


def test_a_dead_branch_of_a_strided_block_is_not_skipped(lite_original):
    model, sd = lite_original
    del sd["stage2.semantic_layer2.0.downsample3.1.weight"]  # used in forward (stride 2): required
    with pytest.raises(ValueError, match=r"missing 1 tensor: 'stage2\.semantic_layer2\.0\.downsample3\.1\.weight'"):
        from_original_state_dict(model, sd)


def test_a_wrong_shape_is_named(lite_original):
    model, sd = lite_original
    sd["stage2.oper_sketch.3.weight"] = torch.zeros(4, 3, 3, 3, 1)
    with pytest.raises(ValueError, match=r"wrong shape: 'stage2\.oper_sketch\.3\.weight' is \(4, 3, 3, 3, 1\), "
                                         r"expected \(4, 3, 3, 3, 3\)$"):
        from_original_state_dict(model, sd)


def test_the_command_reports_a_bad_file_in_one_line(lite_original, tmp_path, capsys):
    _, sd = lite_original
    del sd["stage1.oper1.4.running_var"]
    path = tmp_path / "epoch-1.pth"
    torch.save({"model": sd, "optimizer": {}, "epoch": 1, "iteration": 5}, path)
    code = main(["import-weights", str(path), "--from", "torchssc-original", "--recipe", "sketch_aware_ssc_synth_cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "missing 1 tensor: 'stage1.oper1.4.running_var'" in err and str(path) in err
    assert not (tmp_path / "epoch-1_torchssc.pt").exists()
    # a file of another kind is refused as such
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "epoch": 1}, path)
    assert main(["import-weights", str(path), "--from", "torchssc-original"]) == 2
    assert "not a checkpoint of the original TorchSSC" in capsys.readouterr().err


def test_eval_loads_an_original_file_with_its_recipe(tmp_path):
    """eval passes its recipe: the file is converted for that model, and then strictly loaded."""
    cfg = load_config("sketch_aware_ssc_synth_cpu")
    torch.manual_seed(0)
    model = build_model(cfg)
    ours = _randomised(model, seed=3)
    path = tmp_path / "epoch-7.pth"
    torch.save(_original_file(model, ours), path)
    assert is_original_checkpoint(torch.load(path, weights_only=True))
    loaded, state = load_model(path, cfg)
    _assert_identical(loaded.state_dict(), ours)
    assert state["imported_from"]["skipped"] == 216


# ----------------------------------------------------------------------------------------------
# --from ssc-wlj: the DDRNet/AICNet authors' files


def test_import_of_the_authors_ddrnet_file(tmp_path, capsys):
    cfg = load_config("ddrnet_nyu")
    torch.manual_seed(0)
    ours = _randomised(build_model(cfg), seed=2)
    path = tmp_path / "cpBest_SSC_DDRNet.pth.tar"
    torch.save({"state_dict": {f"module.{authors_key(k)}": v for k, v in ours.items()}, "epoch": 12}, path)
    out = tmp_path / "ddrnet.pt"
    assert main(["import-weights", str(path), "--from", "ssc-wlj", "--out", str(out)]) == 0
    assert f"{len(ours)} tensors imported (ssc-wlj), 0 skipped" in capsys.readouterr().out
    model, state = load_model(out)
    assert state["config"]["model"]["name"] == "ddrnet" and state["epoch"] == 12
    _assert_identical(model.state_dict(), ours)
    # the default recipe follows the file: AIC blocks -> AICNet
    assert wlj_default_recipe({"res3d_1d.basic_aic.conv_mx.weight": 0}) == "aicnet_nyu"
    # a wrong recipe: one line naming the file
    assert main(["import-weights", str(path), "--from", "ssc-wlj", "--recipe", "aicnet_nyu",
                 "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "missing" in err and not (tmp_path / "x.pt").exists()
