"""Reusable graph layers (pure PyTorch; the Triton kernels load only on CUDA)."""
