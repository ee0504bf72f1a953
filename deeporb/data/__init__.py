"""Training data: split by piece, token cache, windows and augmentation, the DataModule."""
