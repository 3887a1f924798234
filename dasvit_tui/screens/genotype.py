"""`g`: the searched cell, drawn by the same renderer as `dasvit show`, with its parameters and FLOPs.

The numbers need a model, so they come from `dasvit show TARGET --format json` in a subprocess, and the
cell is rendered in a worker thread: the UI process never builds a model (nor imports torch).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from dasvit.errors import UserError
from dasvit.fmt import count_in_table
from dasvit.run.jsonio import read_json_file
from dasvit.run.layout import GENOTYPE, stage_genotype
from dasvit_tui.launch import cli_command
from dasvit_tui.state import run_name

SHOW_TIMEOUT = 180


def show_target(run_dir: Path, stage: Any, final: bool) -> Path:
    """What `dasvit show` should measure: the run when its genotype.json is final, else that stage's file."""
    staged = run_dir / stage_genotype(stage)
    if not final and stage is not None and staged.is_file():
        return staged
    return run_dir


def plain_cell(genotype: dict[str, Any]) -> Text:
    """A fallback drawing: node j = op(i) + ... (used only if the shared renderer cannot be loaded)."""
    out = Text()
    edges = genotype.get("edges") if isinstance(genotype.get("edges"), list) else []
    edges = [e for e in edges[:MAX_PLAIN_EDGES] if isinstance(e, dict)]  # a damaged event may hold anything
    for node in sorted({str(e.get("to")) for e in edges}):
        terms = " + ".join(f"{e.get('op')}({e.get('from')})" for e in edges if str(e.get("to")) == node)
        out.append(f"node {node}", style="bold")
        out.append(f" = {terms}\n")
    output = genotype.get("output") if isinstance(genotype.get("output"), list) else []
    out.append("output = " + " + ".join(f"node {o}" for o in output[:MAX_PLAIN_EDGES]), style="bold")
    return out


MAX_PLAIN_EDGES = 200


def format_stats(data: dict[str, Any]) -> Text:
    """One line: params and FLOPs per image, and the sizes they were measured at."""
    out = Text()
    for key, label in (("params", "params"), ("flops", "FLOPs/image")):
        if isinstance(data.get(key), (int, float)):
            out.append(f"{label} ", style="bold")
            out.append(f"{count_in_table(data[key])}   ")
    top1 = (data.get("meta") or {}).get("top1_inherited")
    if isinstance(top1, (int, float)):  # a specialized architecture, scored with the supernet's weights
        out.append("top-1 ", style="bold")
        out.append(f"{top1:.2%} (inherited)   ")
    sizes = [
        f"{label} {data[k]}"
        for k, label in (("depth", "depth"), ("embed_dim", "width"), ("image_size", "image"))
        if k in data
    ]
    if sizes:
        out.append("at " + ", ".join(sizes), style="grey62")
    return out or Text("dasvit show gave no params or FLOPs.", style="yellow")


def load_target(target: Path) -> dict[str, Any]:
    """The genotype JSON of a genotype file, or of a run directory's genotype.json."""
    path = target / GENOTYPE if target.is_dir() else target
    data = read_json_file(path)  # a run directory's file: untrusted, never through a link
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds no genotype object")
    return data


class GenotypeScreen(Screen):
    """A genotype and what it costs. `target` is what `dasvit show` measures (a genotype file or a run
    directory); `genotype` its JSON when the caller has it (a search's event), else read from `target`."""

    BINDINGS = [Binding("escape,g,q", "app.pop_screen", "Back")]

    def __init__(self, target: Path, genotype: dict[str, Any] | None = None, title: str = "genotype") -> None:
        super().__init__()
        self.target = Path(target)
        self.genotype = genotype
        self.title_text = title
        self.stats: dict[str, Any] | None = None  # set once `dasvit show` answered

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble((run_name(self.target), "bold"), f" · {self.title_text}"), id="genotype-title")
        with VerticalScroll(id="cell-scroll"):
            yield Static(Text("drawing the cell…", style="dim"), id="cell")
        yield Static(Text("measuring parameters and FLOPs (dasvit show)…", style="dim"), id="genotype-stats")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#cell-scroll").border_title = "cell"
        self.query_one("#genotype-stats").border_title = "cost"
        self._draw_and_measure()

    @work(thread=True, group="genotype")
    def _draw_and_measure(self) -> None:
        genotype = self.genotype
        if genotype is None:
            try:
                genotype = load_target(self.target)
            except (OSError, ValueError, UserError) as e:
                self.app.call_from_thread(self._set_cell, Text(f"no genotype to show: {e}", style="red"))
                return
        self.app.call_from_thread(self._set_cell, render(genotype))
        stats, problem = measure(self.target)
        if stats is None:
            self.app.call_from_thread(self._set_stats, Text(problem, style="yellow"))
            return
        self.stats = stats
        self.app.call_from_thread(self._set_stats, format_stats(stats))
        self.app.call_from_thread(self._set_cell, render(genotype, stats))

    def _set_cell(self, renderable: RenderableType) -> None:
        self.query_one("#cell", Static).update(renderable)

    def _set_stats(self, text: Text) -> None:
        self.query_one("#genotype-stats", Static).update(text)


def search_genotype_screen(run_dir: Path, genotype: dict[str, Any], stage: Any, final: bool) -> GenotypeScreen:
    """A search's genotype: the final one, or the one derived after `stage`."""
    title = "final genotype" if final or stage is None else f"genotype after stage {stage}"
    return GenotypeScreen(show_target(run_dir, stage, final), genotype, title)


def measure(target: Path) -> tuple[dict[str, Any] | None, str]:
    """Params/FLOPs from `dasvit show TARGET --format json` in a subprocess, or why not."""
    cmd = cli_command("show", str(target), "--format", "json")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SHOW_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"dasvit show took more than {SHOW_TIMEOUT} s."
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["dasvit show failed."])[-1]
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None, "dasvit show gave no JSON."
    return (data, "") if isinstance(data, dict) else (None, "dasvit show gave no JSON object.")


def render(genotype: dict[str, Any], stats: dict[str, Any] | None = None) -> RenderableType:
    """The shared renderer of `dasvit show` (dasvit_tui.render.render_cell); a plain listing and the reason
    when the genotype does not validate."""
    from dasvit.errors import UserError
    from dasvit.model.genotype import genotype_from_json
    from dasvit_tui.render import render_cell

    try:
        cell = genotype_from_json(genotype, source="genotype event")
    except UserError as e:  # a genotype the engine wrote wrong: say so, keep the monitor
        return Text.assemble(plain_cell(genotype), ("\n\n" + str(e), "yellow"))
    if cell.version != 2:
        return render_cell(cell, stats)
    from dasvit_tui.render import cell_diagram, elastic_cell, layer_table

    # a FocusFormer architecture: the cell once (its sizes vary by layer), then a row per layer
    return Group(cell_diagram(elastic_cell(cell)), Text(""), layer_table(cell, (stats or {}).get("per_layer")))
