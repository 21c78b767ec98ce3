"""The re-ID input path: a decoded uint8 image store, the BoT identity (PK) sampler, batched augmentation.

Why not a ``DataLoader`` of per-sample PIL transforms (what the original repositories use): JPEG decoding and
resizing happen once, into ``ImageStore.images`` (``(N, 3, H, W)`` uint8 at training resolution, kept on the
training device); every epoch then only gathers indices and runs flip, pad + crop, normalisation and random
erasing as a few tensor operations over the whole batch on that device. The per-image semantics stay those of
BoT's transforms (``Resize -> RandomHorizontalFlip -> Pad -> RandomCrop -> ToTensor -> Normalize ->
RandomErasing``); ``docs/engine.md`` explains why the batched operations give each image the same
distribution, and ``tests/test_loader.py`` checks them against a per-image implementation on fixed draws.

Randomness: the sampler and the augmentation draws of epoch ``e`` come from generators seeded with
``derive_seed(seed, stream, e, ...)`` and are drawn on the CPU for the *global* batch, identically on every
rank; each rank then keeps its slice. So an epoch depends only on (seed, stream, epoch), a resumed run replays
it exactly, and DDP on W processes sees the same images and augmentations as one process on the global batch.

Typical use inside an engine task::

    store = ImageStore.from_records(split.root, split.train, cfg.size, cfg.interpolation, split.pid2label)
    loader = ReidLoader(store, cfg, seed=common.seed, device=ctx.device, rank=ctx.rank,
                        world_size=ctx.world_size, channels_last=ctx.channels_last)
    for batch in loader.epoch(epoch):      # Batch: images (B,3,H,W) float, labels, camids, [positives]
        ...
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from personlab.engine import derive_seed
from personlab.params import Erasing, ReidInput
from personlab.runtime import one_cpu_thread

__all__ = [
    "AugmentDraws",
    "Batch",
    "EpochBatches",
    "ImageStore",
    "ReidLoader",
    "anchor_batches",
    "apply_augment",
    "decode_images",
    "draw_augment",
    "normalize",
    "pk_batches",
    "positive_indices",
    "random_erasing",
    "rank_slice",
    "shuffle_batches",
]

_INTERPOLATION = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


# ---------------------------------------------------------------------------------------------- decoding


def _decode_one(path: Path, size: tuple[int, int], interpolation: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: image listed in the split is missing; re-run the download and splits stages (dvc repro splits)"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode image ({exc}); replace the file or re-download the dataset") from None
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), _INTERPOLATION[interpolation])
    return np.array(rgb, dtype=np.uint8)  # a writable copy for torch.from_numpy


def decode_images(
    root: str | Path,
    paths: Sequence[str],
    size: tuple[int, int],
    interpolation: str = "bilinear",
    workers: int | None = None,
) -> torch.Tensor:
    """Decode and resize (PIL, like torchvision's ``Resize``) images under ``root`` into ``(N, 3, H, W)`` uint8.

    Threads overlap the I/O and JPEG decoding; the result does not depend on their number.
    """
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"interpolation {interpolation!r} is not one of {sorted(_INTERPOLATION)}")
    root = Path(root)
    height, width = size
    out = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    workers = workers or min(8, os.cpu_count() or 1)

    def fill(i: int) -> None:
        out[i] = torch.from_numpy(_decode_one(root / paths[i], size, interpolation)).permute(2, 0, 1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, range(len(paths))))
    return out


@dataclass
class ImageStore:
    """Decoded training images at training resolution with their labels, decoded once per stage."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64 training label (pid2label[pid])
    camids: torch.Tensor  # (N,) int64, 0-based
    _copies: dict[str, "ImageStore"] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_records(
        cls,
        root: str | Path,
        records: Sequence,
        size: tuple[int, int],
        interpolation: str,
        pid2label: dict[int, int],
        workers: int | None = None,
    ) -> "ImageStore":
        """Build from ``personlab.data.openreid`` records ``(path, pid, camid)``; labels via ``pid2label``."""
        if not records:
            raise ValueError(f"{root}: no training records; check data/splits/reid/splits.json")
        missing = sorted({r.pid for r in records if r.pid not in pid2label})
        if missing:
            raise ValueError(f"pids {missing[:5]} are not in the pid->label map; re-run the splits stage")
        images = decode_images(root, [r.path for r in records], size, interpolation, workers)
        labels = torch.tensor([pid2label[r.pid] for r in records], dtype=torch.int64)
        camids = torch.tensor([r.camid for r in records], dtype=torch.int64)
        return cls(images=images, labels=labels, camids=camids)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "ImageStore":
        """The store on ``device``; the copy is kept, so loaders sharing a store share one device copy."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        key = str(device)
        if key not in self._copies:
            self._copies[key] = ImageStore(self.images.to(device), self.labels.to(device), self.camids.to(device))
        return self._copies[key]


# ---------------------------------------------------------------------------------------------- sampling


def pk_batches(
    labels: Sequence[int] | torch.Tensor, batch_size: int, num_instances: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch of BoT's ``RandomIdentitySampler``: batches of P = batch_size/K identities x K images.

    Per identity (in label order) its indices are shuffled, or, with fewer than K images, K are drawn with
    replacement; they are cut into chunks of K, dropping the remainder. Then, while at least P identities have
    chunks left, P distinct ones are drawn uniformly and each emits its next chunk.
    """
    k = num_instances
    if batch_size % k:
        raise ValueError(f"batch_size {batch_size} is not a multiple of num_instances {k}")
    p = batch_size // k
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    order = torch.argsort(labels, stable=True)
    uniq, counts = torch.unique_consecutive(labels[order], return_counts=True)
    chunks: dict[int, list[torch.Tensor]] = {}
    for label, idx in zip(uniq.tolist(), torch.split(order, counts.tolist())):
        if len(idx) < k:
            picked = idx[torch.randint(len(idx), (k,), generator=generator)]
        else:
            picked = idx[torch.randperm(len(idx), generator=generator)]
        chunks[label] = list(torch.split(picked[: len(picked) // k * k], k))
    available = list(chunks)
    batches = []
    while len(available) >= p:
        chosen = [available[i] for i in torch.randperm(len(available), generator=generator)[:p].tolist()]
        batches.append(torch.cat([chunks[label].pop(0) for label in chosen]))
        available = [label for label in available if chunks[label]]
    return batches


def shuffle_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of plain shuffled batches (layumi/DG-Net), the incomplete last batch dropped."""
    perm = torch.randperm(n, generator=generator)
    return list(torch.split(perm[: n // batch_size * batch_size], batch_size))


def anchor_batches(
    labels: Sequence[int] | torch.Tensor, batch_size: int, num_instances: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch of RRID's triplet sampler, made correct: every image is an anchor once, in random order, and
    brings K-1 other images of its identity (drawn without replacement when it has that many, else with
    replacement; an identity with one image repeats it). Groups of K fill batches of P = batch_size/K groups,
    so an epoch has ``n // P`` batches; an identity may fill two groups of one batch.

    The original sampler left the anchor itself out of its group and crashed on one-image identities.
    """
    k = num_instances
    if batch_size % k:
        raise ValueError(f"batch_size {batch_size} is not a multiple of num_instances {k}")
    p = batch_size // k
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    members = {int(label): torch.nonzero(labels == label).flatten() for label in torch.unique(labels).tolist()}
    anchors = torch.randperm(len(labels), generator=generator)
    groups = []
    for anchor in anchors[: len(anchors) // p * p].tolist():
        same = members[int(labels[anchor])]
        others = same[same != anchor]
        if len(others) == 0:
            others = same
        if len(others) >= k - 1:
            picked = others[torch.randperm(len(others), generator=generator)[: k - 1]]
        else:
            picked = others[torch.randint(len(others), (k - 1,), generator=generator)]
        groups.append(torch.cat([torch.tensor([anchor]), picked]))
    return [torch.cat(groups[i : i + p]) for i in range(0, len(groups), p)]


def rank_slice(size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch of ``size`` that ``rank`` trains on: a contiguous block of size/world.

    A PK batch is P chunks of K same-identity indices in a row, so with P divisible by the world size each rank
    gets whole identities (P/W of them); the union over ranks is exactly the single-process batch.
    """
    if size % world_size:
        raise ValueError(f"a batch of {size} cannot be split evenly over {world_size} processes")
    part = size // world_size
    return slice(rank * part, (rank + 1) * part)


def positive_indices(indices: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each index a uniformly drawn *other* index of the same label (itself when it is alone) — DG-Net."""
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    indices = torch.as_tensor(indices, dtype=torch.int64).cpu()
    order = torch.argsort(labels, stable=True)  # indices grouped by label
    _, group, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    where = torch.empty_like(order)
    where[order] = torch.arange(len(order))  # position of each index in ``order``
    g = group[indices]
    n_others = counts[g] - 1
    u = torch.rand(len(indices), generator=generator, dtype=torch.float64)
    pick = torch.floor(u * n_others).long()  # 0 .. n_others-1 among the others
    own = where[indices] - starts[g]
    pick = pick + (pick >= own).long()  # skip the sample itself
    return torch.where(n_others > 0, order[starts[g] + pick.clamp(max=counts[g] - 1)], indices)


# ---------------------------------------------------------------------------------------------- augmentation


@dataclass
class AugmentDraws:
    """The uniform [0, 1) numbers one batch's augmentation consumes (float64, one row per image).

    Drawn on the CPU from a seeded generator so every device and every rank sees the same numbers; the
    operations that turn them into flips, offsets and boxes run batched on the images' device.
    """

    flip: torch.Tensor  # (n,)   flip when < flip_p
    crop: torch.Tensor  # (n, 2) row / column offset in [0, 2*pad]
    erase: torch.Tensor  # (n,)  erase when < erasing.p
    area: torch.Tensor  # (n, A) per attempt: target area fraction
    aspect: torch.Tensor  # (n, A) per attempt: aspect ratio
    position: torch.Tensor  # (n, 2) top / left of the accepted box

    def __len__(self) -> int:
        return len(self.flip)

    def __getitem__(self, rows: slice | torch.Tensor) -> "AugmentDraws":
        return AugmentDraws(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def to(self, device: torch.device | str) -> "AugmentDraws":
        return AugmentDraws(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def draw_augment(n: int, attempts: int, generator: torch.Generator | None = None) -> AugmentDraws:
    """Draws for ``n`` images with up to ``attempts`` erasing attempts each (``None``: torch's global RNG)."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    return AugmentDraws(
        flip=rand(n), crop=rand(n, 2), erase=rand(n), area=rand(n, attempts), aspect=rand(n, attempts),
        position=rand(n, 2),
    )


def _flip_pad_crop(images: torch.Tensor, draws: AugmentDraws, flip_p: float, pad: int, pad_mode: str) -> torch.Tensor:
    """Flip, pad by ``pad`` and crop back to (H, W) at the drawn offsets, as ONE gather over the batch.

    Output pixel (r, c) of image b reads pixel (r + dy, c + dx) of the padded, possibly flipped image. For
    "zero" the batch is zero-padded first (one copy); for "edge" the source index is clamped to the image,
    which is exactly the pixel edge padding puts there.
    """
    n, channels, height, width = images.shape
    device = images.device
    offsets = torch.floor(draws.crop * (2 * pad + 1)).long().to(device)  # uniform on {0, ..., 2*pad}
    flip = (draws.flip < flip_p).to(device)[:, None]
    rows = torch.arange(height, device=device)[None, :] + offsets[:, :1]  # (n, H) rows of the padded image
    cols = torch.arange(width, device=device)[None, :] + offsets[:, 1:]  # (n, W) columns of the padded image
    if pad_mode == "zero":
        source_img = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        src_w = width + 2 * pad
        cols = torch.where(flip, src_w - 1 - cols, cols)  # flipping the padded image = padding the flipped one
    else:
        source_img = images
        src_w = width
        rows = (rows - pad).clamp(0, height - 1)
        cols = (cols - pad).clamp(0, width - 1)
        cols = torch.where(flip, width - 1 - cols, cols)
    source = rows[:, :, None] * src_w + cols[:, None, :]
    out = source_img.reshape(n, channels, -1).gather(
        2, source.reshape(n, 1, height * width).expand(n, channels, height * width)
    )
    return out.reshape(n, channels, height, width)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> float32 ``(x / 255 - mean) / std`` (``ToTensor`` then ``Normalize``); test path too.

    A uint8 channel has only 256 values, so the result is read from a (3, 256) table computed with exactly
    those float32 operations: bit-identical to the per-pixel formula, in one pass instead of four.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a uint8 (N, 3, H, W) batch, got {images.dtype} {tuple(images.shape)}")
    device = images.device
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)[:, None]
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)[:, None]
    table = torch.arange(256, dtype=torch.float32, device=device)[None, :].div(255).sub(mean_t).div(std_t)
    channel_offset = torch.arange(0, 3 * 256, 256, dtype=torch.int32, device=device)[None, :, None, None]
    index = images.to(torch.int32) + channel_offset
    return table.reshape(-1).index_select(0, index.reshape(-1)).reshape(images.shape)


def _erase_boxes(draws: AugmentDraws, erasing: Erasing, height: int, width: int) -> torch.Tensor:
    """Each image's erasing box ``[top, left, h, w]`` (h = 0: not erased), with BoT's rule: of the attempts, the
    first whose box fits (h < H and w < W) is used; computed for the whole batch at once on the draws' device."""
    lo, hi = erasing.area
    target = (lo + (hi - lo) * draws.area) * (height * width)
    ratio = erasing.aspect + (1 / erasing.aspect - erasing.aspect) * draws.aspect
    h = torch.round(torch.sqrt(target * ratio)).long()
    w = torch.round(torch.sqrt(target / ratio)).long()
    fits = (h < height) & (w < width)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # the first fitting attempt
    h = h.gather(1, first).squeeze(1)
    w = w.gather(1, first).squeeze(1)
    erase = (draws.erase < erasing.p) & fits.any(dim=1)
    top = torch.floor(draws.position[:, 0] * (height - h + 1).clamp(min=1)).long()  # randint(0, H - h)
    left = torch.floor(draws.position[:, 1] * (width - w + 1).clamp(min=1)).long()
    return torch.stack([top, left, torch.where(erase, h, 0), w], dim=1)


def _erase_(x: torch.Tensor, draws: AugmentDraws, erasing: Erasing, mean: Sequence[float]) -> torch.Tensor:
    """Random erasing in place: boxes from the (CPU) draws, each painted as one rectangle fill.

    Only the erased pixels are written (a full-batch mask would touch every pixel), and the box corners are
    host integers, so the fills queue on the device without a synchronisation.
    """
    values = tuple(mean) if erasing.fill == "mean" else (0.0, 0.0, 0.0)
    fill = torch.tensor(values, dtype=x.dtype, device=x.device)[:, None, None]
    for i, (top, left, h, w) in enumerate(_erase_boxes(draws.to("cpu"), erasing, *x.shape[-2:]).tolist()):
        if h:
            x[i, :, top : top + h, left : left + w] = fill
    return x


def apply_augment(images: torch.Tensor, draws: AugmentDraws, cfg: ReidInput) -> torch.Tensor:
    """Training augmentation of a uint8 batch on its device: flip, pad + crop, normalise, random erasing."""
    if len(draws) != len(images):
        raise ValueError(f"{len(draws)} draws for {len(images)} images")
    if images.shape[-2:] != tuple(cfg.size):
        raise ValueError(
            f"images are {tuple(images.shape[-2:])}, the input size is {tuple(cfg.size)}; rebuild the store"
        )
    x = normalize(_flip_pad_crop(images, draws, cfg.flip_p, cfg.pad, cfg.pad_mode), cfg.mean, cfg.std)
    return _erase_(x, draws, cfg.erasing, cfg.mean) if cfg.erasing.p > 0 else x  # x is ours: in place


def random_erasing(
    x: torch.Tensor,
    erasing: Erasing,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random erasing alone, on an already normalised batch (DG-Net erases copies used only by its ID losses).

    ``mean`` is the fill for ``erasing.fill == "mean"``. ``generator`` None uses torch's global CPU RNG, which
    the engine reseeds from (seed, epoch, rank).
    """
    draws = draw_augment(len(x), erasing.attempts, generator)
    return _erase_(x.clone(), draws, erasing, mean)


# ---------------------------------------------------------------------------------------------- loader


@dataclass
class Batch:
    """One rank's part of a training batch, on the training device."""

    images: torch.Tensor  # (B, 3, H, W) float32, augmented and normalised
    labels: torch.Tensor  # (B,) int64
    camids: torch.Tensor  # (B,) int64
    indices: torch.Tensor  # (B,) int64 store indices (CPU)
    positives: torch.Tensor | None = None  # (B, 3, H, W): another image of the same identity, augmented
    positive_indices: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.indices)


class EpochBatches:
    """The batches of one epoch: the index plan is made up front (so ``len`` is exact), images lazily."""

    def __init__(self, loader: "ReidLoader", epoch: int) -> None:
        self.loader = loader
        self.epoch = epoch
        cfg, seed = loader.cfg, loader.seed
        sampler = torch.Generator().manual_seed(derive_seed(seed, loader.stream, epoch, 0))
        if cfg.sampler == "pk":
            self.plan = pk_batches(loader.store_labels, cfg.batch_size, cfg.num_instances, sampler)
        elif cfg.sampler == "anchor":
            self.plan = anchor_batches(loader.store_labels, cfg.batch_size, cfg.num_instances, sampler)
        else:
            self.plan = shuffle_batches(len(loader.store_labels), cfg.batch_size, sampler)

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        loader = self.loader
        augment = torch.Generator().manual_seed(derive_seed(loader.seed, loader.stream, self.epoch, 1))
        positives = torch.Generator().manual_seed(derive_seed(loader.seed, loader.stream, self.epoch, 2))
        for global_batch in self.plan:
            with one_cpu_thread(loader.device):
                batch = self._make(global_batch, augment, positives)
            yield batch

    def _make(self, global_batch: torch.Tensor, augment: torch.Generator, positives: torch.Generator) -> Batch:
        loader = self.loader
        draws = draw_augment(len(global_batch), loader.cfg.erasing.attempts, augment)
        pos = positive_indices(global_batch, loader.store_labels, positives) if loader.cfg.positives else None
        part = rank_slice(len(global_batch), loader.rank, loader.world_size)
        indices = global_batch[part]
        on_store = indices.to(loader.store.labels.device)
        batch = Batch(
            images=loader.augmented(indices, draws[part]),
            labels=loader.store.labels[on_store],
            camids=loader.store.camids[on_store],
            indices=indices,
        )
        if pos is not None:
            pos_draws = draw_augment(len(global_batch), loader.cfg.erasing.attempts, augment)
            batch.positive_indices = pos[part]
            batch.positives = loader.augmented(pos[part], pos_draws[part])
        return batch


class ReidLoader:
    """Training batches of an :class:`ImageStore` per ``cfg`` (:class:`personlab.params.ReidInput`).

    The store is moved to ``device`` once (on a GPU, Market-1501 at 256x128 takes 1.3 GB; loaders over the same
    store share that copy). ``stream`` separates independent loaders over the same store (DG-Net draws two
    batches per iteration). Under DDP each rank gets its slice of the global ``cfg.batch_size`` batch (whole
    identities with the PK sampler).
    """

    def __init__(
        self,
        store: ImageStore,
        cfg: ReidInput,
        seed: int,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        stream: int = 0,
        channels_last: bool = False,
    ) -> None:
        if cfg.batch_size % world_size:
            raise ValueError(f"batch_size {cfg.batch_size} cannot be split over {world_size} processes")
        if cfg.sampler == "pk" and (cfg.batch_size // cfg.num_instances) % world_size:
            raise ValueError(
                f"the PK sampler's P = {cfg.batch_size // cfg.num_instances} identities per batch cannot be split "
                f"over {world_size} processes by whole identities; make P a multiple of the process count"
            )
        if tuple(store.images.shape[-2:]) != tuple(cfg.size):
            raise ValueError(f"store images are {tuple(store.images.shape[-2:])}, input size {tuple(cfg.size)}")
        self.store = store.to(device)
        self.store_labels = store.labels.cpu()
        self.cfg = cfg
        self.seed = seed
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.stream = stream
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        num_ids = len(torch.unique(self.store_labels))
        if cfg.sampler == "pk" and num_ids < cfg.batch_size // cfg.num_instances:
            raise ValueError(
                f"the training set has {num_ids} identities but the PK sampler needs "
                f"P = {cfg.batch_size // cfg.num_instances} per batch; lower batch_size or raise num_instances"
            )
        if cfg.sampler == "shuffle" and len(store) < cfg.batch_size:
            raise ValueError(f"the training set has {len(store)} images, fewer than batch_size {cfg.batch_size}")

    def epoch(self, epoch: int) -> EpochBatches:
        """This rank's batches of ``epoch``, a function of (seed, stream, epoch) only."""
        return EpochBatches(self, epoch)

    def augmented(self, indices: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        """Gather ``indices`` from the store and augment them on the device with ``draws``."""
        images = self.store.images[indices.to(self.store.images.device)]
        return apply_augment(images, draws, self.cfg).contiguous(memory_format=self.memory_format)
