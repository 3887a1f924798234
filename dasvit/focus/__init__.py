"""FocusFormer: one weight-entangled supernet over an elastic space, a budget-aware sampler, specialization."""
