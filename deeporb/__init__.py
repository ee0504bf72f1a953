"""DeepOrb: LSTM music generation from MIDI with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
