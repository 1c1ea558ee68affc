// The shardsmith hash (seeded XXH64) on the GPU: bit-identical to shardsmith/kernels/xxhash64.py,
// which is its specification and its reference in the tests.
//
// One kernel per physical column type. Each reads the column's values (integers as their int64
// two's complement, floats as float64 bits with -0.0 -> +0.0 and every NaN canonical, strings from
// the column's offsets and bytes), its validity bitmask (a null hashes as the empty string under
// seed ^ NULL_SEED_XOR) and either one seed or a seed per row (chained hashes: hashed_cross).
#include "launch.cuh"

#define SS_P1 0x9E3779B185EBCA87ULL
#define SS_P2 0xC2B2AE3D27D4EB4FULL
#define SS_P3 0x165667B19E3779F9ULL
#define SS_P4 0x85EBCA77C2B2AE63ULL
#define SS_P5 0x27D4EB2F165667C5ULL
#define SS_NULL_SEED_XOR 0x9E3779B97F4A7C15ULL
#define SS_CANONICAL_NAN 0x7FF8000000000000ULL

SS_DEV ss_u64 ss_rotl(ss_u64 x, int r) { return (x << r) | (x >> (64 - r)); }

SS_DEV ss_u64 ss_xxh_round(ss_u64 acc, ss_u64 lane) { return ss_rotl(acc + lane * SS_P2, 31) * SS_P1; }

SS_DEV ss_u64 ss_xxh_merge(ss_u64 acc, ss_u64 v) { return (acc ^ ss_xxh_round(0, v)) * SS_P1 + SS_P4; }

SS_DEV ss_u64 ss_xxh_avalanche(ss_u64 h) {
  h ^= h >> 33;
  h *= SS_P2;
  h ^= h >> 29;
  h *= SS_P3;
  return h ^ (h >> 32);
}

// XXH64 of one 8-byte little-endian word: the hash of every integer and float value.
SS_DEV ss_u64 ss_xxh64_word(ss_u64 w, ss_u64 seed) {
  ss_u64 h = seed + SS_P5 + 8;
  h ^= ss_xxh_round(0, w);
  return ss_xxh_avalanche(ss_rotl(h, 27) * SS_P1 + SS_P4);
}

// Unaligned little-endian loads, byte by byte: string data has no alignment.
SS_DEV ss_u64 ss_load_le64(const ss_u8* p) {
  ss_u64 v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

SS_DEV ss_u64 ss_load_le32(const ss_u8* p) {
  return (ss_u64)p[0] | ((ss_u64)p[1] << 8) | ((ss_u64)p[2] << 16) | ((ss_u64)p[3] << 24);
}

// XXH64 of a byte string (the reference algorithm: 32-byte stripes, then 8-, 4- and 1-byte tails).
SS_DEV ss_u64 ss_xxh64_bytes(const ss_u8* p, ss_i64 len, ss_u64 seed) {
  const ss_u8* end = p + len;
  ss_u64 h;
  if (len >= 32) {
    ss_u64 v1 = seed + SS_P1 + SS_P2, v2 = seed + SS_P2, v3 = seed, v4 = seed - SS_P1;
    const ss_u8* limit = end - 32;
    do {
      v1 = ss_xxh_round(v1, ss_load_le64(p));
      v2 = ss_xxh_round(v2, ss_load_le64(p + 8));
      v3 = ss_xxh_round(v3, ss_load_le64(p + 16));
      v4 = ss_xxh_round(v4, ss_load_le64(p + 24));
      p += 32;
    } while (p <= limit);
    h = ss_rotl(v1, 1) + ss_rotl(v2, 7) + ss_rotl(v3, 12) + ss_rotl(v4, 18);
    h = ss_xxh_merge(h, v1);
    h = ss_xxh_merge(h, v2);
    h = ss_xxh_merge(h, v3);
    h = ss_xxh_merge(h, v4);
  } else {
    h = seed + SS_P5;
  }
  h += (ss_u64)len;
  for (; p + 8 <= end; p += 8) h = ss_rotl(h ^ ss_xxh_round(0, ss_load_le64(p)), 27) * SS_P1 + SS_P4;
  if (p + 4 <= end) {
    h = ss_rotl(h ^ (ss_load_le32(p) * SS_P1), 23) * SS_P2 + SS_P3;
    p += 4;
  }
  for (; p < end; ++p) h = ss_rotl(h ^ ((ss_u64)*p * SS_P5), 11) * SS_P1;
  return ss_xxh_avalanche(h);
}

SS_DEV ss_u64 ss_null_hash(ss_u64 seed) { return ss_xxh64_bytes(0, 0, seed ^ SS_NULL_SEED_XOR); }

// The words hashed for each physical type.
SS_DEV ss_u64 ss_float_word(double v) {
  if (ss_isnan(v)) return SS_CANONICAL_NAN;
  if (v == 0.0) return 0;  // -0.0 hashes as +0.0
  return ss_bits(v);
}
#define SS_WORD_SIGNED(x) ((ss_u64)(ss_i64)(x))
#define SS_WORD_UNSIGNED(x) ((ss_u64)(x))
#define SS_WORD_BOOL(x) ((ss_u64)((x) != 0))
#define SS_WORD_FLOAT(x) ss_float_word((double)(x))
#define SS_WORD_HALF(x) ss_float_word(ss_f16_to_f64(x))
// Timestamps hash as canonical microseconds (kernels/xxhash64.py timestamp_micros): seconds and
// milliseconds scale up (wrapping like int64), nanoseconds are floored to microseconds.
#define SS_WORD_TS_S(x) ((ss_u64)(x) * 1000000ULL)
#define SS_WORD_TS_MS(x) ((ss_u64)(x) * 1000ULL)
SS_DEV ss_u64 ss_floor_div_1000(ss_i64 x) {
  ss_i64 q = x / 1000;
  if (x % 1000 < 0) --q;
  return (ss_u64)q;
}
#define SS_WORD_TS_NS(x) ss_floor_div_1000((ss_i64)(x))

// One hash kernel per fixed-width type: out[i] = hash(x[i], seeds ? seeds[i] : seed), nulls from the
// bitmask ``mask`` (none: 0) at bit ``moff + i``. ``out`` may be ``seeds`` (a chained hash in place).
#define SS_HASH_FIXED(SUFFIX, T, WORD)                                                                  \
  SS_DEV ss_u64 ss_hash_at_##SUFFIX(const T* x, const ss_u32* mask, ss_i64 moff, const ss_u64* seeds,   \
                                    ss_u64 seed, ss_i64 i) {                                            \
    ss_u64 s = seeds ? seeds[i] : seed;                                                                 \
    return ss_valid(mask, moff + i) ? ss_xxh64_word(WORD(x[i]), s) : ss_null_hash(s);                   \
  }                                                                                                     \
  SS_KERNEL ss_hash_##SUFFIX(const T* x, const ss_u32* mask, ss_i64 moff, const ss_u64* seeds,          \
                             ss_u64 seed, ss_u64* out, ss_i64 n) {                                      \
    SS_FOR_EACH(i, n) out[i] = ss_hash_at_##SUFFIX(x, mask, moff, seeds, seed, i);                      \
  }

SS_HASH_FIXED(i8, signed char, SS_WORD_SIGNED)
SS_HASH_FIXED(i16, short, SS_WORD_SIGNED)
SS_HASH_FIXED(i32, int, SS_WORD_SIGNED)
SS_HASH_FIXED(i64, long long, SS_WORD_SIGNED)
SS_HASH_FIXED(u8, unsigned char, SS_WORD_UNSIGNED)
SS_HASH_FIXED(u16, unsigned short, SS_WORD_UNSIGNED)
SS_HASH_FIXED(u32, unsigned int, SS_WORD_UNSIGNED)
SS_HASH_FIXED(u64, unsigned long long, SS_WORD_UNSIGNED)
SS_HASH_FIXED(b8, unsigned char, SS_WORD_BOOL)
SS_HASH_FIXED(f16, unsigned short, SS_WORD_HALF)
SS_HASH_FIXED(f32, float, SS_WORD_FLOAT)
SS_HASH_FIXED(f64, double, SS_WORD_FLOAT)
SS_HASH_FIXED(ts_s, long long, SS_WORD_TS_S)
SS_HASH_FIXED(ts_ms, long long, SS_WORD_TS_MS)
SS_HASH_FIXED(ts_ns, long long, SS_WORD_TS_NS)

// Strings: ``offsets`` points at the column's first offset (offsets are absolute positions in
// ``chars``), so row i is chars[offsets[i] .. offsets[i + 1]).
#define SS_HASH_STRINGS(SUFFIX, OFFSET_T)                                                               \
  SS_DEV ss_u64 ss_hash_at_##SUFFIX(const OFFSET_T* offsets, const ss_u8* chars, const ss_u32* mask,    \
                                    ss_i64 moff, const ss_u64* seeds, ss_u64 seed, ss_i64 i) {          \
    ss_u64 s = seeds ? seeds[i] : seed;                                                                 \
    if (!ss_valid(mask, moff + i)) return ss_null_hash(s);                                              \
    ss_i64 start = (ss_i64)offsets[i];                                                                  \
    return ss_xxh64_bytes(chars + start, (ss_i64)offsets[i + 1] - start, s);                            \
  }                                                                                                     \
  SS_KERNEL ss_hash_##SUFFIX(const OFFSET_T* offsets, const ss_u8* chars, const ss_u32* mask,           \
                             ss_i64 moff, const ss_u64* seeds, ss_u64 seed, ss_u64* out, ss_i64 n) {    \
    SS_FOR_EACH(i, n) out[i] = ss_hash_at_##SUFFIX(offsets, chars, mask, moff, seeds, seed, i);         \
  }

SS_HASH_STRINGS(str32, int)
SS_HASH_STRINGS(str64, long long)

// Buckets: the unsigned remainder, as int32 when num_buckets <= 2**31 (else int64).
SS_KERNEL ss_buckets_i32(const ss_u64* h, ss_u64 num_buckets, int* out, ss_i64 n) {
  SS_FOR_EACH(i, n) out[i] = (int)(h[i] % num_buckets);
}

SS_KERNEL ss_buckets_i64(const ss_u64* h, ss_u64 num_buckets, long long* out, ss_i64 n) {
  SS_FOR_EACH(i, n) out[i] = (long long)(h[i] % num_buckets);
}

// Content digests (shardsmith/kernels/digest.py): XXH64, seed 0, of each of n byte spans, span i
// being lens[i] bytes at address ptrs[i]: the blocks of every section of a shard's columns, hashed
// in one launch, a thread per block.
SS_KERNEL ss_xxh64_spans(const ss_u64* ptrs, const ss_i64* lens, ss_u64* out, ss_i64 n) {
  SS_FOR_EACH(i, n) out[i] = ss_xxh64_bytes((const ss_u8*)ptrs[i], lens[i], 0);
}
