/* buffer_is_zero: the hot path of convert/compare/dd zero detection.
 *
 * Strategy: look at a few bytes first (most non-zero data fails there),
 * then walk aligned 64-byte blocks OR-ing eight words together so the
 * compiler can keep it in vector registers, with one branch per block.
 * Words are loaded through memcpy from an aligned address: that is
 * well-defined C for any buffer type, and compiles to plain loads. */
#include "util/zero.h"

#include <stdint.h>
#include <string.h>

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static bool bytes_are_zero(const unsigned char *p, size_t len)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= p[i];
    return acc == 0;
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (len < 64)
        return bytes_are_zero(p, len);

    /* Early exit on typical data before doing any real work. */
    if (load64(p) | load64(p + len - 8))
        return false;

    /* Unaligned head, up to the next 64-byte boundary. */
    size_t head = (size_t)(-(uintptr_t)p & 63);
    if (!bytes_are_zero(p, head))
        return false;
    p += head;
    len -= head;

    const unsigned char *end = p + (len & ~(size_t)63);
    for (; p < end; p += 64) {
        const unsigned char *a = __builtin_assume_aligned(p, 64);
        uint64_t acc = load64(a) | load64(a + 8) | load64(a + 16) | load64(a + 24) |
                       load64(a + 32) | load64(a + 40) | load64(a + 48) | load64(a + 56);
        if (acc)
            return false;
    }
    return bytes_are_zero(p, len & 63);
}
