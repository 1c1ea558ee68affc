"""Compile CUDA sources with NVRTC without a GPU (cuda-bindings' ``nvrtc`` module and the NVRTC
library from the ``nvidia-cuda-nvrtc`` wheel): how CI proves that every kernel, generated ones
included, compiles for the architectures we ship to, on machines that have no GPU."""

from __future__ import annotations

from shardsmith.kernels.sources import NVRTC_OPTIONS, KernelSource

ARCHS = ("sm_90", "sm_80")


class CudaCompileError(Exception):
    """NVRTC rejected a source; the message carries NVRTC's log (file, line and error)."""


def unavailable_reason() -> str | None:
    try:
        from cuda.bindings import nvrtc  # lazy: cuda-bindings is optional (the gpu and test extras)

        err, major, minor = nvrtc.nvrtcVersion()
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return f"NVRTC does not load ({err.name})"
    except Exception as exc:  # noqa: BLE001 - any failure to load means no NVRTC here
        return f"NVRTC is not installed ({type(exc).__name__}: {exc}); pip install cuda-bindings nvidia-cuda-nvrtc"
    return None


def version() -> tuple[int, int]:
    from cuda.bindings import nvrtc  # lazy: cuda-bindings is optional (the gpu and test extras)

    _, major, minor = nvrtc.nvrtcVersion()
    return major, minor


def compile_source(src: KernelSource, arch: str = "sm_90", extra: tuple[str, ...] = ()) -> bytes:
    """The CUBIN of ``src`` for ``arch``; raises CudaCompileError with NVRTC's log on failure."""
    return _compile(src, arch, extra, "CUBIN")


def compile_ptx(src: KernelSource, arch: str = "compute_90") -> str:
    """The PTX of ``src`` for the virtual architecture ``arch`` (tests read which instructions a
    kernel uses: float32 or float64 arithmetic)."""
    return _compile(src, arch, (), "PTX").rstrip(b"\x00 ").decode()


def _compile(src: KernelSource, arch: str, extra: tuple[str, ...], output: str) -> bytes:
    from cuda.bindings import nvrtc  # lazy: cuda-bindings is optional (the gpu and test extras)

    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
    err, prog = nvrtc.nvrtcCreateProgram(src.text.encode(), src.name.encode(), 0, [], [])
    _check(err, ok, src, "create")
    try:
        opts = [f"-arch={arch}".encode(), *(o.encode() for o in NVRTC_OPTIONS), *(o.encode() for o in extra)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != ok:
            raise CudaCompileError(f"{src.name} ({arch}): {err.name}\n{_log(nvrtc, prog)}")
        err, size = getattr(nvrtc, f"nvrtcGet{output}Size")(prog)
        _check(err, ok, src, f"{output} size")
        out = b" " * size
        (err,) = getattr(nvrtc, f"nvrtcGet{output}")(prog, out)
        _check(err, ok, src, output)
        return out
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _log(nvrtc, prog) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    return log.rstrip(b"\x00 ").decode(errors="replace")


def _check(err, ok, src: KernelSource, what: str) -> None:
    if err != ok:
        raise CudaCompileError(f"{src.name}: NVRTC {what} failed: {err.name}")
