"""`dasvit export`: a network out of dasvit, as a folder that any PyTorch program loads without dasvit.

SOURCE → OUT/

- `model.py`: dasvit's own network code (`dasvit/model/network.py`) as it is, so that there is one definition
  of the network, not a second one for export; then a footer for this export: `create()` (this folder's
  network) and, when timm is installed, timm's `register_model` under `MODEL_NAME`. It imports torch (and
  safetensors to read the weights), nothing of dasvit.
- `config.json`: the genotype, the sizes (`build` reads them), the input (image size, channels, the mean and
  std the network was trained with, how images are brought to size), the class names when the data has them,
  and where it came from (run, epoch, split, top-1, params, FLOPs).
- `model.safetensors`: the weights, keyed as model.py names its parameters (absent when the source has none).
- `README.md`: a short model card.
- `model.onnx` with `onnx` (a dynamic batch axis; compared with PyTorch through onnxruntime when it is
  installed), `model.pt2` with `torch_export` (`torch.export`, a dynamic batch axis).

Sources: a retrain run (its best epoch's weights, or the last), a search run (the cell at its retrain sizes,
no weights: a network for someone else's training), a genotype file or a built-in (vit_b16) with a preset for
its sizes, a FocusFormer subnet `dasvit specialize` wrote (its inherited weights beside it), or a folder this
command wrote (exported again, e.g. to add ONNX). Everything read is untrusted: a damaged config.json or a
truncated safetensors file is one sentence.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import limits as lim
from ..errors import CheckpointError, ConfigError, RunDirError, UserError
from ..fmt import count
from ..model.cost import Sizes, network_cost
from ..model.genotype import Genotype, genotype_from_json, load_genotype, network_sizes
from ..run import jsonio, layout
from ..run.checkpoint import load_fitting, load_weights, read_weights_file, save_weights
from ..run.config import Config
from .export_files import FORMAT, check_model_py, check_onnx, config_json, model_card, model_py, write_onnx, write_pt2

CONFIG, WEIGHTS, MODEL, CARD, ONNX, PT2 = (
    "config.json",
    "model.safetensors",
    "model.py",
    "README.md",
    "model.onnx",
    "model.pt2",
)
FILES = (CONFIG, WEIGHTS, MODEL, CARD, ONNX, PT2)


@dataclass
class Exportable:
    """A network to export: its cell, sizes, weights (None: architecture only) and what a reader needs."""

    genotype: Genotype
    sizes: Sizes
    state: dict[str, torch.Tensor] | None
    input: dict[str, Any]
    class_names: list[str] | None
    source: dict[str, Any]
    name: str


# ---------------------------------------------------------------------------------------------
# from a source to an Exportable


def input_spec(cfg: Config) -> dict[str, Any]:
    """How an image reaches the network, as the retrain's evaluation transform does it (dasvit.train.images)."""
    from ..train.images import image_channels, normalization

    s = cfg.data.image_size
    mean, std = normalization(cfg.data)
    shorter = int(s * 256 / 224) if cfg.data.name in ("imagenet100", "imagefolder") else s
    return {
        "image_size": s,
        "channels": image_channels(cfg.data),
        "mean": list(mean),
        "std": list(std),
        "resize": shorter,  # the shorter side is resized to this (bilinear), then the centre s x s is cropped
        "crop": s,
        "interpolation": "bilinear",
        "range": "pixels scaled to [0, 1], then (x - mean) / std per channel",
        "dataset": cfg.data.name,
    }


def _class_names(cfg: Config, num_classes: int) -> list[str] | None:
    from ..train.data import class_names

    names = class_names(cfg.data)
    return names if names is not None and len(names) == num_classes else None


def _num_classes(cfg: Config) -> int:
    from ..train.data import build_datasets, num_classes

    return num_classes(cfg.data) or build_datasets(cfg.data).num_classes


def _slug(*parts: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", "_".join(str(p) for p in parts if p).lower()).strip("_") or "network"


def _retrain_source(run_dir: Path, which: str) -> Exportable:
    from ..run.presets import load_run_config
    from ..run.records import DamagedRecord, read_metrics

    cfg = load_run_config(run_dir / layout.CONFIG)
    genotype = load_genotype(run_dir / layout.GENOTYPE)
    path = run_dir / (layout.BEST if which == "best" else layout.LAST)
    if not path.is_file():
        hint = "has a retrain epoch finished there?" if which == "best" else "it is written when the retrain ends."
        raise RunDirError(f"{run_dir} has no {path.name}; {hint}")
    saved = read_weights_file(path)
    state = saved.get("model")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"{path} holds no network weights; retrain to write it again.")
    proj = state.get("embed.proj.weight")
    num_classes, in_chans = saved.get("num_classes"), proj.shape[1] if isinstance(proj, torch.Tensor) else None
    if type(num_classes) is not int or in_chans is None:
        raise CheckpointError(f"{path} does not say its classes and channels; retrain to write it again.")
    sizes = dataclasses.replace(network_sizes(cfg, genotype), num_classes=num_classes, in_chans=in_chans)
    source: dict[str, Any] = {"kind": "retrain", "run": str(run_dir.resolve()), "weights": which}
    try:
        m = read_metrics(run_dir)
    except (FileNotFoundError, DamagedRecord):
        m = None
    if which == "best":
        source.update(epoch=saved.get("epoch"), top1=m and m["top1"], top5=m and m["top5"])
        source["selected_on"] = m.get("selected_on") if m else None
    else:
        source.update(epoch=saved.get("epoch"), top1=m and m.get("last_top1"), top5=m and m.get("last_top5"))
    source["split"] = (m.get("splits") or {}).get("top1") if m else None
    source["val_top1"] = m.get("val_top1") if m and which == "best" else None
    if m is None:
        source["note"] = "the retrain has no metrics.json yet: no test figures"
    name = _slug("dasvit", cfg.data.name, (genotype.meta or {}).get("builtin") or "searched")
    return Exportable(genotype, sizes, state, input_spec(cfg), _class_names(cfg, num_classes), source, name)


def _architecture_source(source: str, cfg: Config, genotype: Genotype, kind: str, run: Path | None) -> Exportable:
    """A cell without trained weights (a search run, a genotype file, a built-in): the network at the config's
    retrain sizes, initialised as a retrain starts it."""
    from ..train.images import image_channels

    n = _num_classes(cfg)
    sizes = network_sizes(cfg, genotype, n, image_channels(cfg.data))
    src = {"kind": kind, "run": str(run.resolve()) if run else None, "genotype": source, "weights": None}
    src["note"] = "architecture only: no trained weights (train it, or retrain it with dasvit and export that run)"
    builtin = (genotype.meta or {}).get("builtin")
    return Exportable(
        genotype, sizes, None, input_spec(cfg), _class_names(cfg, n), src, _slug("dasvit", cfg.data.name, builtin)
    )


def _specialized_source(path: Path, genotype: Genotype, cfg: Config) -> Exportable:
    """A FocusFormer subnet `dasvit specialize` wrote: its own depth and width, the supernet's weights beside it."""
    from ..train.images import image_channels

    meta = genotype.meta or {}
    n = meta.get("num_classes") if type(meta.get("num_classes")) is int else _num_classes(cfg)
    chans = meta.get("in_chans") if type(meta.get("in_chans")) is int else image_channels(cfg.data)
    sizes = network_sizes(cfg, genotype, n, chans)
    weights = layout.inherited_weights_path(path)
    state = load_weights(weights, "inherited weights") if weights.is_file() else None
    source = {
        "kind": "specialized",
        "run": str(path.resolve().parent.parent),
        "genotype": str(path.resolve()),
        "weights": "inherited" if state is not None else None,
        "method": meta.get("method"),
        "flops_budget": meta.get("flops_budget"),
        "supernet_epoch": meta.get("supernet_epoch"),
        "top1": meta.get("top1_inherited") if state is not None else None,
        "split": "validation (held out of the training set), with the supernet's weights: no retrain",
    }
    if state is None:
        source["note"] = f"no {weights.name} beside the genotype (specialized before weights were kept): no weights"
    name = _slug("dasvit_focus", cfg.data.name, path.stem)
    return Exportable(genotype, sizes, state, input_spec(cfg), _class_names(cfg, n), source, name)


def resolve(
    source: str, preset: str | None = None, overrides: list[str] | tuple[str, ...] = (), which: str = "best"
) -> Exportable:
    """What `source` exports as (see the module's docstring); every mistake is one sentence."""
    from ..run.presets import load_config, preset_names
    from ..run.runstatus import summarize

    if which not in ("best", "last"):
        raise ConfigError(f"the weights to export are best or last, got {which!r}.")
    path = Path(source)
    if path.is_dir() and (path / CONFIG).is_file() and not (path / layout.CONFIG).exists():
        return read_export(path)
    if path.is_dir():
        layout.require_run_dir(path)
        kind = summarize(path).kind
        if kind == "retrain":
            return _retrain_source(path, which)
        if kind == "focus":
            raise RunDirError(
                f"{path} is a FocusFormer run: pick a subnet with `dasvit specialize {path} --flops B`, then export "
                "the specialized/<budget>.json it writes."
            )
        if not (path / layout.GENOTYPE).is_file():
            raise RunDirError(f"{path} has no {layout.GENOTYPE}; export a search run that has finished.")
        cfg = load_config(preset or str(path / layout.CONFIG), list(overrides))
        exp = _architecture_source(str(path), cfg, load_genotype(path / layout.GENOTYPE), "search", path)
        if (path / layout.RETRAIN / layout.BEST).is_file():
            exp.source["note"] += f"; its retrain is {path / layout.RETRAIN}: export that for the trained weights"
        return exp
    genotype = load_genotype(source)
    config_dir = layout.config_dir_for(source)
    if preset is None and config_dir is None:
        raise ConfigError(
            f"{source} carries no sizes or data; pass --preset ({', '.join(preset_names())} or a YAML file)."
        )
    cfg = load_config(preset or str(config_dir / layout.CONFIG), list(overrides))
    if layout.specialized_run(path) is not None and genotype.version == 2:
        return _specialized_source(path, genotype, cfg)
    kind = "builtin" if str(source) in ("vit_b16", "vit_block") else "genotype"
    return _architecture_source(str(source), cfg, genotype, kind, config_dir)


# ---------------------------------------------------------------------------------------------
# reading an exported folder back (untrusted)


def _positive(bound: int):
    return lambda v: type(v) is int and 1 <= v <= bound


SIZE_BOUNDS = {
    "depth": lim.MAX_DEPTH,
    "embed_dim": lim.MAX_EMBED_DIM,
    "image_size": lim.MAX_IMAGE_SIZE,
    "patch_size": lim.MAX_IMAGE_SIZE,
    "num_classes": lim.MAX_CLASSES,
    "in_chans": 4,
}


def read_export(folder: Path) -> Exportable:
    """An exported folder's config.json and weights, checked: one sentence for anything wrong."""
    folder = Path(folder)
    path = folder / CONFIG
    where = jsonio.printable(path, False)
    try:
        doc = jsonio.read_json_file(path)
    except (OSError, ValueError, UserError) as e:
        raise ConfigError(f"{where} cannot be read as JSON ({jsonio.printable(str(e)[:160], False)}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f'{where} is not a config.json that dasvit export wrote (no "format": "{FORMAT}").')
    sizes = doc.get("sizes")
    if not isinstance(sizes, dict):
        raise ConfigError(f'{where} has no "sizes" object.')
    for key, bound in SIZE_BOUNDS.items():
        if not _positive(bound)(sizes.get(key)):
            raise ConfigError(
                f"{where}: sizes.{key} must be a whole number from 1 to {bound:,}, got {sizes.get(key)!r:.40}."
            )
    genotype = genotype_from_json(doc.get("genotype"), source=str(path))
    checked = Sizes(**{k: sizes[k] for k in SIZE_BOUNDS})
    from .cell import check_sizes

    check_sizes(checked)
    weights = folder / WEIGHTS
    state = load_weights(weights, "exported weights") if weights.exists() else None
    spec = doc.get("input") if isinstance(doc.get("input"), dict) else {}
    names = doc.get("class_names")
    names = [str(n) for n in names] if isinstance(names, list) and len(names) == checked.num_classes else None
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    name = doc.get("name") if isinstance(doc.get("name"), str) and doc["name"].isidentifier() else "dasvit_network"
    return Exportable(genotype, checked, state, spec, names, {**source, "exported_from": str(folder.resolve())}, name)


# ---------------------------------------------------------------------------------------------
# writing


def build(exp: Exportable) -> torch.nn.Module:
    """dasvit's network of `exp`, its weights loaded (one sentence when they do not fit), in eval mode."""
    from ..model.build import network
    from ..run.runtime import allocating

    s = exp.sizes
    with allocating("the network", "its depth or width"):
        net = network(exp.genotype, s.depth, s.embed_dim, s.image_size, s.patch_size, s.num_classes, 0.0, s.in_chans)
    if exp.state is not None:
        load_fitting(net, exp.state, "the weights")
    return net.eval()


def check_out(out: Path) -> None:
    """OUT may be absent, empty, or an earlier export (replaced); nothing else is written over."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is not a directory; name a folder to export into.")
    if out.is_dir():
        found = [p.name for p in out.iterdir()]
        if found and not (out / CONFIG).is_file():
            raise RunDirError(
                f"{out} holds other files ({', '.join(sorted(found)[:3])}); export into a new or empty folder."
            )
        if (out / layout.CONFIG).exists():
            raise RunDirError(f"{out} is a run directory; export into a folder of its own.")
    layout.ensure_writable(out, "the export folder", "name another --out")


def export(
    source: str,
    out: str | Path,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    which: str = "best",
    weights: bool = True,
    onnx: bool = False,
    torch_export: bool = False,
    name: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export `source` into `out` (see the module's docstring); returns config.json's content."""
    out = Path(out)
    exp = resolve(source, preset, overrides, which)
    if out.resolve() == Path(source).resolve():
        raise RunDirError(f"{out} is the source itself; export into another folder.")
    check_out(out)
    if name is not None:
        if not name.isidentifier():
            raise ConfigError(f"--name must be a Python identifier (timm registers it), got {name!r:.60}.")
        exp.name = name
    if not weights:
        exp.state, exp.source = None, {**exp.source, "weights": None, "note": "exported without weights (--no-weights)"}
    net = build(exp)
    cost = network_cost(exp.genotype, exp.sizes)
    doc = config_json(exp, cost.params, cost.flops)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (WEIGHTS, ONNX, PT2):  # an earlier export's files that this one does not rewrite
        (out / stale).unlink(missing_ok=True)
    jsonio.atomic_write_text(out / MODEL, model_py(exp))
    jsonio.atomic_write_text(out / CONFIG, json.dumps(doc, indent=2) + "\n")
    if exp.state is not None:
        save_weights(out / WEIGHTS, net.state_dict(), metadata={"format": "pt", "name": exp.name})
        diff = check_model_py(net, exp, out)
        say(f"model.py + {WEIGHTS}: loaded back, the same logits as dasvit's network (max |Δ| {diff:.1e})")
    jsonio.atomic_write_text(out / CARD, model_card(doc))
    if onnx:
        how = write_onnx(net, exp, out / ONNX)
        diff = check_onnx(net, exp, out / ONNX)
        checked = (
            f"onnxruntime: max |Δ| {diff:.1e} at batch 3" if diff is not None else "onnxruntime not installed: not run"
        )
        say(f"{ONNX}: {how}, dynamic batch; {checked}")
    if torch_export:
        diff = write_pt2(net, exp, out / PT2)
        say(f"{PT2}: torch.export, dynamic batch; loaded back: max |Δ| {diff:.1e} at batch 3")
    say(
        f"exported {exp.source.get('kind')} ({count(cost.params)} params, {count(cost.flops)} FLOPs"
        f"{', no weights' if exp.state is None else ''}) to {out}"
    )
    return doc
