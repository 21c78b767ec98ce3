"""DG-Net training as a :class:`personlab.engine.Task`: one iteration = a discriminator update, then one
generator + appearance-encoder update, in the original's order (spec ``reid.md`` §4.3–4.4).

Per iteration (``t`` = the 0-based global iteration, :attr:`Context.iteration`):

1. two independent shuffled batches ``a`` and ``b`` (loader streams 0 and 1), each image with a positive
   (another image of its identity); random-erased copies feed only the ID losses;
2. forward: structure codes ``s_a, s_b``; appearance codes and logits from ``E_a``; the swaps
   ``x_ba = G(s_b, f_a)``, ``x_ab = G(s_a, f_b)``; self-reconstructions; reconstructions from the positives'
   codes;
3. D update on ``(x_ba, x_a)`` and ``(x_ab, x_b)`` (LSGAN + gradient penalty on real images);
4. G + E_a update with every term of §4.4, one backward, then the Adam step of G and the SGD step of E_a.

Two of the original's per-iteration ``deepcopy`` s are replaced by :func:`frozen_forward`: a
``torch.func.functional_call`` with the live parameters detached (gradients flow to the *input* only) and
cloned buffers (so batch-statistics BN cannot move the live running statistics) — the same maths, no copy.

The warm-up weights are :func:`warmed_weight` of the iteration, not state mutated in place as in the
original; a resumed run therefore continues its warm-up where it stopped (the original restarts it, trap 26).
The learning-rate schedulers are stepped by the engine after each update while the original steps them
before, so the milestones are shifted by one to give the original's rate at every update.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from personlab.data.loader import ImageStore, ReidLoader, normalize, random_erasing
from personlab.engine import Context, Task
from personlab.losses import lsgan_discriminator_loss, lsgan_generator_loss, reconstruction_loss
from personlab.models.dgnet import AppearanceEncoder, Generator, MultiScaleDiscriminator, to_gray
from personlab.params import DGNetParams

__all__ = [
    "DGNetBatch",
    "DGNetTask",
    "LossWeights",
    "frozen_forward",
    "swap_grid",
    "teacher_probabilities",
    "warmed_weight",
    "weights_at",
]

# ---------------------------------------------------------------------------------------------- weights


def warmed_weight(start: float, cap: float, warm_iter: int, warm_scale: float, iteration: int) -> float:
    """A warmed-up loss weight at 0-based ``iteration``, as the original leaves it after that iteration's
    increment: ``start`` up to ``warm_iter``, then ``min(start + warm_scale·(iteration − warm_iter), cap)``."""
    if iteration <= warm_iter:
        return start
    return min(start + warm_scale * (iteration - warm_iter), cap)


@dataclass(frozen=True)
class LossWeights:
    """The warmed weights used at one iteration and whether each term is computed at all.

    The original tests ``weight > 0`` *before* that iteration's increment and multiplies by the weight
    *after* it, so at the first warm iteration a term that starts at 0 is still skipped (e.g. "teacher
    loss is 0" right after warm_teacher_iter, DG-Net #47).
    """

    recon_f: float
    recon_s: float
    cycle: float
    teacher: float
    recon_f_on: bool
    recon_s_on: bool
    cycle_on: bool
    teacher_on: bool


def weights_at(p: DGNetParams, iteration: int) -> LossWeights:
    """The warmed loss weights of ``iteration`` (0-based), a pure function of the params and the iteration."""

    def pair(start: float, cap: float, warm: int) -> tuple[float, bool]:
        now = warmed_weight(start, cap, warm, p.warm_scale, iteration)
        before = warmed_weight(start, cap, warm, p.warm_scale, iteration - 1)
        return now, before > 0

    recon_f, recon_f_on = pair(p.recon_f_w, p.max_w, p.warm_iter)
    recon_s, recon_s_on = pair(p.recon_s_w, p.max_w, p.warm_iter)
    cycle, cycle_on = pair(p.recon_x_cyc_w, p.max_cyc_w, p.warm_iter)
    teacher, teacher_on = pair(p.teacher_w, p.max_teacher_w, p.warm_teacher_iter)
    return LossWeights(recon_f, recon_s, cycle, teacher, recon_f_on, recon_s_on, cycle_on, teacher_on)


# ---------------------------------------------------------------------------------------------- frozen passes


@contextlib.contextmanager
def _modes(module: nn.Module, batch_stats: bool) -> Iterator[None]:
    """Eval mode (dropout off) with BatchNorm in train mode when ``batch_stats``; restores every flag after."""
    saved = [(m, m.training) for m in module.modules()]
    module.eval()
    if batch_stats:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def frozen_forward(module: nn.Module, *args, batch_stats: bool = False, **kwargs):
    """``module(*args, **kwargs)`` as the original's throw-away ``deepcopy`` in eval mode would compute it:
    parameters detached (gradients reach only the inputs), dropout off, BatchNorm on batch statistics when
    ``batch_stats`` (DG-Net's ``train_bn``). Buffers are cloned so running statistics of the live module are
    left untouched, as they were by the discarded copy."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    with _modes(module, batch_stats):
        return functional_call(module, {**params, **buffers}, args, kwargs)


def teacher_probabilities(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DG-Net's soft label (``teacher_style`` 0): the teacher's softmax averaged over the image and its
    horizontal flip. ``teacher`` is an ``ft_net`` in eval mode (its embedding), so logits are
    ``teacher.classifier(teacher(x))``; its BN layers are in train mode when ``train_bn``."""
    with torch.no_grad():
        p = F.softmax(teacher.classifier(teacher(x)).float(), dim=1)
        p_flip = F.softmax(teacher.classifier(teacher(torch.flip(x, dims=[3]))).float(), dim=1)
        total = p + p_flip
        return total / total.sum(dim=1, keepdim=True)


def teacher_kl(student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``KL(target ‖ softmax(student))`` summed over classes and batch, divided by the batch size (the
    original's ``KLDivLoss(size_average=False) / B``)."""
    log_q = F.log_softmax(student_logits.float(), dim=1)
    return (torch.xlogy(target, target) - target * log_q).sum() / student_logits.shape[0]


# ---------------------------------------------------------------------------------------------- data


class DGNetBatch(NamedTuple):
    """One iteration's images (normalised) and training labels; ``*_re`` are the random-erased copies."""

    x_a: torch.Tensor
    x_b: torch.Tensor
    xp_a: torch.Tensor
    xp_b: torch.Tensor
    l_a: torch.Tensor
    l_b: torch.Tensor

    def __len__(self) -> int:
        return 4 * len(self.l_a)


# ---------------------------------------------------------------------------------------------- the task


class DGNetTask(Task):
    """Joint generative/discriminative training of ``E_a`` (module ``appearance``), ``G`` (``generator``)
    and ``D`` (``discriminator``), distilled from a frozen teacher (an ``ft_net``, not trained)."""

    scheduler_interval = "iteration"

    def __init__(
        self,
        params: DGNetParams,
        store: ImageStore,
        num_classes: int,
        teacher: nn.Module | None,
        seed: int,
        pictures: torch.Tensor | None = None,
        picture_path: str | Path | None = None,
    ) -> None:
        self.p = params
        self.store = store
        self.num_classes = num_classes
        self.teacher = teacher
        self.seed = seed
        self.pictures = pictures
        self.picture_path = Path(picture_path) if picture_path is not None else None
        # the loader must not erase: DG-Net erases copies used only by the ID losses (train_step)
        self.input_cfg = dataclasses.replace(
            params.input, erasing=dataclasses.replace(params.input.erasing, p=0.0)
        )
        self.loaders: tuple[ReidLoader, ReidLoader] | None = None
        self.steps_per_epoch = 0
        if teacher is not None:
            self._freeze_teacher(teacher)

    # -------------------------------------------------------------- engine hooks

    def _freeze_teacher(self, teacher: nn.Module) -> None:
        teacher.requires_grad_(False)
        teacher.eval()
        if self.p.train_bn:  # the original switches the teacher's BN back to train mode (batch statistics)
            for m in teacher.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        p = self.p
        appearance = AppearanceEncoder(
            self.num_classes,
            depth=p.appearance.depth,
            stride=p.appearance.stride,
            bottleneck=p.appearance.bottleneck,
            detach_code=p.appearance.detach_code,
        )
        init_appearance(appearance, p.appearance.init, self.teacher)
        generator = Generator(
            code_channels=appearance.code_channels,
            dim=p.generator.dim,
            mlp_dim=p.generator.mlp_dim,
            dilations=p.generator.dilations,
        )
        discriminator = MultiScaleDiscriminator(
            dim=p.discriminator.dim,
            num_layers=p.discriminator.num_layers,
            num_res=p.discriminator.num_res,
            num_scales=p.discriminator.num_scales,
        )
        if self.teacher is not None:
            self.teacher.to(ctx.device)
        return {"appearance": appearance, "generator": generator, "discriminator": discriminator}

    def build_optimizers(self, ctx: Context) -> dict[str, torch.optim.Optimizer]:
        o = self.p.optim
        appearance = ctx.raw_modules["appearance"]
        heads = list(appearance.primary.parameters()) + list(appearance.fine.parameters())
        head_ids = {id(q) for q in heads}
        base = [q for q in appearance.parameters() if id(q) not in head_ids]
        adam = dict(betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        return {
            "discriminator": torch.optim.Adam(ctx.raw_modules["discriminator"].parameters(), lr=o.lr_d, **adam),
            "generator": torch.optim.Adam(ctx.raw_modules["generator"].parameters(), lr=o.lr_g, **adam),
            "appearance": torch.optim.SGD(
                [{"params": base, "lr": o.lr_id}, {"params": heads, "lr": o.lr_id * o.head_lr_mult}],
                lr=o.lr_id,
                momentum=o.momentum,
                nesterov=True,
                weight_decay=o.weight_decay,
            ),
        }

    def build_schedulers(self, ctx: Context) -> dict:
        o = self.p.optim
        step = o.step_size
        # original milestones step, 1.5·step, 1.75·step, stepped *before* each update: shift by one here
        milestones = [step - 1, step + step // 2 - 1, step + step // 2 + step // 4 - 1]
        multistep = torch.optim.lr_scheduler.MultiStepLR
        return {
            "discriminator": multistep(ctx.optimizers["discriminator"], milestones, gamma=o.gamma),
            "generator": multistep(ctx.optimizers["generator"], milestones, gamma=o.gamma),
            "appearance": multistep(ctx.optimizers["appearance"], milestones, gamma=o.gamma2),
        }

    def batches(self, epoch: int, ctx: Context) -> "_PairedEpoch":
        if self.loaders is None:
            self.loaders = tuple(
                ReidLoader(
                    self.store, self.input_cfg, seed=self.seed, device=ctx.device, rank=ctx.rank,
                    world_size=ctx.world_size, stream=stream, channels_last=ctx.channels_last,
                )
                for stream in (0, 1)
            )
        paired = _PairedEpoch(self.loaders[0].epoch(epoch), self.loaders[1].epoch(epoch))
        self.steps_per_epoch = len(paired)
        return paired

    def num_images(self, batch: DGNetBatch) -> int:
        return len(batch)

    # -------------------------------------------------------------- one iteration

    def _erased(self, x: torch.Tensor) -> torch.Tensor:
        erasing = self.p.input.erasing
        return random_erasing(x, erasing, self.p.input.mean) if erasing.p > 0 else x

    def train_step(self, batch: DGNetBatch, ctx: Context) -> dict[str, torch.Tensor]:
        p = self.p
        w = weights_at(p, ctx.iteration)
        # Forwards use the unwrapped modules (several calls per update, some of them frozen); under DDP
        # the gradients are averaged over ranks explicitly before each step (_average_gradients).
        gen, app, dis = (ctx.raw_modules[k] for k in ("generator", "appearance", "discriminator"))
        x_a, x_b, xp_a, xp_b, l_a, l_b = batch

        # ---- forward (trainer.forward)
        with ctx.autocast():
            s_a, s_b = gen.encode(to_gray(x_a)), gen.encode(to_gray(x_b))
            out_a, out_b = app(x_a), app(x_b)
            f_a, f_b = out_a.code, out_b.code
            x_ba = gen.decode(s_b, f_a)
            x_ab = gen.decode(s_a, f_b)
            x_a_rec = gen.decode(s_a, f_a)
            x_b_rec = gen.decode(s_b, f_b)
            out_pa, out_pb = app(xp_a), app(xp_b)
            x_a_rec_p = gen.decode(s_a, out_pa.code)
            x_b_rec_p = gen.decode(s_b, out_pb.code)
            if p.input.erasing.p > 0:  # random erasing affects only the ID losses: their logits are recomputed
                out_a, out_b = app(self._erased(x_a)), app(self._erased(x_b))
                out_pa, out_pb = app(self._erased(xp_a)), app(self._erased(xp_b))

        # ---- D update (trainer.dis_update)
        with ctx.autocast():
            d_ba, r1_ba = lsgan_discriminator_loss(dis, x_ba, x_a, p.discriminator.r1_weight)
            d_ab, r1_ab = lsgan_discriminator_loss(dis, x_ab, x_b, p.discriminator.r1_weight)
            loss_d = p.gan_w * (d_ba + d_ab)
        ctx.backward(loss_d)
        _average_gradients(ctx, dis)
        ctx.step(ctx.optimizers["discriminator"])

        # ---- G + E_a update (trainer.gen_update)
        x_ba_fixed, x_ab_fixed = x_ba.detach(), x_ab.detach()
        zero = x_a.new_zeros(())
        with ctx.autocast():
            if p.use_encoder_again >= float(torch.rand(())):
                # live encoder, fixed images
                s_a_rec = gen.encode(to_gray(x_ab_fixed))
                s_b_rec = gen.encode(to_gray(x_ba_fixed))
            else:
                # fixed encoder, gradient to the images
                s_a_rec = frozen_forward(gen.structure_encoder, to_gray(x_ab))
                s_b_rec = frozen_forward(gen.structure_encoder, to_gray(x_ba))
            rec_a = frozen_forward(app, x_ba, outputs="train", batch_stats=p.train_bn)
            rec_b = frozen_forward(app, x_ab, outputs="train", batch_stats=p.train_bn)

            loss_teacher = zero
            if w.teacher_on and self.teacher is not None:
                student_ba, student_ab = app(x_ba_fixed), app(x_ab_fixed)
                kl = teacher_kl(student_ba.logits_primary, teacher_probabilities(self.teacher, x_ba_fixed))
                kl = kl + teacher_kl(student_ab.logits_primary, teacher_probabilities(self.teacher, x_ab_fixed))
                # fine-grained head: the label of the *structure* provider
                loss_b = F.cross_entropy(student_ba.logits_fine, l_b) + F.cross_entropy(student_ab.logits_fine, l_a)
                loss_teacher = p.T_w * kl + p.B_w * loss_b

            recon_x = reconstruction_loss(x_a_rec, x_a) + reconstruction_loss(x_b_rec, x_b)
            recon_xp = reconstruction_loss(x_a_rec_p, x_a) + reconstruction_loss(x_b_rec_p, x_b)
            recon_s = zero
            if w.recon_s_on:
                recon_s = reconstruction_loss(s_a_rec, s_a) + reconstruction_loss(s_b_rec, s_b)
            recon_f = zero
            if w.recon_f_on:
                recon_f = reconstruction_loss(rec_a.code, f_a) + reconstruction_loss(rec_b.code, f_b)
            cycle = zero
            if w.cycle_on:
                cycle = reconstruction_loss(gen.decode(s_a_rec, rec_a.code), x_a) + reconstruction_loss(
                    gen.decode(s_b_rec, rec_b.code), x_b
                )

            ce = F.cross_entropy
            loss_id = ce(out_a.logits_primary, l_a) + ce(out_b.logits_primary, l_b)
            loss_id = loss_id + w.teacher * p.B_w * (ce(out_a.logits_fine, l_a) + ce(out_b.logits_fine, l_b))
            loss_pid = ce(out_pa.logits_primary, l_a) + ce(out_pb.logits_primary, l_b)
            loss_recon_id = ce(rec_a.logits_primary, l_a) + ce(rec_b.logits_primary, l_b)

            # D only scores here: its parameters take no gradient (the original discards it anyway)
            dis.requires_grad_(False)
            try:
                gan = lsgan_generator_loss(dis(x_ba)) + lsgan_generator_loss(dis(x_ab))
            finally:
                dis.requires_grad_(True)

            total = (
                p.gan_w * gan
                + p.recon_x_w * recon_x
                + p.recon_xp_w * recon_xp
                + w.recon_f * recon_f
                + w.recon_s * recon_s
                + w.cycle * cycle
                + p.id_w * loss_id
                + p.pid_w * loss_pid
                + p.recon_id_w * loss_recon_id
                + w.teacher * loss_teacher
            )
        ctx.backward(total)
        _average_gradients(ctx, gen, app)
        ctx.step(ctx.optimizers["generator"], ctx.optimizers["appearance"])

        if self._picture_due(ctx):
            self.write_pictures(ctx)
        terms = {
            "total": total, "d": loss_d, "r1": p.gan_w * (r1_ba + r1_ab), "gan": gan, "recon_x": recon_x,
            "recon_xp": recon_xp, "recon_f": recon_f, "recon_s": recon_s, "cycle": cycle, "id": loss_id,
            "pid": loss_pid, "recon_id": loss_recon_id, "teacher": loss_teacher,
        }
        return {k: v.detach() for k, v in terms.items()}

    # -------------------------------------------------------------- pictures

    def _picture_due(self, ctx: Context) -> bool:
        """At the last step of an epoch the engine checkpoints (the stage writes the final one itself)."""
        if self.pictures is None or self.picture_path is None or not ctx.is_main:
            return False
        last_step = ctx.step_in_epoch == self.steps_per_epoch - 1
        return last_step and (ctx.epoch + 1) % self.p.train.checkpoint_every == 0

    def write_pictures(self, ctx: Context) -> None:
        write_swap_picture(
            ctx.raw_modules["generator"], ctx.raw_modules["appearance"], self.pictures.to(ctx.device),
            self.p.input.mean, self.p.input.std, self.picture_path,
        )


def _average_gradients(ctx: Context, *modules: nn.Module) -> None:
    """Under DDP, replace each gradient by its mean over ranks (what DDP's reducer would do); no-op alone."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    for module in modules:
        for q in module.parameters():
            if q.grad is not None:
                dist.all_reduce(q.grad)
                q.grad.div_(ctx.world_size)


class _PairedEpoch:
    """One epoch of the two independent loaders, zipped into :class:`DGNetBatch` es."""

    def __init__(self, a, b) -> None:
        self.a, self.b = a, b

    def __len__(self) -> int:
        return min(len(self.a), len(self.b))

    def __iter__(self) -> Iterator[DGNetBatch]:
        for batch_a, batch_b in zip(self.a, self.b):
            yield DGNetBatch(
                batch_a.images, batch_b.images, batch_a.positives, batch_b.positives, batch_a.labels, batch_b.labels
            )


# ---------------------------------------------------------------------------------------------- init


def init_appearance(appearance: AppearanceEncoder, init: str, teacher: nn.Module | None) -> None:
    """Initialise ``E_a``: ``imagenet`` (torchvision V1 backbone, the original), ``teacher`` (backbone and
    both heads' layers copied from the teacher ``ft_net``, for runs without ImageNet weights), ``none``."""
    from personlab.models.resnet import load_pretrained

    if init == "none":
        return
    if init == "imagenet":
        load_pretrained(appearance.backbone, "imagenet")
        return
    if teacher is None:
        raise ValueError("dgnet.appearance.init: 'teacher' needs the teacher model (models/teacher)")
    t_depth, a_depth = teacher.backbone.depth, appearance.backbone.depth
    t_linear = teacher.add_block[0].out_features
    a_linear = appearance.primary.add_block[0].out_features
    t_classes, a_classes = teacher.classifier.out_features, appearance.primary.classifier.out_features
    if (t_depth, t_linear, t_classes) != (a_depth, a_linear, a_classes):
        raise ValueError(
            f"dgnet.appearance.init: 'teacher' needs E_a shaped like the teacher: teacher ResNet-{t_depth}, "
            f"bottleneck {t_linear}, {t_classes} classes; E_a ResNet-{a_depth}, bottleneck {a_linear}, "
            f"{a_classes} classes. Set dgnet.appearance.depth/bottleneck to the teacher's (teacher.model), or "
            "use init: imagenet / none"
        )
    appearance.backbone.load_state_dict(teacher.backbone.state_dict())
    for head in (appearance.primary, appearance.fine):
        head.add_block[0].load_state_dict(teacher.add_block[0].state_dict())
        head.add_block[1].load_state_dict(teacher.add_block[1].state_dict())
        head.classifier.load_state_dict(teacher.classifier.state_dict())


# ---------------------------------------------------------------------------------------------- pictures


def _to_uint8(x: torch.Tensor, mean, std) -> np.ndarray:
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    img = (x * std_t + mean_t).clamp(0, 1).mul(255).round().to(torch.uint8)
    return img.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def swap_grid(generator: Generator, appearance: AppearanceEncoder, images: torch.Tensor) -> torch.Tensor:
    """``(N+1, N+1, 3, H, W)`` normalised images: cell (0, j) the appearance donor j, cell (i, 0) the
    structure donor i, cell (i, j) = G(structure of i, appearance of j); the diagonal is reconstruction."""
    n = len(images)
    codes = frozen_forward(appearance, images, outputs="train").code
    structure = generator.encode(to_gray(images))
    rows = [torch.cat([torch.zeros_like(images[:1]), images])]
    for i in range(n):
        swapped = generator.decode(structure[i : i + 1].expand(n, *structure.shape[1:]), codes)
        rows.append(torch.cat([images[i : i + 1], swapped]))
    return torch.stack(rows)


@torch.no_grad()
def write_swap_picture(
    generator: Generator, appearance: AppearanceEncoder, images: torch.Tensor, mean, std, path: str | Path
) -> None:
    """Render :func:`swap_grid` (rows: structure, columns: appearance; white corner) to a PNG, atomically."""
    from PIL import Image

    from personlab.io import atomic_path

    was = generator.training
    generator.eval()
    try:
        grid = swap_grid(generator, appearance, images)
    finally:
        generator.train(was)
    rows, cols, _, h, w = grid.shape
    gap = 2
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, dtype=np.uint8)
    for i in range(rows):
        tiles = _to_uint8(grid[i], mean, std)
        for j in range(cols):
            if i == 0 and j == 0:
                continue
            top, left = gap + i * (h + gap), gap + j * (w + gap)
            canvas[top : top + h, left : left + w] = tiles[j]
            if i > 0 and j > 0 and i - 1 == j - 1:  # reconstruction on the diagonal: a thin frame
                canvas[top - 1, left - 1 : left + w + 1] = (255, 0, 0)
                canvas[top + h, left - 1 : left + w + 1] = (255, 0, 0)
                canvas[top - 1 : top + h + 1, left - 1] = (255, 0, 0)
                canvas[top - 1 : top + h + 1, left + w] = (255, 0, 0)
    scale = max(1, 256 // h)
    picture = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def picture_images(store: ImageStore, labels_wanted: int, mean, std) -> torch.Tensor:
    """A fixed, deterministic set of display images: the first image of ``labels_wanted`` evenly spaced
    identities of the training store (normalised, unaugmented)."""
    labels = store.labels.cpu()
    unique = torch.unique(labels)
    chosen = unique[torch.linspace(0, len(unique) - 1, min(labels_wanted, len(unique))).round().long()]
    first = [int(torch.nonzero(labels == c)[0]) for c in chosen]
    return normalize(store.images[torch.tensor(first)].cpu(), mean, std)
