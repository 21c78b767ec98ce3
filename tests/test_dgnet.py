"""DG-Net: module sizes against the paper's, the norms and losses against their formulas worked by hand, the
warm-up schedule against a re-enactment of the original's in-place updates, one training iteration on CPU
(which modules each loss reaches), and the importers on state dicts built to the original key layouts."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from personlab.data.loader import ImageStore
from personlab.dgnet_train import (
    DGNetTask,
    frozen_forward,
    init_appearance,
    swap_grid,
    teacher_kl,
    warmed_weight,
    weights_at,
)
from personlab.engine import Context, fit
from personlab.losses import lsgan_discriminator_loss, lsgan_generator_loss, reconstruction_loss
from personlab.models import load_model
from personlab.models.convert import (
    CheckpointMismatch,
    export_dgnet,
    import_dgnet_dis,
    import_dgnet_gen,
    import_dgnet_id,
    main as convert_main,
    read_dgnet_file,
)
from personlab.models.dgnet import (
    AdaIN,
    AppearanceEncoder,
    ClassBlock,
    Generator,
    LayerNorm,
    MultiScaleDiscriminator,
    to_gray,
)
from personlab.models.ide import FtNet
from personlab.params import (
    DGNetAppearance,
    DGNetDiscriminator,
    DGNetGenerator,
    Common,
    DGNetParams,
    Erasing,
    ParamsError,
    TrainLoop,
    parse,
)



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: thread start-up and spinning cost more than the maths (and the CI box is
    shared), so this module runs on one thread and restores the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------- sizes


def test_parameter_counts_match_the_paper_configuration():
    # spec reid.md §4.1, instantiated from DG-Net's configs/latest.yaml
    gen = Generator()
    assert count(gen.structure_encoder) == 380_544
    assert count(gen.decoder) == 1_455_555
    assert count(gen.mlp_scale) + count(gen.mlp_shift) == 11_544_576
    assert count(gen) == 13_380_675
    dis = MultiScaleDiscriminator()
    assert [count(s) for s in dis.scales] == [341_857] * 3
    assert count(dis) == 1_025_571
    # ft_netAB has 28,427,782 including the unused ImageNet fc (2048x1000 + 1000), which ours does not build
    assert count(AppearanceEncoder(751)) == 28_427_782 - (2048 * 1000 + 1000)


def test_shapes_at_256x128():
    gen = Generator()
    x = torch.randn(2, 3, 256, 128)
    s = gen.encode(to_gray(x))
    assert s.shape == (2, 128, 64, 32)
    y = gen.decode(s, torch.randn(2, 8192))
    assert y.shape == (2, 3, 256, 128)
    outs = MultiScaleDiscriminator()(y)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 64, 32), (2, 1, 32, 16), (2, 1, 16, 8)]


def test_gray_is_the_mean_of_normalised_channels():
    x = torch.tensor([[[[3.0]], [[-1.0]], [[1.0]]]])
    assert to_gray(x).item() == pytest.approx(1.0)


class FixedMap(nn.Module):
    """Stands in for the backbone: a known layer-4 map whose value encodes (channel, row)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fmap = (torch.arange(channels)[:, None] * 10 + torch.arange(4)[None, :]).float()[None, :, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fmap.expand(len(x), -1, -1, 2)


def test_code_is_channel_major_and_mlp_pairs_read_channel_groups():
    channels = 8
    enc = AppearanceEncoder(3, depth=18, bottleneck=4)
    enc.backbone = FixedMap(channels)
    enc.primary, enc.fine = ClassBlock(channels, 3, 0.5, 4), ClassBlock(channels, 3, 0.75, 4)
    code = enc.eval()(torch.zeros(1, 3, 32, 16), outputs="train").code
    # channel-major: index = channel * 4 + stripe, value = 10 * channel + stripe
    assert code[0].tolist() == [10.0 * c + s for c in range(channels) for s in range(4)]
    gen = Generator(code_channels=channels, dim=2, mlp_dim=4, dilations=(1, 1, 1))
    seen = {}
    gen.mlp_scale[1].fc1.register_forward_pre_hook(lambda m, args: seen.update(input=args[0].clone()))
    gen.decode(gen.encode(torch.zeros(1, 1, 32, 16)), code)
    # pair 1 reads channels 2 and 3 (of 8) in all four stripes, not stripe 1
    assert seen["input"][0].tolist() == [10.0 * c + s for c in (2, 3) for s in range(4)]


# ------------------------------------------------------------------------------------------- norms


def test_adain_matches_its_formula():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [1.0, -1.0]]]])  # (1, 2, 2, 2)
    scale, shift = torch.tensor([[2.0, 0.5]]), torch.tensor([[1.0, -3.0]])
    out = AdaIN(2)(x, scale, shift)
    for c in range(2):
        values = x[0, c].flatten().tolist()
        mean = sum(values) / 4
        var = sum((v - mean) ** 2 for v in values) / 4  # biased, as instance norm
        for i, v in enumerate(values):
            expected = (v - mean) / math.sqrt(var + 1e-5) * scale[0, c].item() + shift[0, c].item()
            assert out[0, c].flatten()[i].item() == pytest.approx(expected, abs=1e-5)


def test_layernorm_uses_unbiased_std_with_eps_outside_the_root():
    ln = LayerNorm(2, eps=0.1)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([2.0, 0.5]))
        ln.bias.copy_(torch.tensor([1.0, 0.0]))
    x = torch.tensor([[[[1.0, 3.0]], [[5.0, 7.0]]]])  # one sample: values 1, 3, 5, 7
    # mean 4, unbiased std sqrt((9 + 1 + 1 + 9) / 3) = sqrt(20/3)
    std = math.sqrt(20 / 3)
    expected = [(1 - 4) / (std + 0.1) * 2 + 1, (3 - 4) / (std + 0.1) * 2 + 1, (5 - 4) / (std + 0.1) * 0.5,
                (7 - 4) / (std + 0.1) * 0.5]
    assert ln(x).flatten().tolist() == pytest.approx(expected, abs=1e-6)
    # ... which is not torch's LayerNorm (biased variance, eps inside the root)
    torch_ln = torch.nn.functional.layer_norm(x, x.shape[1:], eps=0.1).flatten()
    assert not torch.allclose(torch_ln, (ln(x).flatten() - torch.tensor([1.0, 1.0, 0.0, 0.0])) / torch.tensor([2, 2, 0.5, 0.5]))


def test_layernorm_scale_starts_uniform_in_unit_interval():
    w = LayerNorm(1000).weight
    assert 0 <= w.min().item() and w.max().item() <= 1 and 0.4 < w.mean().item() < 0.6


# ------------------------------------------------------------------------------------------- losses


class LinearScales(nn.Module):
    """A hand-analysable 'discriminator': scale s scores every pixel as c_s * x."""

    def __init__(self, factors: list[float]) -> None:
        super().__init__()
        self.factors = nn.Parameter(torch.tensor(factors))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [c * x for c in self.factors]


def test_lsgan_discriminator_loss_and_real_only_penalty_by_hand():
    real = torch.tensor([[[[1.0, 0.0]]], [[[2.0, -1.0]]]])  # (2, 1, 1, 2)
    fake = torch.tensor([[[[0.5, 0.5]]], [[[0.0, 1.0]]]])
    factors = [2.0, 0.5]
    loss, penalty = lsgan_discriminator_loss(LinearScales(factors), fake, real, r1_weight=0.01)
    r, f = real.flatten().tolist(), fake.flatten().tolist()
    expected_loss, expected_pen = 0.0, 0.0
    for c in factors:
        expected_loss += sum((c * v) ** 2 for v in f) / 4 + sum((c * v - 1) ** 2 for v in r) / 4
        # d(sum c*real)/d real = c at each of the 2 pixels of a sample: |grad|^2 = 2 c^2, mean over batch
        expected_pen += 0.01 * 2 * c * c
    assert penalty.item() == pytest.approx(expected_pen, rel=1e-6)
    assert loss.item() == pytest.approx(expected_loss + expected_pen, rel=1e-6)
    # the penalty is differentiable w.r.t. D (it trains D) and looks at real images only
    loss.backward()
    _, penalty_other_fake = lsgan_discriminator_loss(LinearScales(factors), fake * 7, real, r1_weight=0.01)
    assert penalty_other_fake.item() == pytest.approx(expected_pen, rel=1e-6)


def test_lsgan_generator_loss_has_factor_two():
    scores = [torch.tensor([0.0, 2.0]), torch.tensor([[1.0, 3.0]])]
    # 2 * mean(1, 1) + 2 * mean(0, 4) = 2 + 4
    assert lsgan_generator_loss(scores).item() == pytest.approx(6.0)


def test_reconstruction_loss_is_l1_with_detached_target():
    out = torch.tensor([1.0, -2.0], requires_grad=True)
    target = torch.tensor([0.0, 1.0], requires_grad=True)
    loss = reconstruction_loss(out, target)
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert target.grad is None and out.grad.tolist() == [0.5, -0.5]


def test_teacher_kl_by_hand():
    student = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    target = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.6, 0.2]])
    kl = 0.5 * math.log(0.5 / 0.5) + 0.5 * math.log(0.5 / 0.25)  # 0 * log 0 = 0
    kl += 0.2 * math.log(0.2 / 0.1) * 2 + 0.6 * math.log(0.6 / 0.8)
    assert teacher_kl(student, target).item() == pytest.approx(kl / 2, rel=1e-6)


# ------------------------------------------------------------------------------------------- warm-up


def original_schedule(p: DGNetParams, iterations: int) -> list[dict]:
    """Re-enact DG-Net's gen_update: gates read before, weights mutated in place after the check."""
    hp = {"recon_f_w": p.recon_f_w, "recon_s_w": p.recon_s_w, "recon_x_cyc_w": p.recon_x_cyc_w, "teacher_w": p.teacher_w}
    rows = []
    for it in range(iterations):
        gates = {k: hp[k] > 0 for k in hp}
        if it > p.warm_iter:
            hp["recon_f_w"] = min(hp["recon_f_w"] + p.warm_scale, p.max_w)
            hp["recon_s_w"] = min(hp["recon_s_w"] + p.warm_scale, p.max_w)
            hp["recon_x_cyc_w"] = min(hp["recon_x_cyc_w"] + p.warm_scale, p.max_cyc_w)
        if it > p.warm_teacher_iter:
            hp["teacher_w"] = min(hp["teacher_w"] + p.warm_scale, p.max_teacher_w)
        rows.append({"gates": gates, "weights": dict(hp)})
    return rows


def test_warmed_weight_at_chosen_iterations():
    # start 0, cap 1, warm after 10, +0.25 per iteration
    assert [warmed_weight(0.0, 1.0, 10, 0.25, t) for t in (0, 10, 11, 12, 13, 14, 50)] == [
        0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0,
    ]
    # the paper: teacher 0 -> 2 at 0.0005/iteration after 30000: 1.0 at 32000, capped 2 from 34000
    assert warmed_weight(0.0, 2.0, 30000, 0.0005, 32000) == pytest.approx(1.0)
    assert warmed_weight(0.0, 2.0, 30000, 0.0005, 34000) == pytest.approx(2.0)
    assert warmed_weight(0.0, 2.0, 30000, 0.0005, 90000) == pytest.approx(2.0)


def test_weights_follow_the_originals_in_place_schedule():
    p = DGNetParams(warm_iter=3, warm_teacher_iter=5, warm_scale=0.3, teacher_w=0.0, recon_x_cyc_w=0.1,
                    max_cyc_w=0.7)
    for it, row in enumerate(original_schedule(p, 16)):
        w = weights_at(p, it)
        assert (w.recon_f_on, w.recon_s_on, w.cycle_on, w.teacher_on) == (
            row["gates"]["recon_f_w"], row["gates"]["recon_s_w"], row["gates"]["recon_x_cyc_w"], row["gates"]["teacher_w"],
        ), it
        assert w.recon_f == pytest.approx(row["weights"]["recon_f_w"])
        assert w.cycle == pytest.approx(row["weights"]["recon_x_cyc_w"])
        assert w.teacher == pytest.approx(row["weights"]["teacher_w"])
    # the first warm iteration of a term starting at 0 has a weight but is still skipped (DG-Net #47)
    first = weights_at(p, 6)
    assert first.teacher == pytest.approx(0.3) and not first.teacher_on and weights_at(p, 7).teacher_on


# ------------------------------------------------------------------------------------------- frozen passes


def test_frozen_forward_equals_a_deepcopy_with_batch_stats_and_leaves_the_module_alone():
    torch.manual_seed(0)
    enc = AppearanceEncoder(5, depth=18).train()
    x = torch.randn(4, 3, 32, 16, requires_grad=True)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    out = frozen_forward(enc, x, outputs="train", batch_stats=True)
    twin = copy.deepcopy(enc).eval()
    for m in twin.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    ref = twin(x, outputs="train")
    assert torch.allclose(out.logits_primary, ref.logits_primary, atol=1e-5)
    assert torch.allclose(out.code, ref.code, atol=1e-5)
    out.logits_primary.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # running stats untouched
    assert enc.training and enc.primary.add_block[2].training  # modes restored


# ------------------------------------------------------------------------------------------- one iteration


class RecordingContext(Context):
    """Records, at every optimizer step, which modules hold a non-zero gradient."""

    def step(self, *optimizers, clip_grad_norm=None):
        seen = {}
        for name, module in self.raw_modules.items():
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            seen[name] = bool(grads) and any(bool(g.abs().sum() > 0) for g in grads)
        self.record.append(seen)
        super().step(*optimizers, clip_grad_norm=clip_grad_norm)


def tiny_params(**overrides) -> DGNetParams:
    base = DGNetParams(
        generator=DGNetGenerator(dim=2, mlp_dim=8, dilations=(1, 1, 1)),
        discriminator=DGNetDiscriminator(dim=4, num_layers=1, num_res=1, num_scales=2),
        appearance=DGNetAppearance(depth=18, bottleneck=16, init="none"),
        input=dataclasses.replace(DGNetParams().input, size=(32, 16), batch_size=2, pad=2,
                                  erasing=Erasing(p=0.5, fill="zero")),
    )
    return dataclasses.replace(base, **overrides)


def tiny_store(classes: int = 3) -> ImageStore:
    g = torch.Generator().manual_seed(0)
    return ImageStore(
        images=torch.randint(0, 256, (12, 3, 32, 16), dtype=torch.uint8, generator=g),
        labels=torch.arange(12) % classes,
        camids=torch.zeros(12, dtype=torch.int64),
    )


def run_iteration(p: DGNetParams, iteration: int = 0, teacher: bool = True):
    torch.manual_seed(0)
    classes = 3
    t = FtNet(classes, depth=18, linear=16) if teacher else None
    task = DGNetTask(p, tiny_store(classes), classes, t, seed=0)
    ctx = RecordingContext(stage="dgnet", device=torch.device("cpu"), seed=0, iteration=iteration)
    ctx.record = []
    ctx.raw_modules = task.build_modules(ctx)
    ctx.modules = dict(ctx.raw_modules)
    ctx.optimizers = task.build_optimizers(ctx)
    ctx.schedulers = task.build_schedulers(ctx)
    for m in ctx.raw_modules.values():
        m.train()
    batch = next(iter(task.batches(0, ctx)))
    terms = task.train_step(batch, ctx)
    return terms, ctx.record


GENERATION_ONLY = dict(id_w=0.0, pid_w=0.0, recon_id_w=0.0, teacher_w=0.0)


def test_one_full_iteration_is_finite_with_every_term_on():
    p = tiny_params(recon_f_w=1.0, recon_s_w=1.0, recon_x_cyc_w=1.0, teacher_w=1.0)
    terms, record = run_iteration(p)
    assert set(terms) == {"total", "d", "r1", "gan", "recon_x", "recon_xp", "recon_f", "recon_s", "cycle", "id",
                          "pid", "recon_id", "teacher"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert all(terms[k] > 0 for k in ("recon_f", "recon_s", "cycle", "teacher", "r1"))
    # D update: D only; G + E_a update: both, and D's parameters take no gradient
    assert record[0] == {"appearance": False, "generator": False, "discriminator": True}
    assert record[1] == {"appearance": True, "generator": True, "discriminator": False}


def test_generation_losses_never_reach_the_appearance_encoder_with_detach():
    p = tiny_params(recon_f_w=1.0, recon_s_w=1.0, recon_x_cyc_w=1.0, **GENERATION_ONLY)
    _, record = run_iteration(p)
    assert record[1] == {"appearance": False, "generator": True, "discriminator": False}


def test_without_detach_generation_losses_train_the_appearance_encoder():
    p = tiny_params(appearance=dataclasses.replace(tiny_params().appearance, detach_code=False), **GENERATION_ONLY)
    _, record = run_iteration(p)
    assert record[1]["appearance"] and record[1]["generator"]


def test_identity_of_generated_images_trains_only_the_generator():
    # L_recon_id runs a frozen E_a on x_ba / x_ab: gradient to G through the images, none to E_a
    p = tiny_params(gan_w=0.0, recon_x_w=0.0, recon_xp_w=0.0, id_w=0.0, pid_w=0.0, recon_id_w=1.0, teacher_w=0.0)
    _, record = run_iteration(p)
    assert record[1] == {"appearance": False, "generator": True, "discriminator": False}


def test_teacher_term_trains_only_the_appearance_encoder():
    p = tiny_params(gan_w=0.0, recon_x_w=0.0, recon_xp_w=0.0, id_w=0.0, pid_w=0.0, recon_id_w=0.0, teacher_w=1.0)
    terms, record = run_iteration(p)
    assert terms["teacher"] > 0
    assert record[1] == {"appearance": True, "generator": False, "discriminator": False}


def test_teacher_term_waits_for_its_warm_up():
    p = tiny_params(teacher_w=0.0, warm_teacher_iter=10, warm_scale=0.5)
    assert run_iteration(p, iteration=11)[0]["teacher"] == 0  # first warm iteration: still skipped
    assert run_iteration(p, iteration=12)[0]["teacher"] > 0


def fit_tiny(root: Path, epochs: int, pictures: bool = False) -> dict[str, torch.Tensor]:
    # 12 images, batches of 4: 3 iterations per epoch; the teacher term is on from iteration 5 (epoch 2)
    p = tiny_params(warm_iter=1, warm_teacher_iter=3, warm_scale=0.5, train=TrainLoop(epochs=epochs, progress=False))
    p = dataclasses.replace(p, input=dataclasses.replace(p.input, batch_size=4))
    torch.manual_seed(1)
    teacher = FtNet(3, depth=18, linear=16)
    store = tiny_store()
    shown = store.images[:2].float().div(255) if pictures else None
    task = DGNetTask(p, store, 3, teacher, seed=0, pictures=shown, picture_path=root / "swap.png")
    result = fit(task, stage="dgnet", common=Common(seed=0, device="cpu"), loop=p.train, digest="d", root=root)
    return {f"{n}.{k}": v.clone() for n, m in result.modules.items() for k, v in m.state_dict().items()}


def test_resume_continues_the_warm_up_bit_exactly(tmp_path, capsys):
    whole = fit_tiny(tmp_path / "a", epochs=2, pictures=True)
    assert (tmp_path / "a" / "swap.png").is_file()  # written at the checkpoint epochs
    fit_tiny(tmp_path / "b", epochs=1)
    resumed = fit_tiny(tmp_path / "b", epochs=2)
    assert "resuming after epoch 1" in capsys.readouterr().err
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    summary = json.loads((tmp_path / "b" / "metrics" / "train" / "dgnet.json").read_text())
    assert summary["iterations"] == 6 and summary["loss"]["teacher"] > 0


# ------------------------------------------------------------------------------------------- init, pictures


def test_init_from_teacher_copies_backbone_and_heads():
    teacher = FtNet(4, depth=18, linear=16)
    enc = AppearanceEncoder(4, depth=18, bottleneck=16)
    init_appearance(enc, "teacher", teacher)
    assert torch.equal(enc.backbone.layer3[0].conv1.weight, teacher.backbone.layer3[0].conv1.weight)
    assert torch.equal(enc.fine.classifier.weight, teacher.classifier.weight)
    with pytest.raises(ValueError, match="bottleneck 16.*bottleneck 32"):
        init_appearance(AppearanceEncoder(4, depth=18, bottleneck=32), "teacher", teacher)


def test_swap_grid_rows_structure_columns_appearance():
    torch.manual_seed(0)
    enc = AppearanceEncoder(3, depth=18, bottleneck=8).eval()
    gen = Generator(512, dim=2, mlp_dim=8, dilations=(1, 1, 1)).eval()
    images = torch.randn(3, 3, 32, 16)
    grid = swap_grid(gen, enc, images)
    assert grid.shape == (4, 4, 3, 32, 16)
    assert torch.equal(grid[0, 1:], images) and torch.equal(grid[1:, 0], images)
    codes = enc(images, outputs="train").code
    with torch.no_grad():
        expected = gen.decode(gen.encode(to_gray(images[2:3])), codes[0:1])
    assert torch.allclose(grid[3, 1], expected[0], atol=1e-5)  # row 3 = structure of image 2, column 1 = look of 0


def test_params_refuse_a_loader_without_positives():
    with pytest.raises(ParamsError, match="dgnet.input.positives"):
        parse(DGNetParams, {"input": {"positives": False}}, "dgnet")


def test_params_refuse_dilations_wider_than_the_structure_code():
    # 64x32 input -> 16x8 structure code: a dilation of 9 cannot be reflection-padded
    small = {"size": [64, 32], "sampler": "shuffle", "positives": True}
    with pytest.raises(ParamsError, match="dgnet.generator.dilations"):
        parse(DGNetParams, {"input": small}, "dgnet")
    assert parse(DGNetParams, {"input": small, "generator": {"dilations": [1, 2, 3]}}, "dgnet")


# ------------------------------------------------------------------------------------------- importers


@pytest.mark.parametrize("name, importer", [("gen", import_dgnet_gen), ("dis", import_dgnet_dis)])
def test_gan_importers_round_trip(name, importer, original_state):
    state = original_state(f"dgnet_gan.{name}")
    model, kwargs = importer(state)
    back = export_dgnet(model)
    assert sorted(back) == sorted(state)
    dummies = {k for k in state if ".norm.running_" in k}  # AdaIN's unused buffers: written back as 0 / 1
    assert len(dummies) == (16 if name == "gen" else 0)
    for k in state:
        if k in dummies:
            assert torch.all(back[k] == (0 if k.endswith("mean") else 1))
        else:
            assert torch.equal(back[k], state[k]), k
    if name == "gen":
        assert kwargs == {"code_channels": 2048, "dim": 16, "mlp_dim": 512}
    else:
        assert kwargs == {"in_channels": 3, "dim": 32, "num_layers": 2, "num_res": 4, "num_scales": 3}


def test_generator_mapping_is_semantic(original_state):
    # the first AdaIN layer of residual block 2 is driven by mlp_w3 / mlp_b3 and lives at dec.model.1.model.2
    state = original_state("dgnet_gan.gen")
    model, _ = import_dgnet_gen(state)
    assert torch.equal(model.mlp_scale[2].fc1.weight, state["mlp_w3.model.0.fc.weight"])
    assert torch.equal(model.decoder.res_blocks[2].conv1.conv.weight, state["dec.model.1.model.2.model.0.conv.weight"])
    assert torch.equal(model.decoder.up_blocks[1].block.norm.weight, state["dec.model.5.norm.gamma"])
    assert torch.equal(model.structure_encoder.aspp.branch_d6[1].conv.bias, state["enc_content.model.5.conv12.1.conv.bias"])


def test_id_importer_round_trip_drops_only_imagenet_fc(original_state):
    state = original_state("dgnet_gan.id")
    model, kwargs = import_dgnet_id(state)
    assert kwargs == {"num_classes": 751, "depth": 50, "stride": 1, "bottleneck": 512}
    back = export_dgnet(model)
    assert sorted(set(state) - set(back)) == ["model.fc.bias", "model.fc.weight"]
    assert all(torch.equal(back[k], state[k]) for k in back)


@pytest.mark.parametrize("name, importer", [("gen", import_dgnet_gen), ("dis", import_dgnet_dis)])
def test_importers_list_missing_and_unexpected_keys(name, importer, original_state):
    state = original_state(f"dgnet_gan.{name}")
    victim = sorted(state)[len(state) // 2]
    del state[victim]
    state["nonlocal.gamma"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as err:
        importer(state)
    assert victim in str(err.value) and "nonlocal.gamma" in str(err.value)


def test_dgnet_file_wrapper_and_cli(tmp_path, original_state):
    state = original_state("dgnet_gan.id")
    path = tmp_path / "id_00100000.pt"
    torch.save({"a": state}, path)
    assert read_dgnet_file(path).keys() == state.keys()
    assert convert_main(["dgnet", str(path), str(tmp_path / "out"), "--input-size", "64", "32"]) == 0
    model, meta = load_model(tmp_path / "out")
    assert meta["arch"] == "dgnet" and meta["embedding_parts"] == [512, 512]
    emb = model.eval()(torch.randn(2, 3, 64, 32))
    assert emb.shape == (2, 1024)
    torch.save({"gen": {}, "id": {}, "dis": {}}, tmp_path / "optimizer.pt")
    with pytest.raises(ValueError, match="optimizer.pt"):
        read_dgnet_file(tmp_path / "optimizer.pt")
