/* UTF-16 decoding of header strings: both byte orders, surrogate pairs,
 * the first NUL ends the text, odd byte counts and unpaired surrogates. */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util/utf16.h"

static void dec(const char *what, const uint8_t *p, size_t n, bool be, const char *want)
{
    char *got = utf16_to_utf8(p, n, be);
    if (want)
        is_str(got ? got : "(null)", want, "%s", what);
    else
        ok(got == NULL, "%s: refused", what);
    free(got);
}

int main(void)
{
    static const uint8_t le[] = { '.', 0, '\\', 0, 'p', 0, 0xe9, 0, 0, 0, 'x', 0 };
    static const uint8_t be[] = { 0, 'a', 0x20, 0xac, 0xd8, 0x3d, 0xde, 0x00, 0, 'z' };
    static const uint8_t lone_hi[] = { 0x3d, 0xd8, 'a', 0 };
    static const uint8_t lone_lo[] = { 0x00, 0xde };
    static const uint8_t cut_pair[] = { 0x3d, 0xd8 };
    static const uint8_t odd[] = { 'a', 0, 'b' };

    dec("little endian, stops at NUL, Latin-1 letter", le, sizeof(le), false, ".\\p\xc3\xa9");
    dec("big endian: BMP euro sign and an astral pair",
        be, sizeof(be), true, "a\xe2\x82\xac\xf0\x9f\x98\x80z");
    dec("unpaired high surrogate", lone_hi, sizeof(lone_hi), false, NULL);
    dec("unpaired low surrogate", lone_lo, sizeof(lone_lo), false, NULL);
    dec("pair cut by the end", cut_pair, sizeof(cut_pair), false, NULL);
    dec("odd byte count drops the last byte", odd, sizeof(odd), false, "a");
    dec("empty", le, 0, false, "");
    return done_testing();
}
