"""What a config, a genotype file or a flag may ask for: bounds well above any real use and well below what
would exhaust the allocator or the patience of a loop. Each is said in the sentence that refuses it. No torch.

The largest networks in use are far inside them: ViT-22B is 48 layers of width 6144 with 48 heads and an
MLP ratio of 4; a DASViT cell has 3 or 4 intermediate nodes; ViT-B/16 at 224 px reads 197 tokens.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, UserError

MAX_EMBED_DIM = 8192  # token width (space.embed_dim, focus.embed_dims, --dim, a genotype's embed_dim)
MAX_HEADS = 256  # msa_<heads>
MAX_MLP_RATIO = 64  # mlp_<ratio>
MAX_NODES = 32  # intermediate nodes of a cell (space.nodes, a genotype's nodes): 560 edges
MAX_EDGES = 4096  # edges listed in a genotype (an edge may carry several ops)
MAX_DEPTH = 1024  # cells stacked (search stages, retrain.depth, focus.depths, --depth)
MAX_TOKENS = 4097  # patches + the class token of one image: 64 x 64 patches
MAX_IMAGE_SIZE = 4096  # pixels on a side
MAX_CLASSES = 1_000_000
MAX_COUNT = 1e18  # a FLOPs or params budget (--flops, --params): an exaFLOP per image
MAX_SHOW_PARAMS = 2_000_000_000  # what `dasvit show` builds to count: 8 GiB of float32 weights
MAX_SHOW_OPS = 65_536  # edges x layers `dasvit show` builds (a module each): ViT-22B's 48 layers have 96
MAX_SAMPLES = 100_000  # architectures `dasvit specialize` evaluates (--samples)
MAX_RANDOM_CELLS = 100  # random cells `dasvit compare --random` retrains, each a whole retrain
MAX_REPEATS = 20  # retrains per network of `dasvit compare --repeats`
MAX_PROCESSES = 256  # --nproc ranks on one machine
MAX_THREADS = 1024  # torch threads (--threads)
MAX_WORKERS = 256  # data-loading processes (data.workers): each one is a process
MAX_BATCH = 65_536  # images per batch (data.batch_size, retrain.batch_size, focus.batch_size, focus.lstm.batch_size)
MAX_EPOCHS = 1_000_000  # epochs of a stage or a run, and their warm-ups
MAX_STEPS = 1_000_000_000  # steps_per_epoch, focus.sampler_every, focus.eval_batches
MAX_SEED = 2**32 - 1  # every seed (torch's generators take 64 bits, and the data seed is multiplied)
MAX_LSTM_HIDDEN = 4096  # focus.lstm.hidden: the sampler's LSTM width (FocusFormer's is 64)
MAX_BUDGET_BINS = 256  # focus.budget_bins: each bin is an architecture scored every epoch
MAX_CHOICES = 256  # a config's lists: space.ops, search.stages, focus.embed_dims/depths/heads/mlp_ratios
MAX_SAMPLER_DRAWS = 4096  # focus.lstm.archs, .budgets, .cost_archs: draws of one sampler step, per bin or budget


def check_at_most(value: Any, bound: float, key: str, error: type[UserError] = ConfigError) -> None:
    """One sentence naming `key` and its bound when `value` is above it."""
    if value > bound:
        raise error(f"{key} is at most {bound:,}, got {value:,}.")
