"""Training: data, augmentation, the shared training loop, retraining a cell from scratch."""
