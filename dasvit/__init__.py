"""dasvit: differentiable architecture search for Vision Transformers (DASViT).

The engine: config, data, search space, search, retrain, profiling. It imports no UI; everything it has
to say goes into the run directory (see `dasvit.run.layout`).
"""

from .threads import configure_openmp

configure_openmp()  # before torch loads OpenMP: idle threads sleep instead of spinning (dasvit.threads)

__version__ = "0.1.0"


def load_model(run_dir, device="cpu"):
    """The trained network of a retrain run (RUN_DIR or RUN_DIR/retrain), in eval mode."""
    from .train.retrain import load_model as _load

    return _load(run_dir, device=device)


__all__ = ["__version__", "load_model"]
