"""Pure PyTorch graph learning (never imports pyspark): tensors and a config in, tensors out.

``layers/`` one implementation of each propagation, ``models/`` layers + tables + scoring,
``engine/`` the one training loop and each model's fit, ``data/`` samplers and graph tensors,
``eval/`` ranking metrics and evaluators, ``unlearn/`` distill-to-delete per model family.
"""
