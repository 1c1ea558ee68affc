"""Kernels: each defined by a NumPy reference (the specification) that the GPU versions match."""
