// shardsmith CUDA common definitions.
//
// Every kernel source starts with this header. It compiles two ways: with NVRTC for the GPU
// (__CUDACC__ defined) and with a host C++ compiler in the tests, where the per-element device
// functions run on the CPU against the NumPy references (shardsmith/kernels/hostcc.py). So it
// includes nothing under NVRTC and only <math.h> / <string.h> on the host, and every function that
// computes a result is an SS_DEV function usable from both.
#pragma once

#ifdef __CUDACC__
#define SS_DEV __device__ __forceinline__
#define SS_HOST_EXPORT
#else
#include <math.h>
#include <string.h>
#define SS_DEV static inline
#define SS_HOST_EXPORT extern "C" __attribute__((visibility("default")))
#endif

typedef unsigned long long ss_u64;
typedef long long ss_i64;
typedef unsigned int ss_u32;
typedef unsigned short ss_u16;
typedef unsigned char ss_u8;

SS_DEV ss_u64 ss_bits(double x) {
#ifdef __CUDACC__
  return (ss_u64)__double_as_longlong(x);
#else
  ss_u64 b;
  memcpy(&b, &x, sizeof b);
  return b;
#endif
}

SS_DEV double ss_from_bits(ss_u64 b) {
#ifdef __CUDACC__
  return __longlong_as_double((long long)b);
#else
  double x;
  memcpy(&x, &b, sizeof x);
  return x;
#endif
}

// The constants the op templates (shardsmith/ops/numeric.py) may render.
#ifndef CUDART_NAN
#define CUDART_NAN (ss_from_bits(0x7FF8000000000000ULL))
#endif
#ifndef CUDART_INF
#define CUDART_INF (ss_from_bits(0x7FF0000000000000ULL))
#endif

SS_DEV bool ss_isnan(double x) { return x != x; }

// --- validity bitmasks (Arrow / cuDF layout: bit i of 32-bit word i/32, least significant first) ---
SS_DEV bool ss_valid(const ss_u32* mask, ss_i64 bit) {
  return mask == 0 || ((mask[bit >> 5] >> (bit & 31)) & 1u) != 0;
}

// --- float16 <-> float64, bit-exact with NumPy (round to nearest, ties to even) ----------------------
SS_DEV double ss_f16_to_f64(ss_u16 h) {
  ss_u64 sign = (ss_u64)(h & 0x8000u) << 48;
  ss_u32 exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  if (exp == 0x1Fu) {  // inf / NaN (the payload is kept in the top mantissa bits)
    return ss_from_bits(sign | 0x7FF0000000000000ULL | ((ss_u64)man << 42));
  }
  if (exp == 0) {  // zero or subnormal: man * 2**-24, exact in float64
    double v = (double)man * (1.0 / 16777216.0);
    return sign ? -v : v;
  }
  return ss_from_bits(sign | ((ss_u64)(exp + 1008) << 52) | ((ss_u64)man << 42));
}

SS_DEV ss_u16 ss_f64_to_f16(double x) {
  ss_u64 b = ss_bits(x);
  ss_u16 sign = (ss_u16)((b >> 48) & 0x8000u);
  ss_u64 a = b & 0x7FFFFFFFFFFFFFFFULL;
  if (a >= 0x7FF0000000000000ULL) {  // inf stays inf; NaN keeps its top payload bits (NumPy's rule)
    ss_u16 r = (ss_u16)(0x7C00u + (ss_u16)((a & 0xFFFFFFFFFFFFFULL) >> 42));
    if (a != 0x7FF0000000000000ULL && r == 0x7C00u) r += 1;
    return sign | r;
  }
  if ((a >> 52) == 0) return sign;  // float64 zero or subnormal: far below the float16 range
  int e = (int)(a >> 52) - 1023;
  if (e > 15) return sign | 0x7C00u;
  ss_u64 mant = (a & 0xFFFFFFFFFFFFFULL) | (1ULL << 52);
  int shift;
  ss_u32 base;
  if (e >= -14) {
    shift = 42;
    base = (ss_u32)(e + 14) << 10;  // (biased exponent - 1) << 10: the implicit bit adds the last 1
  } else {
    shift = 28 - e;  // a subnormal result: units of 2**-24
    base = 0;
    if (shift > 63) return sign;
  }
  ss_u64 m = mant >> shift, rem = mant & ((1ULL << shift) - 1), half = 1ULL << (shift - 1);
  if (rem > half || (rem == half && (m & 1ULL))) m += 1;  // a carry moves into the exponent, as it should
  return (ss_u16)(sign | (ss_u16)(base + (ss_u32)m));
}

// --- infinities are missing: an infinite input or result of an elementwise op is NaN ----------------
SS_DEV double ss_no_inf(double x) { return fabs(x) < CUDART_INF ? x : CUDART_NAN; }  // NaN stays NaN

// --- the per-op rounding rule: every stage's result is rounded to that stage's dtype ----------------
SS_DEV double ss_round_f64(double x) { return ss_no_inf(x); }
SS_DEV double ss_round_f32(double x) { return ss_no_inf((double)(float)x); }
SS_DEV double ss_round_f16(double x) { return ss_no_inf(ss_f16_to_f64(ss_f64_to_f16(x))); }
SS_DEV double ss_round_int(double x) { return ss_no_inf(rint(x)); }  // half to even, as np.rint; NaN stays NaN

// --- bucketize: the number of boundaries <= x (NumPy searchsorted side='right'); NaN stays NaN -------
SS_DEV double bucketize(double x, const double* b, ss_i64 n) {
  if (ss_isnan(x)) return x;
  ss_i64 lo = 0, hi = n;  // invariant: b[j] <= x for j < lo, b[j] > x for j >= hi
  while (lo < hi) {
    ss_i64 mid = lo + ((hi - lo) >> 1);
    if (b[mid] <= x) lo = mid + 1; else hi = mid;
  }
  return (double)lo;
}
