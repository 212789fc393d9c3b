"""Unlearning by distillation (D2DGN, Sinha et al., arXiv:2309.16173) per model family.

In: a trained model (the preserver), the deleted users/edges. Out: the student's parameters
that forget them, and the forgetting measures (``eval``).
"""
