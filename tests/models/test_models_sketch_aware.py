"""SketchAwareSSC: parameter counts, shapes, gradients, determinism, fast == naive paths."""

import copy
import io

import pytest
import torch
import torch.nn as nn

import _sketch_aware_reference as ref
from torchssc.models import get_model, list_models
from torchssc.models.ddr import Bottleneck3D, EncoderDecoder, dropout_pointwise
from torchssc.models.sketch_aware import ChunkedBatchNorm3d, SketchCVAE, count_parameters


GRID = (8, 4, 8)
IMAGE = (32, 48)
SMALL = dict(width=8, backbone="resnet18", stem_channels=4, latent_channels=4, cvae_hidden=4,
             num_samples=3)


def _batch(b=2, grid=GRID, image=IMAGE, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1] * grid[2]
    hw = image[0] * image[1]
    mapping = torch.randint(0, hw, (b, n), generator=g)
    mapping[torch.rand(b, n, generator=g) > 0.3] = hw
    return {
        "rgb": torch.randn(b, 3, *image, generator=g),
        "tsdf": torch.randn(b, 1, *grid, generator=g).clamp(-1, 1),
        "mapping": mapping,
        "sketch_gt": torch.randint(0, 2, (b, *grid), generator=g),
        "label": torch.randint(0, 12, (b, *grid), generator=g),
        "label_weight": (torch.rand(b, *grid, generator=g) > 0.5).float(),
    }


def _model(**kw):
    torch.manual_seed(0)
    return get_model("sketch_aware_ssc", **{**SMALL, **kw})


def test_registered():
    assert {"sketch_aware_ssc", "sketch_aware_ssc_lite"} <= set(list_models())


def test_paper_parameter_counts():
    with torch.device("meta"):
        model = get_model("sketch_aware_ssc")
    assert count_parameters(model) == 4_391_350
    assert count_parameters(model.backbone, trainable=False) == 23_631_808
    assert count_parameters(model.backbone) == 0          # frozen
    assert model.backbone.out_channels == 2048


def test_stride1_ddr_block_has_no_resizing_branches():
    plain = Bottleneck3D(16, 4, expansion=4, dilation=2)
    assert not any(n.startswith("downsample") for n, _ in plain.named_parameters())
    strided = Bottleneck3D(16, 4, expansion=4, stride=2,
                           downsample=nn.Sequential(nn.AvgPool3d(2), nn.Conv3d(16, 16, 1)))
    names = {n.split(".")[0] for n, _ in strided.named_parameters()}
    assert {"downsample", "downsample2", "downsample3", "downsample4"} <= names
    assert strided(torch.randn(2, 16, 6, 4, 10)).shape == (2, 16, 3, 2, 5)
    assert plain(torch.randn(1, 16, 5, 3, 7)).shape == (1, 16, 5, 3, 7)


def test_ddr_block_matches_reference_formula():
    # the block written out with functional convs (docs/model.md), stride 2
    torch.manual_seed(0)
    blk = Bottleneck3D(8, 4, expansion=2, stride=2, dilation=1,
                       downsample=nn.Sequential(nn.AvgPool3d(2), nn.Conv3d(8, 8, 1, bias=False)))
    blk.eval()
    for m in blk.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 8, 6, 4, 8)
    r = torch.relu
    y1 = r(blk.bn1(blk.conv1(x)))
    y2 = blk.bn2(blk.conv2(y1))                       # last axis halved
    assert y2.shape[2:] == (6, 4, 4)
    y3 = blk.bn3(blk.conv3(r(y2))) + blk.downsample2(y2)
    y4 = blk.bn4(blk.conv4(r(y3))) + blk.downsample3(blk.downsample2(y2)) + blk.downsample4(y3)
    expected = r(blk.bn5(blk.conv5(r(y4))) + blk.downsample(x))
    torch.testing.assert_close(blk(x), expected)


def test_encoder_decoder_shape_and_grid_check():
    net = EncoderDecoder(8, 5)
    assert net(torch.randn(1, 8, 8, 4, 12)).shape == (1, 5, 8, 4, 12)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 8, 6, 4, 8))


def test_training_outputs_and_every_parameter_gets_a_gradient():
    from torchssc.losses import get_loss

    model = _model(freeze_backbone=False)
    batch = _batch()
    out = model(batch)
    b = 2
    assert out["semantic"].shape == (b, 12, *GRID)
    for key in ("sketch_raw", "sketch_prior", "sketch_posterior"):
        assert out[key].shape == (b, 2, *GRID)
    latent = (b, 4, GRID[0] // 4, GRID[1] // 4, GRID[2] // 4)
    assert out["latent_mean"].shape == latent and out["latent_logvar"].shape == latent
    get_loss("sketch_aware")(out, batch)["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_frozen_backbone_gets_no_gradient_and_bn_switch():
    from torchssc.losses import get_loss

    model = _model(freeze_backbone=True)
    batch = _batch()
    get_loss("sketch_aware")(model(batch), batch)["total"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("backbone."))
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training for m in bns)                       # the original's default
    frozen_bn = _model(freeze_backbone=True, backbone_bn_train=False).train()
    assert not any(m.training for m in frozen_bn.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    assert frozen_bn.stage1.training
    before = [m.running_mean.clone() for m in frozen_bn.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    frozen_bn(_batch())
    after = [m.running_mean for m in frozen_bn.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(x, y) for x, y in zip(before, after))


def test_inference_outputs_and_seeded_determinism():
    model = _model().eval()
    batch = _batch(b=2)
    with torch.no_grad():
        a = model(batch)
        b = model(batch)
        c = model(batch, seed=123)
    assert set(a) == {"semantic", "sketch_raw", "sketch_prior"}
    assert a["semantic"].shape == (2, 12, *GRID)
    assert torch.equal(a["semantic"], b["semantic"])
    assert torch.equal(a["sketch_prior"], b["sketch_prior"])
    assert not torch.allclose(a["sketch_prior"], c["sketch_prior"])
    # a frame's prediction does not depend on its batch neighbours
    with torch.no_grad():
        single = model({k: v[1:] for k, v in batch.items()})
    torch.testing.assert_close(single["semantic"][0], a["semantic"][1], atol=1e-5, rtol=1e-5)


def test_other_image_and_grid_sizes():
    model = _model().eval()
    with torch.no_grad():
        out = model(_batch(b=1, grid=(4, 8, 12), image=(37, 50)))
    assert out["semantic"].shape == (1, 12, 4, 8, 12)


@pytest.mark.parametrize("batched", [True, False])
def test_fast_paths_equal_naive_paths_in_eval(batched):
    model = _model().eval()
    model.cvae_batched = batched
    batch = _batch()
    with torch.no_grad():
        fast = model(batch)
        naive = ref.sketch_aware_naive(model, batch)
    assert set(fast) == set(naive)
    for key in fast:
        torch.testing.assert_close(fast[key], naive[key], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("batched", [True, False])
def test_batched_cvae_equals_looped_in_training_including_bn_statistics(batched):
    torch.manual_seed(0)
    cvae = SketchCVAE(latent=4, num_samples=3, hidden=4)
    cvae.decoder[6].p = 0.0                                    # dropout off: compare exactly
    looped = SketchCVAE(latent=4, num_samples=3, hidden=4)
    looped.load_state_dict(cvae.state_dict())
    looped.decoder[6].p = 0.0
    b, grid = 2, (8, 4, 8)
    sketch = torch.randint(0, 2, (b, 1, *grid)).float()
    gt = torch.randint(0, 2, (b, *grid))
    latent = (3, b, 4, 2, 1, 2)
    noise = {"eps": torch.randn(latent), "prior": torch.randn(latent)}
    cvae.batched = batched
    fast = cvae(sketch, gt, noise=noise)
    slow = ref.cvae_naive(looped, sketch, gt, noise=noise)
    for key in fast:
        torch.testing.assert_close(fast[key], slow[key], atol=1e-5, rtol=1e-5)
    for (name, x), (_, y) in zip(cvae.state_dict().items(), looped.state_dict().items()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=name)
    assert int(cvae.decoder[1].num_batches_tracked) == 6      # 2 kinds x 3 samples, like the loop


def test_chunked_batchnorm_equals_separate_calls():
    torch.manual_seed(0)
    bn = ChunkedBatchNorm3d(3)
    ref = nn.BatchNorm3d(3)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(4 * 2, 3, 3, 2, 5) * 3 + 1
    bn.chunks = 4
    out = bn(x)
    expected = torch.cat([ref(part) for part in x.chunk(4)])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_state_dict_round_trip():
    model = _model().eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = get_model("sketch_aware_ssc", **{**SMALL}).eval()
    other.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["semantic"], other(batch)["semantic"])


def test_missing_keys_are_clear_errors():
    model = _model()
    batch = _batch()
    del batch["sketch_gt"]
    with pytest.raises(ValueError, match="sketch_gt"):
        model(batch)
    model.eval()
    with torch.no_grad():
        model(batch)                                            # not needed at inference
    del batch["rgb"]
    with pytest.raises(ValueError, match="rgb"):
        model(batch)


def test_bf16_autocast_forward_runs():
    from torchssc.losses import get_loss

    model = _model()
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        losses = get_loss("sketch_aware")(out, batch)
    assert losses["total"].dtype == torch.float32 and torch.isfinite(losses["total"])
    losses["total"].backward()


def test_lite_variant_builds_and_trains_a_step():
    from torchssc.losses import get_loss

    torch.manual_seed(0)
    model = get_model("sketch_aware_ssc_lite")
    assert count_parameters(model.backbone) > 0               # trained, not frozen
    assert model.backbone.out_channels == 256
    batch = _batch(b=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = get_loss("sketch_aware")(model(batch), batch)["total"]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()


@pytest.mark.parametrize("training", [True, False])
def test_dropout_pointwise_equals_dropout_then_conv(training):
    """The fused channel dropout + 1x1x1 conv: same output, same random draws, same gradients."""
    torch.manual_seed(0)
    dropout, conv = torch.nn.Dropout3d(0.4).train(training), torch.nn.Conv3d(6, 3, 1)
    x = torch.randn(3, 6, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    conv = conv.double()
    weights = torch.randn(3, 3, 4, 3, 5, dtype=torch.float64)
    torch.manual_seed(11)
    ref = conv(dropout(x))
    ref_grads = torch.autograd.grad((ref * weights).sum(), [x, conv.weight, conv.bias])
    torch.manual_seed(11)
    got = dropout_pointwise(x, dropout, conv)
    got_grads = torch.autograd.grad((got * weights).sum(), [x, conv.weight, conv.bias])
    torch.testing.assert_close(got, ref)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b)
    if training:  # some planes dropped: the draws really were used
        assert (ref_grads[0].flatten(2).abs().sum(2) == 0).any()


@pytest.mark.parametrize("recompute", [True, False])
def test_fast_training_step_equals_naive_step_gradients_and_bn_statistics(recompute):
    """Training mode, dropout on, same seed: the fast path (sparse lift + fill, fused dropout +
    1x1x1 conv, recomputed activations or not, shared CVAE condition) gives the naive path's
    outputs, loss, parameter gradients and BatchNorm running statistics."""
    from torchssc.losses import get_loss

    results = []
    for naive in (False, True):
        model = _model(freeze_backbone=False, recompute_activations=recompute)
        model.cvae_batched = False
        batch = _batch()
        torch.manual_seed(123)
        out = ref.sketch_aware_naive(model, batch) if naive else model(batch)
        loss = get_loss("sketch_aware")(out, batch)["total"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((out, loss.detach(), grads, model.state_dict()))
    (fast, loss_f, grad_f, state_f), (naive, loss_n, grad_n, state_n) = results
    for key in naive:
        torch.testing.assert_close(fast[key], naive[key], atol=1e-5, rtol=1e-4, msg=key)
    torch.testing.assert_close(loss_f, loss_n, atol=1e-6, rtol=1e-5)
    for name in grad_n:  # float32 sums in another order: compare whole tensors (norms); the
        # biases of convs followed by BatchNorm have a zero gradient in exact maths (~1e-7 here)
        diff = float((grad_f[name] - grad_n[name]).norm())
        assert diff <= 2e-3 * float(grad_n[name].norm()) + 1e-5, (name, diff)
    for name in state_n:  # running means/variances updated once per step, not twice
        torch.testing.assert_close(state_f[name], state_n[name], atol=1e-6, rtol=1e-5, msg=name)
    tracked = [v for k, v in state_f.items() if k.endswith("stage1.stem.1.num_batches_tracked")]
    assert tracked and int(tracked[0]) == 1


def test_recompute_keeps_batchnorm_statistics_and_dropout_draws():
    from torchssc.models.recompute import recompute

    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Dropout3d(0.5))
    twin = copy.deepcopy(block)
    x = torch.randn(3, 2, 4, 5, 3, requires_grad=True)
    torch.manual_seed(1)
    y = recompute(block, block, x)
    y.pow(2).sum().backward()
    torch.manual_seed(1)
    x2 = x.detach().clone().requires_grad_(True)
    y2 = twin(x2)
    y2.pow(2).sum().backward()
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(block[1].running_mean, twin[1].running_mean)
    torch.testing.assert_close(block[1].running_var, twin[1].running_var)
    assert int(block[1].num_batches_tracked) == int(twin[1].num_batches_tracked) == 1
    assert block[1].momentum == 0.1
