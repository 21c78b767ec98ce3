"""The input path: decoding, the PK sampler (+ distributed), positives, batched augmentation vs per-image."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from personlab.data.loader import (
    ImageStore,
    ReidLoader,
    apply_augment,
    decode_images,
    draw_augment,
    normalize,
    pk_batches,
    positive_indices,
    random_erasing,
    rank_slice,
    shuffle_batches,
)
from personlab.data.openreid import Record
from personlab.params import Erasing, ReidInput

# identity -> number of images: some with fewer than K=4, some with a remainder, one with exactly K
COUNTS = {0: 1, 1: 2, 2: 4, 3: 5, 4: 9, 5: 3, 6: 12, 7: 6, 8: 4, 9: 7}


def labels_of(counts: dict[int, int]) -> torch.Tensor:
    return torch.tensor([label for label, n in counts.items() for _ in range(n)])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- PK sampler


@pytest.mark.parametrize("seed", range(5))
def test_pk_batches_invariants(seed):
    labels = labels_of(COUNTS)
    k, p = 4, 3
    batches = pk_batches(labels, p * k, k, gen(seed))
    chunks_of = {label: max(n, k) // k for label, n in COUNTS.items()}  # floor(max(n, K) / K)
    emitted = Counter()
    used = Counter()
    for batch in batches:
        assert len(batch) == p * k
        ids = [labels[batch[j * k : (j + 1) * k]].tolist() for j in range(p)]
        assert all(len(set(chunk)) == 1 for chunk in ids), "each chunk is K images of one identity"
        assert len({chunk[0] for chunk in ids}) == p, "P distinct identities"
        for chunk in ids:
            emitted[chunk[0]] += 1
        used.update(batch.tolist())
    assert all(emitted[label] <= chunks_of[label] for label in COUNTS)
    # it stops only when fewer than P identities still have chunks
    assert sum(emitted[label] < chunks_of[label] for label in COUNTS) < p
    # identities with >= K images never repeat an image in an epoch (those with fewer are drawn with replacement)
    for index, times in used.items():
        if COUNTS[int(labels[index])] >= k:
            assert times == 1
    for label in COUNTS:
        assert sum(t for i, t in used.items() if labels[i] == label) == k * emitted[label]


def test_pk_epoch_length_when_every_identity_has_one_chunk():
    # 12 identities x 4 images, P=3: each identity is used exactly once, 12/3 = 4 batches
    labels = labels_of({i: 4 for i in range(12)})
    batches = pk_batches(labels, 12, 4, gen(0))
    assert len(batches) == 4
    assert sorted(torch.cat(batches).tolist()) == list(range(48))


def test_pk_identity_with_fewer_than_k_images_is_drawn_with_replacement():
    labels = labels_of({0: 1, 1: 4, 2: 4})
    (batch,) = pk_batches(labels, 12, 4, gen(1))
    assert Counter(batch.tolist())[0] == 4  # the single image of identity 0, four times


def test_pk_is_a_function_of_the_generator_seed():
    labels = labels_of(COUNTS)
    a, b = pk_batches(labels, 8, 4, gen(7)), pk_batches(labels, 8, 4, gen(7))
    c = pk_batches(labels, 8, 4, gen(8))
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_shuffle_batches_drop_the_incomplete_last_batch():
    batches = shuffle_batches(23, 5, gen(0))
    assert [len(b) for b in batches] == [5, 5, 5, 5]
    assert len(set(torch.cat(batches).tolist())) == 20


def random_store(counts: dict[int, int], size=(12, 6), seed=0) -> ImageStore:
    labels = labels_of(counts)
    images = torch.randint(0, 256, (len(labels), 3, *size), generator=gen(seed), dtype=torch.uint8)
    return ImageStore(images=images, labels=labels, camids=torch.arange(len(labels)) % 3)


@pytest.mark.parametrize("sampler", ["pk", "shuffle"])
def test_distributed_ranks_partition_each_global_batch_by_identity(sampler):
    store = random_store(COUNTS)
    cfg = ReidInput(size=(12, 6), batch_size=16, num_instances=2, pad=2, sampler=sampler)
    single = list(ReidLoader(store, cfg, seed=5).epoch(3))
    ranks = [list(ReidLoader(store, cfg, seed=5, rank=r, world_size=2).epoch(3)) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) > 0
    for whole, part0, part1 in zip(single, *ranks):
        assert torch.equal(torch.cat([part0.indices, part1.indices]), whole.indices)
        # same images, same augmentation as the single process on the global batch
        torch.testing.assert_close(torch.cat([part0.images, part1.images]), whole.images, rtol=0, atol=0)
        if sampler == "pk":
            assert not set(part0.labels.tolist()) & set(part1.labels.tolist())
            assert len(set(part0.labels.tolist())) == 16 // 2 // 2  # P / world identities per rank


def test_loader_epochs_are_deterministic_and_differ():
    store = random_store(COUNTS)
    cfg = ReidInput(size=(12, 6), batch_size=8, num_instances=2, pad=2)
    one = [b.images for b in ReidLoader(store, cfg, seed=1).epoch(2)]
    two = [b.images for b in ReidLoader(store, cfg, seed=1).epoch(2)]
    other = [b.images for b in ReidLoader(store, cfg, seed=1).epoch(3)]
    assert all(torch.equal(a, b) for a, b in zip(one, two)) and len(one) == len(two)
    assert not all(torch.equal(a, b) for a, b in zip(one, other))


def test_loader_refuses_p_not_divisible_by_world_size():
    cfg = ReidInput(size=(12, 6), batch_size=12, num_instances=4)  # P = 3
    with pytest.raises(ValueError, match="whole identities"):
        ReidLoader(random_store(COUNTS), cfg, seed=0, rank=0, world_size=2)


def test_rank_slice():
    assert [rank_slice(12, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    with pytest.raises(ValueError):
        rank_slice(10, 0, 3)


# ---------------------------------------------------------------------------------------------- positives


def test_positive_is_another_image_of_the_same_identity():
    labels = labels_of({0: 1, 1: 2, 2: 5})
    pos = positive_indices(torch.arange(8), labels, gen(0))
    assert pos[0] == 0  # alone: itself
    assert pos[1] == 2 and pos[2] == 1  # two images: always the other one
    for i in range(3, 8):
        assert labels[pos[i]] == 2 and pos[i] != i


def test_positive_is_uniform_over_the_others():
    labels = labels_of({0: 4})
    index = torch.full((4000,), 2)
    counts = Counter(positive_indices(index, labels, gen(0)).tolist())
    assert set(counts) == {0, 1, 3}
    assert all(abs(c / 4000 - 1 / 3) < 0.03 for c in counts.values())


def test_loader_positives_follow_their_samples():
    store = random_store(COUNTS)
    cfg = ReidInput(size=(12, 6), batch_size=8, num_instances=2, positives=True, sampler="shuffle")
    for batch in ReidLoader(store, cfg, seed=0).epoch(0):
        assert torch.equal(store.labels[batch.positive_indices], batch.labels)
        assert batch.positives.shape == batch.images.shape


# ---------------------------------------------------------------------------------------------- augmentation


def reference_augment(img: torch.Tensor, u: dict, cfg: ReidInput) -> torch.Tensor:
    """BoT's per-image transforms written out plainly: flip, pad, crop, ToTensor, Normalize, RandomErasing."""
    _, height, width = img.shape
    x = img.clone()
    if u["flip"] < cfg.flip_p:
        x = torch.flip(x, dims=[2])
    p = cfg.pad
    if cfg.pad_mode == "zero":
        padded = F.pad(x, (p, p, p, p), mode="constant", value=0)
    else:
        padded = F.pad(x.float()[None], (p, p, p, p), mode="replicate")[0].to(torch.uint8)
    top, left = int(u["crop"][0] * (2 * p + 1)), int(u["crop"][1] * (2 * p + 1))  # randint(0, 2p)
    x = padded[:, top : top + height, left : left + width]
    x = x.float().div(255)
    for c in range(3):
        x[c] = (x[c] - cfg.mean[c]) / cfg.std[c]
    er = cfg.erasing
    if u["erase"] >= er.p:
        return x
    for a in range(er.attempts):
        target = (er.area[0] + (er.area[1] - er.area[0]) * u["area"][a]) * (height * width)
        ratio = er.aspect + (1 / er.aspect - er.aspect) * u["aspect"][a]
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if w < width and h < height:
            x1 = int(u["position"][0] * (height - h + 1))  # randint(0, H - h)
            y1 = int(u["position"][1] * (width - w + 1))
            fill = cfg.mean if er.fill == "mean" else (0.0, 0.0, 0.0)
            for c in range(3):
                x[c, x1 : x1 + h, y1 : y1 + w] = fill[c]
            return x
    return x


@pytest.mark.parametrize(
    "pad_mode,fill,p_erase,flip_p",
    [("zero", "mean", 0.5, 0.5), ("edge", "zero", 0.7, 0.5), ("zero", "zero", 1.0, 0.0), ("edge", "mean", 0.0, 1.0)],
)
def test_batched_augment_equals_per_image_reference(pad_mode, fill, p_erase, flip_p):
    cfg = ReidInput(
        size=(16, 8), pad=3, pad_mode=pad_mode, flip_p=flip_p, erasing=Erasing(p=p_erase, attempts=20, fill=fill)
    )
    images = torch.randint(0, 256, (40, 3, 16, 8), generator=gen(1), dtype=torch.uint8)
    draws = draw_augment(40, 20, gen(2))
    out = apply_augment(images, draws, cfg)
    first_fit_later = erased = 0
    for i in range(40):
        u = {k: getattr(draws, k)[i].tolist() for k in ("flip", "crop", "erase", "area", "aspect", "position")}
        expected = reference_augment(images[i], u, cfg)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)
        fill_value = cfg.mean[0] if fill == "mean" else 0.0
        erased += int(torch.isclose(expected[0], torch.tensor(fill_value)).sum() > 2)
        target0 = (0.02 + 0.38 * u["area"][0]) * 128
        ratio0 = 0.3 + (1 / 0.3 - 0.3) * u["aspect"][0]
        first_fit_later += int(u["erase"] < p_erase and round(math.sqrt(target0 / ratio0)) >= 8)  # w0 too wide
    if p_erase == 1.0:  # the data exercise the "first attempt does not fit" path and actual erasing
        assert erased > 20 and first_fit_later > 0
    if p_erase == 0.0:
        assert erased == 0


def test_random_erasing_alone_matches_reference():
    er = Erasing(p=0.8, fill="zero", attempts=10)
    x = torch.randn(16, 3, 16, 8)
    out = random_erasing(x, er, generator=gen(4))
    draws = draw_augment(16, 10, gen(4))
    for i in range(16):
        u = {k: getattr(draws, k)[i].tolist() for k in ("erase", "area", "aspect", "position")}
        ref = x[i].clone()
        if u["erase"] < er.p:
            for a in range(er.attempts):
                target = (er.area[0] + (er.area[1] - er.area[0]) * u["area"][a]) * 128
                ratio = er.aspect + (1 / er.aspect - er.aspect) * u["aspect"][a]
                h, w = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
                if w < 8 and h < 16:
                    x1, y1 = int(u["position"][0] * (16 - h + 1)), int(u["position"][1] * (8 - w + 1))
                    ref[:, x1 : x1 + h, y1 : y1 + w] = 0
                    break
        assert torch.equal(out[i], ref), i


def test_pad_crop_offsets_cover_the_whole_range():
    # crop offsets are uniform on {0, ..., 2*pad}: with pad=1 a single bright pixel lands in 3x3 places
    img = torch.zeros(1, 3, 5, 5, dtype=torch.uint8)
    img[0, :, 2, 2] = 255
    cfg = ReidInput(size=(5, 5), pad=1, flip_p=0.0, erasing=Erasing(p=0.0), mean=(0, 0, 0), std=(1, 1, 1))
    draws = draw_augment(900, 1, gen(0))
    out = apply_augment(img.expand(900, 3, 5, 5), draws, cfg)
    where = Counter(tuple((o[0] == 1).nonzero()[0].tolist()) for o in out)
    assert set(where) == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}
    assert all(abs(n / 900 - 1 / 9) < 0.04 for n in where.values())


# ---------------------------------------------------------------------------------------------- decoding


def test_decode_matches_torchvision_resize_and_normalize(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for i, (h, w) in enumerate([(40, 20), (33, 17), (16, 8)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        records.append(Record(f"{i}.png", 10 + i, i))
    for interp, mode in (("bilinear", InterpolationMode.BILINEAR), ("bicubic", InterpolationMode.BICUBIC)):
        store = ImageStore.from_records(tmp_path, records, (16, 8), interp, {10: 0, 11: 1, 12: 2}, workers=2)
        assert store.labels.tolist() == [0, 1, 2] and store.camids.tolist() == [0, 1, 2]
        for i, record in enumerate(records):
            pil = TF.resize(Image.open(tmp_path / record.path).convert("RGB"), [16, 8], interpolation=mode)
            assert torch.equal(store.images[i], TF.pil_to_tensor(pil))
            expected = TF.normalize(TF.to_tensor(pil), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
            ours = normalize(store.images[i : i + 1], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[0]
            torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_decode_missing_image_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        decode_images(tmp_path, ["nope.jpg"], (16, 8))


def test_loaders_over_one_store_share_its_device_copy():
    store = random_store(COUNTS)
    assert store.to("cpu") is store
    assert store.to("meta") is store.to("meta") and store.to("meta").images.device.type == "meta"


def test_anchor_batches_every_image_anchors_one_group_of_its_identity():
    from personlab.data.loader import anchor_batches

    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4])  # identities 2 and 4 have a single image
    batches = anchor_batches(labels, batch_size=8, num_instances=4, generator=torch.Generator().manual_seed(3))
    assert len(batches) == len(labels) // 2  # P = 2 groups per batch, one group per anchor
    anchors = []
    for batch in batches:
        for group in batch.view(-1, 4):
            anchor, rest = int(group[0]), group[1:]
            anchors.append(anchor)
            assert (labels[group] == labels[anchor]).all()
            if labels[anchor] in (2, 4):
                assert rest.tolist() == [anchor] * 3  # alone: repeats itself instead of crashing
            elif labels[anchor] == 0:
                assert anchor not in rest.tolist() and len(set(rest.tolist())) == 3  # enough others: no repeats
            else:
                assert anchor not in rest.tolist()  # fewer others than K-1: drawn with replacement
    assert sorted(anchors) == list(range(len(labels)))
