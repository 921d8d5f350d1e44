/* Size strings: parsing with qemu 7.2's qemu_strtosz rules and printing as
 * size_to_str(). Observable behaviour reproduced (tested in test-size.c):
 *  - decimal integer part (leading blanks and '+' accepted, any '-' rejected);
 *  - "0x..." hex when the decimal parse stops at 0 followed by x/X; a hex
 *    number may not have a fraction, a suffix on it is deprecated but works;
 *  - ".fraction" needs a scale larger than bytes unless it is exactly zero,
 *    exponents are rejected, "1.k" is fine;
 *  - the result is computed exactly in 128 bits and rounded half up;
 *  - overflow of 64 bits is -ERANGE, anything else malformed -EINVAL. */
#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

/* strtoull with qemu_strtou64's error mapping; *endp receives the stop
 * position (s itself when nothing was converted). */
static int strtou64_at(const char *s, const char **endp, int base, uint64_t *out)
{
    char *ep;
    unsigned long long v;
    int e;

    errno = 0;
    v = strtoull(s, &ep, base);
    e = errno;
    *endp = ep;
    if (e == ERANGE) {
        *out = UINT64_MAX;
        return -ERANGE;
    }
    *out = v;
    if (ep == s || e)
        return -EINVAL;
    return 0;
}

static int strtou64_whole(const char *s, int base, uint64_t *out, bool allow_minus)
{
    const char *end;
    uint64_t v;
    int r;

    if (!s || base < 0 || base == 1 || base > 36)
        return -EINVAL;
    r = strtou64_at(s, &end, base, &v);
    if (r == -EINVAL)
        return r;
    if (*end)
        return -EINVAL;
    if (!allow_minus && memchr(s, '-', (size_t)(end - s)))
        return -EINVAL;
    if (r)
        return r;
    *out = v;
    return 0;
}

int parse_u64(const char *s, int base, uint64_t *out)
{
    return strtou64_whole(s, base, out, false);
}

int parse_u64_wrapping(const char *s, int base, uint64_t *out)
{
    return strtou64_whole(s, base, out, true);
}

static uint64_t suffix_mul(char c, unsigned unit)
{
    static const char order[] = "BKMGTPE";
    const char *p;
    uint64_t mul = 1;

    if (c == '\0')
        return 0;
    p = strchr(order, toupper((unsigned char)c));
    if (!p)
        return 0;
    for (ptrdiff_t i = 0; i < p - order; i++)
        mul *= unit;    /* unit^6 <= 1024^6 = 2^60: no overflow */
    return mul;
}

int size_parse_full(const char *s, const char **end, char default_suffix,
                    unsigned unit, uint64_t *out, bool *hex_suffix)
{
    const char *ep;
    uint64_t val, valf = 0, mul;
    bool hex = false;
    int r;

    if (hex_suffix)
        *hex_suffix = false;
    if (!s) {
        if (end)
            *end = s;
        return -EINVAL;
    }

    r = strtou64_at(s, &ep, 10, &val);
    if (r)
        goto out;
    if (memchr(s, '-', (size_t)(ep - s))) {
        ep = s;
        r = -EINVAL;
        goto out;
    }
    if (val == 0 && (*ep == 'x' || *ep == 'X')) {
        r = strtou64_at(s, &ep, 16, &val);
        if (r)
            goto out;
        if (*ep == '.') {
            ep = s;
            r = -EINVAL;
            goto out;
        }
        hex = true;
    } else if (*ep == '.') {
        const char *f = ep;
        char *fe;
        double fraction;
        int e;

        errno = 0;
        fraction = strtod(f, &fe);
        e = errno;
        if (fe == f || e || !isfinite(fraction)) {
            /* qemu skips just past the stop position (so "1.k" parses as
             * "1k"); never step over the terminator. */
            ep = fe == f ? f : fe;
            if (e == 0 && fe != f) {
                /* non-finite: qemu treats it as "no conversion" */
                ep = f;
            }
            if (*ep)
                ep++;
        } else if (memchr(f, 'e', (size_t)(fe - f)) || memchr(f, 'E', (size_t)(fe - f))) {
            ep = s;
            r = -EINVAL;
            goto out;
        } else {
            ep = fe;
            /* 64-bit fixed-point fraction. A fraction that rounds to 1.0
             * would not fit; x86-64 (where qemu-img runs) converts 2^64 to
             * 0, so "1.99999999999999999999k" is 1024 there too. */
            double scaled = fraction * 0x1p64;
            valf = scaled >= 0x1p64 ? 0 : (uint64_t)scaled;
        }
    }

    mul = suffix_mul(*ep, unit);
    if (mul) {
        if (hex && hex_suffix)
            *hex_suffix = true;
        ep++;
    } else {
        mul = suffix_mul(default_suffix, unit);
        if (!mul)
            mul = 1;
    }
    if (mul == 1) {
        if (valf) {
            ep = s;
            r = -EINVAL;
            goto out;
        }
    } else {
        /* 64.64 fixed point times the multiplier, exactly, rounded half up. */
        u128 whole = (u128)val * mul;
        u128 frac = (u128)valf * mul;
        whole += frac >> 64;
        whole += (uint64_t)frac >> 63;
        if (whole >> 64) {
            r = -ERANGE;
            goto out;
        }
        val = (uint64_t)whole;
    }
    r = 0;

out:
    if (end)
        *end = ep;
    else if (*ep)
        r = -EINVAL;
    if (r == 0)
        *out = val;
    return r;
}

int size_parse(const char *s, char default_suffix, uint64_t *out)
{
    return size_parse_full(s, NULL, default_suffix, 1024, out, NULL);
}

void size_to_human(uint64_t v, char *buf, size_t len)
{
    static const char *const prefix[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int e;

    /* frexp's exponent minus one is floor(log2(v * 1024 / 1000)): switching
     * units at 1000 of the smaller one, never printing "1.0e+03 KiB". */
    frexp((double)v / (1000.0 / 1024.0), &e);
    e = (e - 1) / 10 * 10;
    if (e < 0)
        e = 0;
    if (e > 60)
        e = 60;
    snprintf(buf, len, "%0.3g %sB", (double)v / (double)(1ULL << e), prefix[e / 10]);
}
