// How a kernel body runs: a grid-stride loop on the GPU, a plain loop in the host build used by the
// tests. A kernel written with SS_KERNEL and SS_FOR_EACH compiles both ways from one text.
#pragma once
#include "common.cuh"

#ifdef __CUDACC__
#define SS_KERNEL extern "C" __global__ void
#define SS_FOR_EACH(i, n) \
  for (ss_i64 i = (ss_i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (ss_i64)gridDim.x * blockDim.x)
#else
#define SS_KERNEL SS_HOST_EXPORT void
#define SS_FOR_EACH(i, n) for (ss_i64 i = 0; i < (n); ++i)
#endif
