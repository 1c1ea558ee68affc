// categorify for string columns: each row's id in a fitted vocabulary (ops/categorical.py).
//
// The vocabulary's strings are hashed (the shardsmith hash, seed 0) and sorted by hash; a row's
// hash is searched among them (binary search) and every vocabulary entry with an equal hash is
// compared with the row byte by byte, so a hash collision can never give a wrong id. The result
// equals pyarrow.compute.index_in on the CPU: FIRST_ID + the entry's position in the vocabulary,
// OOV_ID when absent, NULL_ID for a null. The hashes are computed by xxhash64.cu beforehand.
#include "launch.cuh"
// SS_OOV_ID, SS_NULL_ID, SS_FIRST_ID: generated from kernels/lookup.py (kernels/sources.py GENERATED).
#include "categorify_ids.cuh"

SS_DEV bool ss_bytes_equal(const ss_u8* a, const ss_u8* b, ss_i64 n) {
  for (ss_i64 k = 0; k < n; ++k)
    if (a[k] != b[k]) return false;
  return true;
}

// The first position in the sorted ``vhash`` whose hash is >= key.
SS_DEV ss_i64 ss_lower_bound_u64(const ss_u64* vhash, ss_i64 nv, ss_u64 key) {
  ss_i64 lo = 0, hi = nv;
  while (lo < hi) {
    ss_i64 mid = lo + ((hi - lo) >> 1);
    if (vhash[mid] < key) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// ``offsets`` points at the column's first offset; ``h`` holds each row's hash; the vocabulary is
// ``voffsets`` / ``vchars`` (int32 offsets) with its hashes sorted in ``vhash`` and ``vorder[k]``
// the vocabulary position of the k-th smallest hash.
#define SS_CATEGORIFY_STRINGS(SUFFIX, OFFSET_T)                                                         \
  SS_DEV int ss_categorify_at_##SUFFIX(const OFFSET_T* offsets, const ss_u8* chars, const ss_u32* mask, \
                                       ss_i64 moff, const ss_u64* h, const ss_u64* vhash,               \
                                       const int* vorder, const int* voffsets, const ss_u8* vchars,     \
                                       ss_i64 nv, ss_i64 i) {                                           \
    if (!ss_valid(mask, moff + i)) return SS_NULL_ID;                                                   \
    const ss_u64 key = h[i];                                                                            \
    const ss_i64 start = (ss_i64)offsets[i], len = (ss_i64)offsets[i + 1] - start;                      \
    for (ss_i64 k = ss_lower_bound_u64(vhash, nv, key); k < nv && vhash[k] == key; ++k) {               \
      const int j = vorder[k];                                                                          \
      const ss_i64 vs = voffsets[j], vlen = (ss_i64)voffsets[j + 1] - vs;                               \
      if (vlen == len && ss_bytes_equal(chars + start, vchars + vs, len)) return SS_FIRST_ID + j;       \
    }                                                                                                   \
    return SS_OOV_ID;                                                                                   \
  }                                                                                                     \
  SS_KERNEL ss_categorify_##SUFFIX(const OFFSET_T* offsets, const ss_u8* chars, const ss_u32* mask,     \
                                   ss_i64 moff, const ss_u64* h, const ss_u64* vhash,                   \
                                   const int* vorder, const int* voffsets, const ss_u8* vchars,         \
                                   ss_i64 nv, int* out, ss_i64 n) {                                     \
    SS_FOR_EACH(i, n)                                                                                   \
      out[i] = ss_categorify_at_##SUFFIX(offsets, chars, mask, moff, h, vhash, vorder, voffsets, vchars, nv, i); \
  }

SS_CATEGORIFY_STRINGS(str32, int)
SS_CATEGORIFY_STRINGS(str64, long long)
