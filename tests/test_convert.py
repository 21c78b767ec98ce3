"""Importers on state dicts built to the original repositories' key layouts (tests/fixtures/original-keys)."""

import pytest
import torch
import torchvision

from personlab.models import load_model
from personlab.models.convert import (
    CheckpointMismatch,
    import_bot,
    import_ft_net,
    main,
    read_state_dict,
    resnet_depth,
)

@pytest.fixture(scope="module")
def bot_state(original_state):
    return original_state("bot_baseline")


@pytest.fixture(scope="module")
def teacher_state(original_state):
    return original_state("dgnet_teacher")


def test_bot_import_carries_every_tensor(bot_state):
    model, kwargs = import_bot(bot_state)
    assert kwargs == {"num_classes": 751, "depth": 50, "last_stride": 1, "stem_relu": False, "neck": "bnneck",
                      "neck_feat": "after"}
    ours = model.state_dict()
    assert len(ours) == len(bot_state) == 324
    for key, value in bot_state.items():
        our_key = "backbone." + key[len("base."):] if key.startswith("base.") else key
        assert torch.equal(ours[our_key], value), key


def test_ft_net_import_drops_fc_and_carries_the_rest(teacher_state):
    model, kwargs = import_ft_net(teacher_state)
    assert kwargs == {"num_classes": 751, "depth": 50, "stride": 2, "linear": 512}
    ours = model.state_dict()
    renames = {"model.": "backbone.", "classifier.add_block.": "add_block.", "classifier.classifier.0.": "classifier."}
    carried = [k for k in teacher_state if not k.startswith("model.fc.")]
    assert len(carried) == len(ours) == 327
    for key in carried:
        prefix = next(p for p in renames if key.startswith(p))
        assert torch.equal(ours[renames[prefix] + key[len(prefix):]], teacher_state[key]), key


@pytest.mark.parametrize("kind", ["bot", "ft_net"])
def test_missing_and_unexpected_keys_are_listed(kind, bot_state, teacher_state):
    state, importer = (bot_state, import_bot) if kind == "bot" else (teacher_state, import_ft_net)
    prefix = "base." if kind == "bot" else "model."
    missing = dict(state)
    del missing[f"{prefix}layer3.2.bn2.running_var"]
    with pytest.raises(CheckpointMismatch, match=rf"missing keys \(1\): {prefix}layer3\.2\.bn2\.running_var"):
        importer(missing)
    extra = dict(state)
    extra[f"{prefix}layer4.0.se.fc.weight"] = torch.zeros(3)
    extra["head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatch) as info:
        importer(extra)
    listed = sorted(["head.weight", f"{prefix}layer4.0.se.fc.weight"])
    assert f"unexpected keys (2): {listed[0]}, {listed[1]}" in str(info.value)
    wrong = dict(state)
    wrong[f"{prefix}layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointMismatch, match=rf"shape mismatches \(1\): {prefix}layer1\.0\.conv1\.weight"):
        importer(wrong)


def test_depth_inference_on_torchvision_layouts():
    for depth in (18, 34, 50):
        state = getattr(torchvision.models, f"resnet{depth}")().state_dict()
        assert resnet_depth({f"model.{k}": v for k, v in state.items()}, "model.", "t") == depth
    with pytest.raises(CheckpointMismatch, match="no ResNet under 'base.'"):
        resnet_depth({"base.layer1.0.conv1.weight": torch.zeros(1)}, "base.", "t")


def test_cli_writes_an_evaluable_model(tmp_path, teacher_state):
    src = tmp_path / "net_last.pth"
    torch.save({f"module.{k}": v for k, v in teacher_state.items()}, src)  # DataParallel prefix is stripped
    assert main(["ft_net", str(src), str(tmp_path / "teacher"), "--last-stride", "1"]) == 0
    model, meta = load_model(tmp_path / "teacher")
    assert meta["arch"] == "ft_net" and meta["arch_kwargs"]["stride"] == 1
    assert meta["embedding_parts"] == [512] and meta["input_size"] == [256, 128]
    assert meta["interpolation"] == "bicubic"
    assert model.backbone.layer4[0].conv2.stride == (1, 1)
    assert torch.equal(model.classifier.weight, teacher_state["classifier.classifier.0.weight"])


def test_cli_reports_mismatch_without_writing(tmp_path, bot_state, capsys):
    state = dict(bot_state)
    del state["classifier.weight"]
    src = tmp_path / "bot.pth"
    torch.save(state, src)
    assert main(["bot", str(src), str(tmp_path / "out")]) == 2
    assert "classifier.weight" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pickled_module_is_refused_with_extraction_help(tmp_path):
    src = tmp_path / "resnet50_model_120.pth"
    torch.save(torch.nn.Linear(2, 2), src)
    with pytest.raises(ValueError, match="state_dict") as info:
        read_state_dict(src)
    assert "resnet50_model_120_state.pth" in str(info.value) and "weights_only=False" in str(info.value)
    torch.save({"state": {}, "param_groups": []}, tmp_path / "optimizer.pth")
    with pytest.raises(ValueError, match="optimizer file"):
        read_state_dict(tmp_path / "optimizer.pth")


def test_training_checkpoint_is_unwrapped_from_state_dict(tmp_path):
    weights = {"module.conv.weight": torch.arange(6.0).reshape(2, 3), "module.conv.bias": torch.ones(2)}
    torch.save({"epoch": 7, "perf": 0.5, "state_dict": weights}, tmp_path / "checkpoint.pth.tar")
    state = read_state_dict(tmp_path / "checkpoint.pth.tar")
    assert sorted(state) == ["conv.bias", "conv.weight"]
    assert torch.equal(state["conv.weight"], weights["module.conv.weight"])
    torch.save({"epoch": 7, "state_dict": {"conv.weight": "not a tensor"}}, tmp_path / "bad.pth.tar")
    with pytest.raises(ValueError, match="nor one under 'state_dict'"):
        read_state_dict(tmp_path / "bad.pth.tar")
