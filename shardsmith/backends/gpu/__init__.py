"""The GPU backend (cuDF + CuPy + generated CUDA kernels). ``GpuBackend`` is imported on first use,
so that this package (its lowering table, its plan notes) imports on machines without a GPU."""


def __getattr__(name):
    if name == "GpuBackend":
        from shardsmith.backends.gpu.backend import GpuBackend  # lazy: it imports cuDF and CuPy

        return GpuBackend
    raise AttributeError(name)
