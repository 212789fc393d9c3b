"""Training: the one step loop (budget, steps, cadence, logging) and each model's fit.

In: graph tensors (``data/``), a model (``models/``) and a training config. Out: trained
parameters, per-epoch logs and the device chosen once (``device``).
"""
