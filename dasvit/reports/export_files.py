"""The files of an export besides the weights: model.py (dasvit's network code and this export's footer),
config.json, the model card, and the ONNX and torch.export programs, each checked against the network."""

from __future__ import annotations

import datetime
import importlib.util
import io
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from .. import limits as lim
from ..errors import UserError
from ..fmt import count
from ..run import jsonio

if TYPE_CHECKING:
    from .export import Exportable

FORMAT = "dasvit-export"
NETWORK_CODE = Path(__file__).resolve().parent.parent / "model" / "network.py"
CHECK_TOLERANCE = 1e-4  # max |Δ logit| between an export format and dasvit's network (fp32)


def model_py(exp: Exportable) -> str:
    """model.py: dasvit's network code unchanged, then this export's footer."""
    return NETWORK_CODE.read_text() + FOOTER.format(name=exp.name)


FOOTER = '''

# ---------------------------------------------------------------------------------------------
# this export (written by `dasvit export`; everything above is dasvit's own network code, unchanged)

MODEL_NAME = "{name}"


def pretrained_cfg(config: dict[str, Any]) -> dict[str, Any]:
    """What timm's data pipeline reads from a model (resolve_data_config): input size, mean, std, crop."""
    i = config["input"]
    return {{
        "input_size": (i["channels"], i["image_size"], i["image_size"]),
        "mean": tuple(i["mean"]),
        "std": tuple(i["std"]),
        "interpolation": i.get("interpolation", "bilinear"),
        "crop_pct": i["crop"] / i["resize"],
        "crop_mode": "center",
        "num_classes": config["sizes"]["num_classes"],
        "first_conv": "embed.proj",
        "classifier": "head.fc",
    }}


def create(pretrained: bool = True, num_classes: int | None = None, drop_path_rate: float = 0.0, **_timm) -> Network:
    """The network of the folder this file is in; with `pretrained` its weights (model.safetensors), in eval
    mode. `num_classes` other than the export's puts a new, untrained head on; `drop_path_rate` sets stochastic
    depth for fine-tuning. timm's create_model calls it (its other arguments are accepted and left alone)."""
    folder = Path(__file__).resolve().parent
    config = json.loads((folder / "config.json").read_text())
    net = build(config, drop_path_rate)
    if pretrained:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        net.eval()
    if num_classes is not None and num_classes != config["sizes"]["num_classes"]:
        net.head = Head(config["sizes"]["embed_dim"], num_classes)
    net.pretrained_cfg = pretrained_cfg(config)
    net.num_classes = net.head.fc.out_features
    return net


def _register_with_timm() -> None:
    """`timm.create_model(MODEL_NAME, pretrained=True)` once this file is imported, where timm is installed."""
    try:
        from timm.models import register_model
    except ImportError:  # timm is optional
        return

    def entry(pretrained: bool = False, **kwargs) -> Network:
        return create(pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = MODEL_NAME
    entry.__module__ = __name__
    register_model(entry)


_register_with_timm()
'''


def config_json(exp: Exportable, params: int, flops: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": 1,
        "name": exp.name,
        "genotype": exp.genotype.to_json(),
        "sizes": exp.sizes.asdict(),
        "input": exp.input,
        "class_names": exp.class_names,
        "source": {
            **exp.source,
            "params": params,
            "flops": flops,
            "dasvit": __version__,
            "torch": torch.__version__.split("+")[0],
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _figure(src: dict[str, Any]) -> str:
    top1 = src.get("top1")
    if not isinstance(top1, (int, float)):
        return "none measured (" + (src.get("note") or "no weights") + ")"
    split = src.get("split") or "the run's reported split"
    epoch = f", epoch {src['epoch']}" if src.get("epoch") is not None else ""
    return f"top-1 {top1:.2%} on {split}{epoch}"


def model_card(doc: dict[str, Any]) -> str:
    src, s, i = doc["source"], doc["sizes"], doc["input"]
    edges = "\n".join(f"| {e['from']} | {e['to']} | {e['op']} |" for e in doc["genotype"]["edges"])
    layers = doc["genotype"].get("layers")
    per_layer = (
        f"\nEach of the {len(layers)} layers has its own op on every edge (config.json `genotype.layers`).\n"
        if layers
        else ""
    )
    names = doc.get("class_names")
    classes = (
        f"{s['num_classes']} ({', '.join(names[:12])}{', ...' if len(names) > 12 else ''})"
        if names
        else str(s["num_classes"])
    )
    return f"""# {doc["name"]}

A Vision Transformer whose encoder cell was found by architecture search with
dasvit (DASViT{", FocusFormer" if src.get("kind") == "specialized" else ""}),
exported on {src["time"][:10]} by dasvit {src["dasvit"]} (torch {src["torch"]}).

| | |
|---|---|
| source | {src.get("kind")}: {src.get("run") or src.get("genotype") or src.get("exported_from")} |
| weights | {src.get("weights") or "none: architecture only"} |
| accuracy | {_figure(src)} |
| size | {count(src["params"])} params, {count(src["flops"])} FLOPs per image |
| network | {s["depth"]} cells of width {s["embed_dim"]}, {s["patch_size"]}-px patches |
| input | {s["in_chans"]} x {s["image_size"]} x {s["image_size"]}, mean {i.get("mean")}, std {i.get("std")} ({i.get("dataset")}) |
| classes | {classes} |
| licence | (fill in) |

## The cell

| from | to | op |
|---|---|---|
{edges}
{per_layer}
Node j is the sum of its incoming edges; nodes 0 and 1 are the two previous cells' outputs; the cell's output
is the sum of nodes {doc["genotype"]["output"]}. `msa_h` is pre-norm multi-head self-attention with h heads,
`mlp_r` a pre-norm MLP of hidden width r x D, `skip` the identity.

## Use

```python
import sys; sys.path.insert(0, "path/to/this/folder")
import model
net = model.load("path/to/this/folder")   # eval mode; needs torch and safetensors
logits = net(images)                      # images normalised as config.json's "input" says
```

With timm installed, `import model` registers it: `timm.create_model("{doc["name"]}", pretrained=True)`.
`model.onnx` (if present) takes `images` [batch, {s["in_chans"]}, {s["image_size"]}, {s["image_size"]}] and gives
`logits`; `model.pt2` is a `torch.export` program (`torch.export.load`).
"""


def load_model_py(path: Path):
    """The written model.py as a module of its own (it imports nothing of dasvit)."""
    spec = importlib.util.spec_from_file_location(f"_dasvit_export_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and timm's registry look their module up
    with warnings.catch_warnings():  # timm, where installed, says it replaces an earlier export of this name
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def probe(exp: Exportable, batch: int) -> torch.Tensor:
    s = exp.sizes
    return torch.randn(batch, s.in_chans, s.image_size, s.image_size, generator=torch.Generator().manual_seed(0))


def write_onnx(net: torch.nn.Module, exp: Exportable, path: Path) -> str:
    """model.onnx (batch axis dynamic): torch's dynamo exporter (needs onnxscript), else the TorchScript one."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("--onnx needs the onnx package: pip install 'dasvit[export]'.") from None
    x = probe(exp, 2)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if importlib.util.find_spec("onnxscript") is not None:
            batch = torch.export.Dim("batch", min=1, max=lim.MAX_BATCH)
            program = torch.onnx.export(
                net,
                (x,),
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
            program.save(str(tmp))
            how = "dynamo exporter"
        else:
            torch.onnx.export(
                net,
                (x,),
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                dynamo=False,
            )
            how = "TorchScript exporter"
    os.replace(tmp, path)
    return how


def check_onnx(net: torch.nn.Module, exp: Exportable, path: Path) -> float | None:
    """Max |Δ logit| of model.onnx against the network through onnxruntime at a batch of 3 (None without it)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = probe(exp, 3)
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        return _checked((torch.from_numpy(y) - net(x)).abs().max().item(), "model.onnx")


def _checked(diff: float, what: str) -> float:
    """A check's max |Δ logit|; a bug (RuntimeError) past CHECK_TOLERANCE: an export must compute the network."""
    if not diff <= CHECK_TOLERANCE:
        raise RuntimeError(f"{what} differs from dasvit's network by {diff:.2e} on the same images")
    return diff


def check_model_py(net: torch.nn.Module, exp: Exportable, out: Path) -> float:
    """Max |Δ logit| of the written model.py + model.safetensors against the network, at a batch of 2."""
    module = load_model_py(out / "model.py")
    x = probe(exp, 2)
    with torch.no_grad():
        return _checked((module.load(out)(x) - net(x)).abs().max().item(), "model.py")


def write_pt2(net: torch.nn.Module, exp: Exportable, path: Path) -> float:
    """model.pt2 (torch.export, batch axis dynamic); returns the loaded program's max |Δ logit| at a batch of 3."""
    batch = torch.export.Dim("batch", min=1, max=lim.MAX_BATCH)
    program = torch.export.export(net, (probe(exp, 2),), dynamic_shapes=({0: batch},))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    jsonio.atomic_write_bytes(path, buf.getvalue())
    x = probe(exp, 3)
    with torch.no_grad():
        return _checked((torch.export.load(str(path)).module()(x) - net(x)).abs().max().item(), "model.pt2")
