"""`?`: what each key does and what each panel shows."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# dasvit monitor

| key | what it does |
|---|---|
| `p` | answer the pending stage-pruning proposal |
| `g` | the genotype: the searched cell, its parameters and FLOPs |
| `r` | retrain a finished search's cell (a detached process) |
| `s` | stop the run (asks first; the engine stops after its current step) |
| `Esc` | back to where you came from; from the first monitor, all runs under `runs/` |
| `q` | leave the monitor; **the run goes on** — come back with `dasvit tui RUN_DIR` |
| `?` | this help |

On a FocusFormer run: `b` specializes it for a budget you type (`420K`, `1.4G`; params optional), shows
the architecture found; there `r` retrains it and `g` draws it. `g` on the monitor draws the newest
specialized architecture, the base cell before there is one.

In the pruning dialog: arrows move, `space` toggles an op (each edge keeps at least one),
`a` approves, `x` stops the run, `Esc` decides later (the run waits; `p` brings it back).
In the runs list: `Enter` opens a run, `n` starts a new run from a preset (a search, or a FocusFormer
training for a focus-* preset).

**Panels.** *Pareto* (FocusFormer): FLOPs against validation accuracy of the architectures the sampler
scored, this epoch bright, the budget bins dotted, the front as `◆`. *sampler per budget*: mean FLOPs of
each bin's draws against its budget (red `▶` when over), the share within budget, the entropy.
*loss* and *accuracy*: per epoch across stages, dotted lines where a stage starts.
*op weights*: the softmax weight of every op on every edge; `▸` marks each edge's strongest op, `╌` an op
pruned away. *share*: the mean weight on `skip` and the msa / mlp shares, with the fairness bounds
dotted; below it the fairness loss the α step pays, in its two terms: `skip` (weight on skip above its
fair-share threshold) and `type` (msa / mlp shares outside their bounds). *log*: the engine's output,
warnings and errors, wrapped to the panel. *system*: GPU use on CUDA, else CPU and memory of the engine
process, and its pid (kept once the engine has ended).
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
