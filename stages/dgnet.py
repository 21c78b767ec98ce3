"""Stage ``dgnet``: DG-Net (joint generative and discriminative learning) distilled from ``models/teacher``.

Reads params sections ``common`` and ``dgnet``, ``data/splits/reid`` and ``models/teacher``. Writes
``models/dgnet/`` (``model.pt`` + ``model.json``: the appearance encoder, arch ``dgnet``, what the evaluate
stage scores; ``generator.pt`` and ``discriminator.pt`` with their rebuild arguments in ``model.json``) and
``metrics/pictures/dgnet_swap.png`` (also refreshed at every checkpoint); the engine writes
``checkpoints/dgnet/``, ``dvclive/dgnet/`` and ``metrics/train/dgnet.json``. See docs/dgnet.md.

Usage: ``python stages/dgnet.py`` from the project root (DVC runs ``${common.launcher} stages/dgnet.py``).
"""

import sys

import torch

from personlab.data.loader import ImageStore
from personlab.data.openreid import SplitError, load_reid_split
from personlab.dgnet_train import DGNetTask, picture_images, write_swap_picture
from personlab.engine import fit
from personlab.io import atomic_dir, save_checkpoint
from personlab.models import load_model
from personlab.models.resnet import PretrainedWeightsError
from personlab.params import ParamsError, load_section, section_digest
from personlab.reid_train import reid_meta, split_digest

TEACHER = "models/teacher"
OUT = "models/dgnet"
PICTURE = "metrics/pictures/dgnet_swap.png"


def main() -> int:
    try:
        common, params = load_section("common"), load_section("dgnet")
        split = load_reid_split()
        teacher, teacher_meta = load_model(TEACHER)
        if teacher_meta.get("arch") != "ft_net":
            raise ValueError(f"{TEACHER}: arch {teacher_meta.get('arch')!r}, DG-Net distils from an ft_net teacher")
        teacher_labels = {int(pid): int(label) for pid, label in teacher_meta.get("pid2label", {}).items()}
        if teacher_labels != split.pid2label:
            raise ValueError(
                f"{TEACHER}: its pid->label map is not this split's; the teacher's soft labels would name other "
                "identities. Re-run the teacher stage on data/splits/reid (dvc repro teacher)"
            )
        cfg = params.input
        store = ImageStore.from_records(split.root, split.train, cfg.size, cfg.interpolation, split.pid2label)
        pictures = picture_images(store, params.pictures, cfg.mean, cfg.std)
        task = DGNetTask(
            params, store, split.num_classes, teacher, seed=common.seed, pictures=pictures, picture_path=PICTURE
        )
        digest = section_digest(common, params, split_digest(split), {"teacher": teacher_meta["params_digest"]})
        result = fit(task, stage="dgnet", common=common, loop=params.train, digest=digest)
    except (ParamsError, SplitError, PretrainedWeightsError, FileNotFoundError, FloatingPointError,
            ValueError) as exc:  # ValueError includes a checkpoint that does not match its model
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not result.is_main:
        return 0
    appearance, generator, discriminator = (
        result.modules[k] for k in ("appearance", "generator", "discriminator")
    )
    a = params.appearance
    arch_kwargs = {
        "num_classes": split.num_classes, "depth": a.depth, "stride": a.stride, "bottleneck": a.bottleneck,
        "detach_code": a.detach_code,
    }
    meta = reid_meta("dgnet", arch_kwargs, split, cfg, [a.bottleneck, a.bottleneck], digest, "dgnet")
    g, d = params.generator, params.discriminator
    meta["generator"] = {
        "code_channels": appearance.code_channels, "dim": g.dim, "mlp_dim": g.mlp_dim, "dilations": list(g.dilations),
    }
    meta["discriminator"] = {
        "dim": d.dim, "num_layers": d.num_layers, "num_res": d.num_res, "num_scales": d.num_scales,
    }
    with atomic_dir(OUT) as tmp:
        save_checkpoint(tmp, appearance.state_dict(), meta)
        torch.save({k: v.detach().cpu() for k, v in generator.state_dict().items()}, tmp / "generator.pt")
        torch.save({k: v.detach().cpu() for k, v in discriminator.state_dict().items()}, tmp / "discriminator.pt")
    write_swap_picture(generator, appearance, pictures.to(next(generator.parameters()).device), cfg.mean, cfg.std, PICTURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
