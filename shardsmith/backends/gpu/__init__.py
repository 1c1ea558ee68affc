"""The GPU backend (cuDF + CuPy). Imported only when the GPU engine is chosen and usable."""
