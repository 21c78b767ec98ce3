"""Training throughput: personlab's input path vs a per-sample PIL-transform DataLoader (what the original
repositories use), with the same BoT model, loss, optimizer and PK batches, side by side in one run.

    .venv/bin/python benchmarks/train_throughput.py [--workers 2] [--steps 3] [--repeats 3] [--only published]

Writes ``metrics/bench/train.json``. Two setups: ``cpu-default`` (the ``baseline`` section of params.yaml when it
exists: its input size, batch and ResNet depth) and ``published`` (256x128, ResNet-50, P x K = 16 x 4).
For each: training images/s with either pipeline and with the model step alone on one pre-made batch
(``model_only``: the rate of a free input path, so ``speedup_bound`` = model_only / pil_dataloader is the
most any input path can gain here), the pipelines alone (input images/s, no model; also with one core each:
torch on one thread vs one DataLoader worker), and the one-off cost of decoding the store.
The source images are Market-sized (128x64) JPEGs written to a temporary folder, so the PIL pipeline pays
what it pays on the real dataset: open, decode, resize, transform, collate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from personlab.data.loader import ImageStore, ReidLoader, pk_batches
from personlab.data.openreid import Record
from personlab.io import read_json, write_json
from personlab.losses import batch_hard_triplet_loss, label_smoothed_cross_entropy
from personlab.models.bot import Baseline
from personlab.params import Erasing, ReidInput, load_section
from personlab.runtime import select_device


def write_images(folder: Path, num_ids: int, per_id: int, seed: int = 0) -> list[Record]:
    """Market-sized JPEGs: a coloured figure per identity on a noisy background (content does not matter here)."""
    rng = np.random.default_rng(seed)
    records = []
    for pid in range(1, num_ids + 1):
        colour = rng.integers(0, 256, 3)
        for j in range(per_id):
            img = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
            img[20:110, 16:48] = colour
            name = f"{pid:04d}_c{j % 6 + 1}s1_{j:06d}_00.jpg"
            Image.fromarray(img).save(folder / name, quality=90)
            records.append(Record(name, pid, j % 6))
    return records


class PILDataset(Dataset):
    """The original repositories' input path: one PIL image at a time through torchvision transforms."""

    def __init__(self, root: Path, records: list[Record], pid2label: dict[int, int], cfg: ReidInput) -> None:
        self.root, self.records, self.pid2label = root, records, pid2label
        interpolation = T.InterpolationMode.BILINEAR if cfg.interpolation == "bilinear" else T.InterpolationMode.BICUBIC
        self.transform = T.Compose([
            T.Resize(list(cfg.size), interpolation=interpolation),
            T.RandomHorizontalFlip(cfg.flip_p),
            T.Pad(cfg.pad),
            T.RandomCrop(list(cfg.size)),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
            T.RandomErasing(cfg.erasing.p, scale=cfg.erasing.area, ratio=(cfg.erasing.aspect, 1 / cfg.erasing.aspect),
                            value=list(cfg.mean)),
        ])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        record = self.records[i]
        with Image.open(self.root / record.path) as img:
            return self.transform(img.convert("RGB")), self.pid2label[record.pid]


def train_step(model, optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
    """BoT's update without the centre loss: label-smoothed CE on logits + batch-hard triplet on features."""
    logits, feat = model(images)
    loss = label_smoothed_cross_entropy(logits, labels, 0.1) + batch_hard_triplet_loss(feat, labels, 0.3)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def timed(batches, steps: int, step_fn) -> float:
    """Images/s over ``steps`` batches after one warm-up batch (worker start-up and first-call costs excluded)."""
    it = iter(batches)
    images, labels = next(it)
    step_fn(images, labels)
    start, seen = time.perf_counter(), 0
    for _ in range(steps):
        images, labels = next(it)
        step_fn(images, labels)
        seen += len(images)
    return seen / (time.perf_counter() - start)


def measure(
    name: str, cfg: ReidInput, depth: int, root: Path, records: list[Record], steps: int, repeats: int,
    workers: int, device: torch.device,
) -> dict:
    pid2label = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    num_classes = len(pid2label)
    t0 = time.perf_counter()
    store = ImageStore.from_records(root, records, cfg.size, cfg.interpolation, pid2label)
    store_seconds = time.perf_counter() - t0

    loader = ReidLoader(store, cfg, seed=0, device=device)
    plan = pk_batches(store.labels, cfg.batch_size, cfg.num_instances, torch.Generator().manual_seed(0))
    dataset = PILDataset(root, records, pid2label, cfg)

    def ours():
        return ((b.images, b.labels) for b in loader.epoch(0))

    def pil(num_workers: int = workers):
        batches = DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=torch.cat(plan).tolist(), num_workers=num_workers,
            drop_last=True, pin_memory=device.type == "cuda",
        )
        return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in batches)

    def sync(x, y):
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    input_steps = min(len(plan), len(loader.epoch(0))) - 1
    if input_steps < steps:
        raise SystemExit(f"{name}: {input_steps + 1} PK batches in the synthetic set, {steps + 1} needed")

    threads = torch.get_num_threads()
    result = {
        "input_size": list(cfg.size), "batch_size": cfg.batch_size, "depth": depth, "store_build_s": store_seconds,
        "load_average_1min": os.getloadavg()[0],  # other processes on the machine: CPU timings depend on it
    }
    result["input_only_images_per_s"] = {
        "personlab": timed(ours(), input_steps, sync),
        "pil_dataloader": timed(pil(), input_steps, sync),
    }
    torch.set_num_threads(1)  # one core each: the main process alone vs one DataLoader worker
    result["input_only_images_per_s_one_core"] = {
        "personlab": timed(ours(), input_steps, sync),
        "pil_dataloader": timed(pil(1), input_steps, sync),
    }
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Baseline(num_classes, depth=depth, last_stride=1).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4)

    def step(x, y):
        train_step(model, optimizer, x, y)
        sync(x, y)

    # the model step alone, on one batch made up front: the rate a free input path would give, so
    # model_only / pil_dataloader bounds the speed-up any input path can bring on this device
    fixed = next(iter(ours()))

    def model_only():
        return iter([fixed] * (steps + 1))

    timed(model_only(), steps, step)  # warm-up, untimed: the first steps pay the allocator's growth
    # alternate the pipelines so that a change in machine load over time biases none; report medians
    runs: dict[str, list[float]] = {"personlab": [], "pil_dataloader": [], "model_only": []}
    for _ in range(repeats):
        runs["personlab"].append(timed(ours(), steps, step))
        runs["pil_dataloader"].append(timed(pil(), steps, step))
        runs["model_only"].append(timed(model_only(), steps, step))
    result["train_images_per_s"] = {key: float(np.median(values)) for key, values in runs.items()}
    result["train_images_per_s_runs"] = runs
    t = result["train_images_per_s"]
    result["speedup"] = t["personlab"] / t["pil_dataloader"]
    result["speedup_bound"] = t["model_only"] / t["pil_dataloader"]
    print(f"{name}: {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="PIL DataLoader workers")
    parser.add_argument("--steps", type=int, default=3, help="timed iterations per training measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating training measurements per pipeline")
    parser.add_argument("--only", choices=["cpu-default", "published"], default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default="metrics/bench/train.json")
    args = parser.parse_args()

    params_file = Path("params.yaml")
    has_baseline = params_file.is_file() and "baseline" in (yaml.safe_load(params_file.read_text()) or {})
    if has_baseline:
        baseline = load_section("baseline")
        cpu_cfg, cpu_depth, source = baseline.input, baseline.model.depth, "params.yaml baseline section"
    else:
        cpu_cfg, cpu_depth, source = ReidInput(size=(128, 64), batch_size=32), 18, "built-in (no baseline section yet)"
    setups = {
        "cpu-default": (cpu_cfg, cpu_depth),
        "published": (ReidInput(size=(256, 128), batch_size=64, num_instances=4, erasing=Erasing(p=0.5)), 50),
    }
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "dataloader_workers": args.workers,
        "cpu_default_source": source,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        records = write_images(root, num_ids=96, per_id=12)
        for name, (cfg, depth) in setups.items():
            if args.only in (None, name):
                results[name] = measure(
                    name, cfg, depth, root, records, args.steps, args.repeats, args.workers, device
                )
    if args.only and Path(args.out).is_file():  # re-measuring one setup keeps the other's numbers
        previous = read_json(args.out)
        previous.update(results)
        results = previous
    write_json(args.out, results)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
