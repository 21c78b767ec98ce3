"""Backbone switches, the BoT and ft_net heads, pretrained loading and BoT's LR schedule."""

import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

from personlab.models import build
from personlab.models.bot import Baseline, warmup_multistep_factor
from personlab.models.state import CheckpointMismatch
from personlab.models.ide import FtNet
from personlab.models.resnet import PretrainedWeightsError, ResNet, imagenet_weights_file, load_pretrained


@pytest.mark.parametrize("depth", [18, 50])
def test_last_stride_one_gives_16x8_map(depth):
    x = torch.randn(1, 3, 256, 128)
    strided, unstrided = ResNet(depth, last_stride=2).eval(), ResNet(depth, last_stride=1).eval()
    with torch.no_grad():
        assert strided(x).shape[-2:] == (8, 4)
        assert unstrided(x).shape[-2:] == (16, 8)
    first = unstrided.layer4[0]
    conv = first.conv2 if depth == 50 else first.conv1
    assert conv.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert unstrided.out_channels == (2048 if depth == 50 else 512)


def test_stem_relu_flag():
    torch.manual_seed(0)
    with_relu, without = ResNet(18, stem_relu=True).eval(), ResNet(18, stem_relu=False).eval()
    without.load_state_dict(with_relu.state_dict())
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        stem = without.bn1(without.conv1(x))
        assert (stem < 0).any()

        def rest(h):
            return without.layer4(without.layer3(without.layer2(without.layer1(without.maxpool(h)))))

        assert torch.allclose(without(x), rest(stem))
        assert torch.allclose(with_relu(x), rest(F.relu(stem)))
        assert not torch.allclose(with_relu(x), without(x))


def test_bot_parameter_count_and_frozen_bias():
    model = Baseline(num_classes=751, depth=50)
    assert sum(p.numel() for p in model.parameters()) == 25_050_176
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 25_050_176 - 2048
    assert not model.bottleneck.bias.requires_grad and model.classifier.bias is None
    assert len(model.state_dict()) == 324


def test_bot_train_and_eval_outputs():
    torch.manual_seed(0)
    model = Baseline(num_classes=5, depth=18, last_stride=1)
    x = torch.randn(4, 3, 64, 32)
    logits, feat = model.train()(x)
    assert logits.shape == (4, 5) and feat.shape == (4, 512)
    model.eval()
    with torch.no_grad():
        pooled = model.backbone(x).mean(dim=(2, 3))
        bn = model.bottleneck
        after = (pooled - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        assert torch.allclose(model(x), after, atol=1e-5)
        model.neck_feat = "before"
        assert torch.allclose(model(x), pooled, atol=1e-5)


def test_bot_without_neck():
    model = Baseline(num_classes=3, depth=18, neck="no")
    assert model.bottleneck is None and model.classifier.bias is not None
    logits, feat = model.train()(torch.randn(2, 3, 64, 32))
    assert logits.shape == (2, 3) and feat.shape == (2, 512)


def test_ft_net_layout_and_outputs():
    torch.manual_seed(0)
    model = FtNet(num_classes=7, depth=18, stride=1, linear=32)
    assert not any(k.startswith("backbone.fc") for k in model.state_dict())
    x = torch.randn(3, 3, 64, 32)
    assert model.train()(x).shape == (3, 7)
    model.eval()
    with torch.no_grad():
        emb = model(x)
        assert emb.shape == (3, 32)
        assert torch.equal(emb, model(x))  # dropout is off in eval
        assert torch.allclose(model.classifier(emb), F.linear(emb, model.classifier.weight, model.classifier.bias))
    assert model.classifier.weight.std().item() == pytest.approx(0.001, rel=0.3)


def test_registry_builds_both():
    assert isinstance(build("bot", {"num_classes": 3, "depth": 18}), Baseline)
    assert isinstance(build("ft_net", {"num_classes": 3, "depth": 18}), FtNet)


def test_pretrained_from_file(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()  # a torchvision file, fc included
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    backbone = ResNet(18)
    load_pretrained(backbone, str(tmp_path / "r18.pth"))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key])

    broken = {k: v for k, v in reference.state_dict().items() if k != "layer2.0.bn1.weight"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatch, match="layer2.0.bn1.weight"):
        load_pretrained(ResNet(18), str(tmp_path / "broken.pth"))
    with pytest.raises(FileNotFoundError, match="imagnet"):
        load_pretrained(ResNet(18), "imagnet")


def test_imagenet_offline_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    expected = tmp_path / "checkpoints" / "resnet50-0676ba61.pth"
    assert imagenet_weights_file(50) == expected
    with pytest.raises(PretrainedWeightsError, match="IMAGENET1K_V1") as info:
        load_pretrained(ResNet(50), "imagenet")
    assert str(expected) in str(info.value)


@pytest.mark.parametrize(
    "epoch, lr",
    [(0, 3.5e-4 * 0.01), (5, 3.5e-4 * (0.01 * 0.5 + 0.5)), (10, 3.5e-4), (39, 3.5e-4), (40, 3.5e-5), (70, 3.5e-6)],
)
def test_warmup_multistep_lr(epoch, lr):
    def factor(e):
        return warmup_multistep_factor(e, milestones=(40, 70), gamma=0.1, warmup_factor=0.01, warmup_epochs=10)

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3.5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for _ in range(epoch):  # stepped once per epoch
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-9)
