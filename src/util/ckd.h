/* Checked arithmetic for numbers that come from untrusted images.
 * Each helper returns true when the result overflowed (C23 ckd_* semantics),
 * so callers write: if (ckd_add(&end, off, len)) return -EINVAL; */
#ifndef QIMG_UTIL_CKD_H
#define QIMG_UTIL_CKD_H

#include <stdbool.h>
#include <stdint.h>

#define ckd_add(r, a, b) __builtin_add_overflow((a), (b), (r))
#define ckd_sub(r, a, b) __builtin_sub_overflow((a), (b), (r))
#define ckd_mul(r, a, b) __builtin_mul_overflow((a), (b), (r))

static inline bool is_pow2_u64(uint64_t v) { return v && !(v & (v - 1)); }
static inline bool is_aligned_u64(uint64_t v, uint64_t a) { return (v & (a - 1)) == 0; }
static inline uint64_t align_down_u64(uint64_t v, uint64_t a) { return v & ~(a - 1); }
/* Caller guarantees v + a - 1 does not overflow. */
static inline uint64_t align_up_u64(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
static inline uint64_t div_round_up_u64(uint64_t v, uint64_t d) { return v / d + (v % d != 0); }
static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

#endif
