"""scOT (Poseidon) in plain PyTorch."""
