"""Import checkpoints of the original repositories into personlab's model layouts.

One function per original layout (``import_bot``, ``import_ft_net``, ...) turns an original state dict into
one of our models plus the ``arch_kwargs`` that rebuild it; shared helpers read files safely and load
strictly. Loading is strict on purpose: a missing or unexpected key means the file is not the model it claims
to be (wrong repository, wrong depth, an optimizer file), and a partial load would evaluate a half-random
network. Errors list the offending keys under their *original* names, as the user sees them in the file.

Command line (writes ``<out_dir>/model.pt`` + ``model.json``, ready for ``stages/evaluate.py``)::

    python -m personlab.models.convert bot resnet50_model_120_state.pth models/baseline
    python -m personlab.models.convert ft_net net_last.pth models/teacher --stride 1

Files are read with ``weights_only=True``: nothing is unpickled. BoT (ignite 0.1.2) saved *whole pickled
modules*; convert those once to a state dict where the original code is importable (see
:data:`personlab.models.state.PICKLED_MODULE_HELP`). The generic helpers (safe reading, strict loading)
live in ``personlab.models.state`` so that training stages can use them without depending on this file.
"""

from __future__ import annotations

import argparse
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

import personlab
from personlab.io import md5sum, save_checkpoint
from personlab.models import build
from personlab.models.state import CheckpointMismatch, check_state, load_strict, read_state_dict
from personlab.models.state import mismatch_message as _mismatch_message

__all__ = [
    "IMPORTERS",
    "CheckpointMismatch",
    "KeyLayout",
    "export_dgnet",
    "import_bot",
    "import_dgnet_dis",
    "import_dgnet_gen",
    "import_dgnet_id",
    "import_ft_net",
    "import_relation",
    "load_strict",
    "main",
    "read_dgnet_file",
    "read_state_dict",
    "resnet_depth",
    "write_imported",
]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class KeyLayout:
    """How an original layout's key prefixes map onto ours; ``optional_drop`` prefixes are discarded if
    present (weights the original carries but never uses, e.g. torchvision's ImageNet ``fc``)."""

    renames: tuple[tuple[str, str], ...]
    optional_drop: tuple[str, ...] = ()

    def to_original(self, key: str) -> str | None:
        for original, ours in self.renames:
            if key.startswith(ours):
                return original + key[len(ours):]
        return None


def _import_into(model: nn.Module, state: dict[str, torch.Tensor], layout: KeyLayout, source: str) -> nn.Module:
    """Rename ``state`` by ``layout`` and load it strictly; errors name keys as the original file spells them."""
    state = {k: v for k, v in state.items() if not k.startswith(layout.optional_drop)}
    own = model.state_dict()
    ours = {layout.to_original(k): k for k in own}
    if None in ours:
        raise TypeError(f"key layout does not cover the model's keys {[k for k in own if layout.to_original(k) is None]}")
    check_state({original: own[k].shape for original, k in ours.items()}, state, source)
    model.load_state_dict({ours[k]: v for k, v in state.items()}, strict=True)
    return model


def resnet_depth(state: dict[str, torch.Tensor], prefix: str, source: str) -> int:
    """Infer a torchvision-layout ResNet's depth from its blocks per stage (no config is stored with it)."""
    from personlab.models.resnet import DEPTHS, BasicBlock

    pattern = re.compile(rf"^{re.escape(prefix)}layer(\d)\.(\d+)\.")
    blocks = [0, 0, 0, 0]
    for key in state:
        m = pattern.match(key)
        if m:
            stage, index = int(m.group(1)) - 1, int(m.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    for depth, (block, layers, _) in DEPTHS.items():
        if tuple(blocks) == layers and (block is BasicBlock) != bottleneck:
            return depth
    raise CheckpointMismatch(
        f"{source}: no ResNet under '{prefix}' matches (blocks per stage {blocks}, "
        f"{'bottleneck' if bottleneck else 'basic'} blocks); expected keys like {prefix}layer1.0.conv1.weight "
        f"of a ResNet-{'/'.join(str(d) for d in DEPTHS)}"
    )


def _require(state: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointMismatch(f"{source}: state dict does not match the model; missing keys (1): {key}")
    return state[key]


BOT_LAYOUT = KeyLayout(renames=(("base.", "backbone."), ("bottleneck.", "bottleneck."), ("classifier.", "classifier.")))


def import_bot(
    state: dict[str, torch.Tensor],
    last_stride: int = 1,
    stem_relu: bool = False,
    neck_feat: str = "after",
    source: str = "BoT checkpoint",
) -> tuple[nn.Module, dict]:
    """reid-strong-baseline ``Baseline`` (``base.*``, ``bottleneck.*``, ``classifier.*``) -> our ``bot``.

    Depth, class count and neck come from the weights; stride and the stem ReLU are not stored in them, so
    they are arguments (BoT's defaults: last stride 1, no stem ReLU).
    """
    neck = "bnneck" if "bottleneck.weight" in state else "no"
    kwargs = {
        "num_classes": int(_require(state, "classifier.weight", source).shape[0]),
        "depth": resnet_depth(state, "base.", source),
        "last_stride": last_stride,
        "stem_relu": stem_relu,
        "neck": neck,
        "neck_feat": neck_feat,
    }
    return _import_into(build("bot", kwargs), state, BOT_LAYOUT, source), kwargs


FT_NET_LAYOUT = KeyLayout(
    renames=(
        ("model.", "backbone."),
        ("classifier.add_block.", "add_block."),
        ("classifier.classifier.0.", "classifier."),
    ),
    optional_drop=("model.fc.",),
)


def import_ft_net(
    state: dict[str, torch.Tensor], stride: int = 2, source: str = "ft_net checkpoint"
) -> tuple[nn.Module, dict]:
    """layumi / DG-Net ``ft_net`` (``model.*``, ``classifier.add_block.*``, ``classifier.classifier.0.*``) ->
    our ``ft_net``; the unused ImageNet ``model.fc.*`` is dropped. ``stride`` is layumi's ``--stride``
    (``opts.yaml``); DG-Net's released teacher uses 2."""
    kwargs = {
        "num_classes": int(_require(state, "classifier.classifier.0.weight", source).shape[0]),
        "depth": resnet_depth(state, "model.", source),
        "stride": stride,
        "linear": int(_require(state, "classifier.add_block.0.weight", source).shape[0]),
    }
    return _import_into(build("ft_net", kwargs), state, FT_NET_LAYOUT, source), kwargs


# ---- DG-Net (NVlabs/DG-Net): gen_*.pt / id_*.pt / dis_*.pt, each {'a': state_dict} ----------------------

DGNET_ID_LAYOUT = KeyLayout(
    renames=(
        ("model.", "backbone."),
        ("classifier1.add_block.", "primary.add_block."),
        ("classifier1.classifier.0.", "primary.classifier."),
        ("classifier2.add_block.", "fine.add_block."),
        ("classifier2.classifier.0.", "fine.classifier."),
    ),
    optional_drop=("model.fc.",),
)

# Our generator key -> the original AdaINGen key. Indices of the original nn.Sequential: enc_content.model
# = [4 conv blocks, ResBlocks, ASPP]; dec.model = [Dropout, ResBlocks, Upsample, conv, Upsample, conv, 3 convs].
_GEN_RULES: tuple[tuple[str, Callable[[re.Match], str]], ...] = (
    (r"structure_encoder\.stem\.(\d+)\.", lambda m: f"enc_content.model.{m[1]}."),
    (r"structure_encoder\.res_blocks\.(\d+)\.conv([12])\.", lambda m: f"enc_content.model.4.model.{m[1]}.model.{int(m[2]) - 1}."),
    (r"structure_encoder\.aspp\.branch1\.", lambda m: "enc_content.model.5.conv1."),
    (r"structure_encoder\.aspp\.branch_d3\.", lambda m: "enc_content.model.5.conv6."),
    (r"structure_encoder\.aspp\.branch_d6\.", lambda m: "enc_content.model.5.conv12."),
    (r"structure_encoder\.aspp\.branch_d9\.", lambda m: "enc_content.model.5.conv18."),
    (r"structure_encoder\.aspp\.fuse\.", lambda m: "enc_content.model.5.fuse."),
    (r"decoder\.res_blocks\.(\d+)\.conv([12])\.", lambda m: f"dec.model.1.model.{m[1]}.model.{int(m[2]) - 1}."),
    (r"decoder\.up_blocks\.(\d+)\.block\.norm\.weight$", lambda m: f"dec.model.{3 + 2 * int(m[1])}.norm.gamma"),
    (r"decoder\.up_blocks\.(\d+)\.block\.norm\.bias$", lambda m: f"dec.model.{3 + 2 * int(m[1])}.norm.beta"),
    (r"decoder\.up_blocks\.(\d+)\.block\.", lambda m: f"dec.model.{3 + 2 * int(m[1])}."),
    (r"decoder\.head\.(\d+)\.", lambda m: f"dec.model.{6 + int(m[1])}."),
    (r"mlp_scale\.(\d+)\.fc([123])\.", lambda m: f"mlp_w{int(m[1]) + 1}.model.{int(m[2]) - 1}.fc."),
    (r"mlp_shift\.(\d+)\.fc([123])\.", lambda m: f"mlp_b{int(m[1]) + 1}.model.{int(m[2]) - 1}.fc."),
)


def _rename(key: str, rules: Sequence[tuple[str, Callable[[re.Match], str]]]) -> str:
    for pattern, replace in rules:
        m = re.match(pattern, key)
        if m:
            return replace(m) + key[m.end():]
    raise AssertionError(f"no original name for model key {key!r}")


def _dis_rules(model: nn.Module) -> tuple[tuple[str, Callable[[re.Match], str]], ...]:
    """MsImageDis: ``cnns.<scale>`` = [conv blocks..., ResBlocks..., Conv2d] flattened into one Sequential."""
    head = len(model.scales[0].body)
    return (
        (r"scales\.(\d+)\.body\.(\d+)\.conv([12])\.", lambda m: f"cnns.{m[1]}.{m[2]}.model.{int(m[3]) - 1}."),
        (r"scales\.(\d+)\.body\.(\d+)\.", lambda m: f"cnns.{m[1]}.{m[2]}."),
        (r"scales\.(\d+)\.head\.", lambda m: f"cnns.{m[1]}.{head}."),
    )


def _adain_dummies(model: nn.Module) -> dict[str, torch.Tensor]:
    """The original AdaIN layers' unused running buffers (zeros / ones): accepted on import, written on export."""
    out = {}
    for i, block in enumerate(model.decoder.res_blocks):
        for j in (0, 1):
            c = block.conv1.conv.out_channels
            out[f"dec.model.1.model.{i}.model.{j}.norm.running_mean"] = torch.zeros(c)
            out[f"dec.model.1.model.{i}.model.{j}.norm.running_var"] = torch.ones(c)
    return out


def _import_renamed(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    to_original: Callable[[str], str],
    ignored: Sequence[str],
    source: str,
) -> nn.Module:
    """Strict load through a key renaming; ``ignored`` original keys must be present but are discarded."""
    own = model.state_dict()
    expected = {to_original(k): k for k in own}
    wanted = set(expected) | set(ignored)
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted)
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[expected[k]].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != own[expected[k]].shape
    )
    if missing or unexpected or shapes:
        raise CheckpointMismatch(_mismatch_message(source, missing, unexpected, shapes))
    model.load_state_dict({expected[k]: state[k] for k in expected}, strict=True)
    return model


def read_dgnet_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A DG-Net snapshot (``gen_/id_/dis_XXXXXXXX.pt``): ``{'a': state_dict}`` read with ``weights_only=True``
    and unwrapped. ``optimizer.pt`` (keys gen/id/dis) is refused with a message saying which files to pass."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable DG-Net snapshot ({str(exc).splitlines()[0]})") from None
    if isinstance(obj, dict) and set(obj) == {"a"} and isinstance(obj["a"], dict):
        obj = obj["a"]
    elif isinstance(obj, dict) and {"gen", "id", "dis"} <= set(obj):
        raise ValueError(f"{path}: this is DG-Net's optimizer.pt; pass the gen_/id_/dis_XXXXXXXX.pt files instead")
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{path}: expected DG-Net's {{'a': state_dict}} (or a plain state dict), got {type(obj).__name__} "
            f"with keys {sorted(obj)[:8] if isinstance(obj, dict) else []}"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def import_dgnet_id(
    state: dict[str, torch.Tensor], stride: int = 1, source: str = "DG-Net id checkpoint"
) -> tuple[nn.Module, dict]:
    """DG-Net ``ft_netAB`` (``id_*.pt``: ``model.*``, ``classifier{1,2}.add_block.*``,
    ``classifier{1,2}.classifier.0.*``) -> our ``dgnet`` appearance encoder; the unused ImageNet
    ``model.fc.*`` is dropped. ``stride`` is DG-Net's ``ID_stride`` (1 in ``latest.yaml``)."""
    kwargs = {
        "num_classes": int(_require(state, "classifier1.classifier.0.weight", source).shape[0]),
        "depth": resnet_depth(state, "model.", source),
        "stride": stride,
        "bottleneck": int(_require(state, "classifier1.add_block.0.weight", source).shape[0]),
    }
    return _import_into(build("dgnet", kwargs), state, DGNET_ID_LAYOUT, source), kwargs


def import_dgnet_gen(state: dict[str, torch.Tensor], source: str = "DG-Net gen checkpoint") -> tuple[nn.Module, dict]:
    """DG-Net ``AdaINGen`` (``gen_*.pt``) -> our :class:`~personlab.models.dgnet.Generator` and its kwargs.

    The AdaIN layers' dummy ``running_mean/var`` buffers must be present and are discarded. Released
    generators built with non-local layers (DG-Net issue #39) fail here, listing those keys as unexpected.
    """
    from personlab.models.dgnet import Generator

    mlp = _require(state, "mlp_w1.model.0.fc.weight", source)
    kwargs = {
        "code_channels": int(mlp.shape[1]),
        "dim": int(_require(state, "enc_content.model.0.conv.weight", source).shape[0]),
        "mlp_dim": int(mlp.shape[0]),
    }
    model = Generator(**kwargs)
    _import_renamed(model, state, lambda k: _rename(k, _GEN_RULES), sorted(_adain_dummies(model)), source)
    return model, kwargs


def import_dgnet_dis(state: dict[str, torch.Tensor], source: str = "DG-Net dis checkpoint") -> tuple[nn.Module, dict]:
    """DG-Net ``MsImageDis`` (``dis_*.pt``: ``cnns.<scale>.<layer>.*``) -> our
    :class:`~personlab.models.dgnet.MultiScaleDiscriminator` and its kwargs (all read off the shapes)."""
    from personlab.models.dgnet import MultiScaleDiscriminator

    first = _require(state, "cnns.0.0.conv.weight", source)
    scales = sorted({int(k.split(".")[1]) for k in state if re.match(r"cnns\.\d+\.", k)})
    layers = sorted({int(k.split(".")[2]) for k in state if re.match(r"cnns\.0\.\d+\.", k)})
    res = [i for i in layers if f"cnns.0.{i}.model.0.conv.weight" in state]
    plain = [i for i in layers if f"cnns.0.{i}.conv.weight" in state]
    kwargs = {
        "in_channels": int(first.shape[1]),
        "dim": int(first.shape[0]),
        "num_layers": (len(plain) - 3) // 2 + 1,
        "num_res": len(res),
        "num_scales": len(scales),
    }
    model = MultiScaleDiscriminator(**kwargs)
    rules = _dis_rules(model)
    _import_renamed(model, state, lambda k: _rename(k, rules), (), source)
    return model, kwargs


def export_dgnet(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our DG-Net module (appearance encoder, generator or discriminator) as the original's state dict, so
    the original code (or a round-trip test) can load it. The appearance encoder gets no ``model.fc``."""
    from personlab.models.dgnet import AppearanceEncoder, Generator, MultiScaleDiscriminator

    state = model.state_dict()
    if isinstance(model, AppearanceEncoder):
        return {DGNET_ID_LAYOUT.to_original(k): v for k, v in state.items()}
    if isinstance(model, Generator):
        out = {_rename(k, _GEN_RULES): v for k, v in state.items()}
        out.update(_adain_dummies(model))
        return out
    if isinstance(model, MultiScaleDiscriminator):
        rules = _dis_rules(model)
        return {_rename(k, rules): v for k, v in state.items()}
    raise TypeError(f"not a DG-Net module: {type(model).__name__}")


# ---- RRID (cvlab-yonsei/RRID): RelationModel, saved as a pickled DataParallel module ------------------------


def _relation_layout(partitions: Sequence[int]) -> KeyLayout:
    """RRID names every unit per partition ``n`` (``local_6_conv_list.3``, ``fc_global_max_4_list.0``);
    ours groups them under ``branches.<n>``."""
    renames: list[tuple[str, str]] = [("base.", "backbone.")]
    for n in partitions:
        ours = f"branches.{n}."
        for unit in ("local", "rest", "relation"):
            renames += [(f"{unit}_{n}_conv_list.{i}.", f"{ours}{unit}.{i}.") for i in range(n)]
        renames += [
            (f"global_{n}_max_conv_list.0.", f"{ours}global_max."),
            (f"global_{n}_rest_conv_list.0.", f"{ours}global_rest."),
            (f"global_{n}_pooling_conv_list.0.", f"{ours}global_pool."),
        ]
        for head in ("local", "rest", "local_rest"):
            renames += [(f"fc_{head}_{n}_list.{i}.", f"{ours}fc_{head}.{i}.") for i in range(n)]
        renames += [
            (f"fc_global_{n}_list.0.", f"{ours}fc_global."),
            (f"fc_global_max_{n}_list.0.", f"{ours}fc_global_max."),
            (f"fc_global_rest_{n}_list.0.", f"{ours}fc_global_rest."),
        ]
    return KeyLayout(renames=tuple(renames))


def import_relation(
    state: dict[str, torch.Tensor], last_stride: int = 1, source: str = "RRID checkpoint"
) -> tuple[nn.Module, dict]:
    """RRID ``RelationModel`` (``base.*``, ``local_6_conv_list.*``, ``fc_global_2_list.*`` ...) -> our
    ``relation``. Depth, width and class count come from the weights; the released model uses last stride 1."""
    from personlab.models.relation import PARTITIONS

    kwargs = {
        "num_classes": int(_require(state, "fc_local_6_list.0.weight", source).shape[0]),
        "depth": resnet_depth(state, "base.", source),
        "last_stride": last_stride,
        "dim": int(_require(state, "local_6_conv_list.0.0.weight", source).shape[0]),
    }
    return _import_into(build("relation", kwargs), state, _relation_layout(PARTITIONS), source), kwargs


@dataclass(frozen=True)
class Importer:
    """An original layout: its import function, how the evaluator splits its embedding, its CLI options."""

    function: Callable[..., tuple[nn.Module, dict]]
    arch: str
    embedding_parts: Callable[[dict], list[int]]
    reader: Callable[[str | Path], dict[str, torch.Tensor]] = read_state_dict  # DG-Net wraps its dicts
    interpolation: str = "bilinear"  # the original test resize: BoT bilinear, layumi/DG-Net bicubic


IMPORTERS: dict[str, Importer] = {
    "bot": Importer(import_bot, "bot", lambda kw: [2048 if kw["depth"] >= 50 else 512]),
    "ft_net": Importer(import_ft_net, "ft_net", lambda kw: [kw["linear"]], interpolation="bicubic"),
    "relation": Importer(import_relation, "relation", lambda kw: [15 * kw["dim"]]),
    "dgnet": Importer(
        import_dgnet_id, "dgnet", lambda kw: [kw["bottleneck"], kw["bottleneck"]], reader=read_dgnet_file
    ),
}


def write_imported(
    kind: str,
    src: str | Path,
    out_dir: str | Path,
    input_size: tuple[int, int] = (256, 128),
    **options,
) -> dict:
    """Import ``src`` with importer ``kind`` and write ``out_dir/model.pt`` + ``model.json``; return the meta.

    The original label order is unknown to us, so ``pid2label`` is left empty: imported models are for
    evaluation (embeddings), not for resuming classification.
    """
    if kind not in IMPORTERS:
        raise KeyError(f"unknown checkpoint kind {kind!r}; known: {', '.join(sorted(IMPORTERS))}")
    importer = IMPORTERS[kind]
    src = Path(src)
    model, kwargs = importer.function(importer.reader(src), source=str(src), **options)
    meta = {
        "arch": importer.arch,
        "arch_kwargs": kwargs,
        "num_classes": kwargs["num_classes"],
        "pid2label": {},
        "input_size": list(input_size),
        "interpolation": importer.interpolation,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "embedding_parts": importer.embedding_parts(kwargs),
        "params_digest": f"import:{md5sum(src)}",
        "personlab_version": personlab.__version__,
        "stage": f"import:{kind}",
    }
    save_checkpoint(out_dir, model.state_dict(), meta)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m personlab.models.convert",
        description="Convert an original repository's checkpoint into personlab's models/<name>/ layout.",
    )
    parser.add_argument("kind", choices=sorted(IMPORTERS), help="original layout: bot (reid-strong-baseline), "
                        "ft_net (layumi baseline / DG-Net teacher), relation (RRID, its state dict), "
                        "dgnet (DG-Net id_XXXXXXXX.pt)")
    parser.add_argument("src", help="state-dict file of the original model (weights_only=True)")
    parser.add_argument("out_dir", help="folder to write model.pt and model.json into, e.g. models/baseline")
    parser.add_argument("--input-size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"))
    parser.add_argument("--last-stride", type=int, choices=(1, 2), default=None,
                        help="bot: layer4 stride (default 1); ft_net: layumi --stride (default 2); "
                        "dgnet: ID_stride (default 1)")
    parser.add_argument("--stem-relu", action="store_true", help="bot: the checkpoint's ResNet has the stem ReLU")
    parser.add_argument("--neck-feat", choices=("after", "before"), default="after",
                        help="bot: evaluate on the post-BN (after) or pre-BN (before) feature")
    args = parser.parse_args(argv)
    if args.kind == "bot":
        options = {"last_stride": args.last_stride or 1, "stem_relu": args.stem_relu, "neck_feat": args.neck_feat}
    elif args.kind == "dgnet":
        options = {"stride": args.last_stride or 1}
    elif args.kind == "relation":
        options = {"last_stride": args.last_stride or 1}
    else:
        options = {"stride": args.last_stride or 2}
    try:
        meta = write_imported(args.kind, args.src, args.out_dir, tuple(args.input_size), **options)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}/model.pt and model.json ({meta['arch']} {meta['arch_kwargs']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
