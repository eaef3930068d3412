"""Probabilistic surrogates: noise schedules, samplers (DDPM, DDIM, DPM-Solver, ...), conditional diffusion and
flow-matching next-step models, PDE-Refiner."""
