"""SketchAwareSSC 2D backbones: output stride 16, key names, loud weight loading."""

import pytest
import torch

from torchssc.models.backbones import (
    DeepStemResNet50,
    build_backbone,
    load_backbone_weights,
)
from torchssc.models.sketch_aware import count_parameters


def _original_style_state(net):
    """A state dict keyed like ``resnet50-imagenet.pth`` users have: some BN keys carry the
    ``.bn.`` infix the original loader strips, an ImageNet classifier, and no BN counters."""
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("layer1.0.bn1."):
            key = key.replace("layer1.0.bn1.", "layer1.0.bn.bn1.")   # '.bn.' -> '.' restores it
        state[key] = value.clone()
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    return state


def test_deep_stem_keys_count_and_output_stride():
    net = DeepStemResNet50()
    keys = set(net.state_dict())
    for key in ("conv1.weight", "bn1.weight", "conv2.weight", "bn2.running_mean", "conv3.weight",
                "bn3.bias", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight",
                "layer4.2.conv3.weight", "layer3.5.bn2.running_var"):
        assert key in keys
    assert count_parameters(net) == 23_631_808
    assert [b.conv2.dilation[0] for b in net.layer4] == [2, 4, 8]
    assert all(b.conv2.stride == (1, 1) for b in net.layer4)
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 96)).shape == (1, 2048, 4, 6)


@pytest.mark.parametrize("name, channels", [("resnet50", 2048), ("resnet18", 256)])
def test_torchvision_backbones_output_stride_16(name, channels):
    net, report = build_backbone(name)
    assert report is None and net.out_channels == channels
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 96)).shape == (1, channels, 4, 6)


def test_original_file_loads_after_bn_rename(tmp_path):
    torch.manual_seed(0)
    source = DeepStemResNet50()
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(_original_style_state(source), path)
    net, report = build_backbone("resnet50_deepstem", weights=path, strict=True)
    assert report.ok and report.missing == [] and report.unexpected == []
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    for key, value in source.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    torch.manual_seed(0)
    state = _original_style_state(DeepStemResNet50())
    del state["layer2.1.conv2.weight"]
    state["layer9.extra"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="missing"):
        report = load_backbone_weights(DeepStemResNet50(), path, rename=lambda k: k.replace(".bn.", "."))
    assert report.missing == ["layer2.1.conv2.weight"]
    assert report.unexpected == ["layer9.extra"]
    assert not report.ok
    with pytest.raises(ValueError, match="layer2.1.conv2.weight"):
        build_backbone("resnet50_deepstem", weights=path, strict=True)


def test_torchvision_file_and_missing_file(tmp_path):
    torch.manual_seed(0)
    import torchvision

    full = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(full.state_dict(), path)
    net, report = build_backbone("resnet18", weights=path, strict=True)
    assert report.ok
    assert any(k.startswith("layer4.") for k in report.ignored) and "fc.weight" in report.ignored
    assert torch.equal(net.layer3[1].conv2.weight, full.layer3[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_backbone("resnet50", weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")


def test_model_exposes_backbone_report(tmp_path):
    from torchssc.models import get_model

    torch.manual_seed(0)
    import torchvision

    path = tmp_path / "r18.pth"
    state = torchvision.models.resnet18().state_dict()
    state.pop("conv1.weight")
    torch.save(state, path)
    with pytest.warns(UserWarning):
        model = get_model("sketch_aware_ssc_lite", backbone_weights=str(path))
    assert model.backbone_report.missing == ["conv1.weight"]
