"""DASViT: the supernet of mixed edges, the bi-level progressive search, derivation and selection."""
