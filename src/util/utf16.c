/* UTF-16 to UTF-8 (RFC 2781 surrogate pairs, RFC 3629 encoding). */
#include "util/utf16.h"

#include <stdlib.h>

static unsigned unit_at(const uint8_t *p, size_t i, bool be)
{
    return be ? (unsigned)p[2 * i] << 8 | p[2 * i + 1] : (unsigned)p[2 * i + 1] << 8 | p[2 * i];
}

char *utf16_to_utf8(const uint8_t *p, size_t nbytes, bool big_endian)
{
    size_t n = nbytes / 2, o = 0;
    /* Each unit gives at most 3 bytes; a pair (two units) gives 4. */
    char *out = malloc(n * 3 + 1);

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = unit_at(p, i, big_endian);
        if (c == 0)
            break;
        if (c >= 0xd800 && c <= 0xdbff) {
            uint32_t lo = i + 1 < n ? unit_at(p, i + 1, big_endian) : 0;
            if (lo < 0xdc00 || lo > 0xdfff)
                goto bad;
            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
            i++;
        } else if (c >= 0xdc00 && c <= 0xdfff) {
            goto bad;
        }
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xc0 | c >> 6);
            out[o++] = (char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xe0 | c >> 12);
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (c & 0x3f));
        } else {
            out[o++] = (char)(0xf0 | c >> 18);
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}
