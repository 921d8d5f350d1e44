/* Byte-buffer helpers: endian.h (fixed byte patterns both ways, at
 * unaligned offsets, values with the top bit set) and zero.h's
 * buffer_is_zero (every length and alignment, a single set bit anywhere). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util/endian.h"
#include "util/zero.h"

static void zero_tests(void)
{
    enum { MAX = 300 };
    unsigned char *mem = calloc(1, MAX + 64);
    int bad = 0;

    ok(buffer_is_zero(mem, 0), "empty buffer is zero");
    ok(buffer_is_zero(NULL, 0), "NULL with length 0 is zero");
    /* every alignment x length x position of one set bit */
    for (size_t align = 0; align < 64 && !bad; align++) {
        for (size_t len = 0; len <= MAX && !bad; len++) {
            unsigned char *p = mem + align;
            if (!buffer_is_zero(p, len)) {
                bad = 1;
                printf("# zero buffer align %zu len %zu reported non-zero\n", align, len);
                break;
            }
            for (size_t pos = 0; pos < len; pos++) {
                p[pos] = (unsigned char)(1u << (pos % 8));
                if (buffer_is_zero(p, len)) {
                    bad = 1;
                    printf("# align %zu len %zu: byte %zu set but reported zero\n", align, len, pos);
                }
                p[pos] = 0;
                if (bad)
                    break;
            }
        }
    }
    ok(!bad, "buffer_is_zero exact for lengths 0..%d at 64 alignments", MAX);
    /* bytes just outside the range are ignored */
    mem[10] = 1;
    mem[10 + 1 + 200] = 1;
    ok(buffer_is_zero(mem + 11, 200), "neighbouring bytes are not looked at");
    mem[10] = mem[211] = 0;
    free(mem);

    size_t big = (size_t)4 << 20;
    unsigned char *b = calloc(1, big);
    ok(buffer_is_zero(b, big), "4 MiB of zeros");
    b[big - 1] = 0x80;
    ok(!buffer_is_zero(b, big), "last byte of 4 MiB set");
    b[big - 1] = 0;
    b[big / 2 + 3] = 1;
    ok(!buffer_is_zero(b + 1, big - 1), "middle byte set, unaligned start");
    free(b);
}

int main(void)
{
    static const uint8_t pat[] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
    uint8_t buf[17];

    /* decode at every misalignment */
    for (size_t off = 0; off < 8; off++) {
        memset(buf, 0xee, sizeof(buf));
        memcpy(buf + off, pat, sizeof(pat));
        is_uint(get_be16(buf + off), 0x0123, "get_be16 at +%zu", off);
        is_uint(get_le16(buf + off), 0x2301, "get_le16 at +%zu", off);
        is_uint(get_be32(buf + off), 0x01234567, "get_be32 at +%zu", off);
        is_uint(get_le32(buf + off), 0x67452301, "get_le32 at +%zu", off);
        is_uint(get_be64(buf + off), 0x0123456789abcdefULL, "get_be64 at +%zu", off);
        is_uint(get_le64(buf + off), 0xefcdab8967452301ULL, "get_le64 at +%zu", off);
    }

    /* high bits do not sign-extend */
    memset(buf, 0xff, sizeof(buf));
    is_uint(get_be16(buf), 0xffff, "be16 all ones");
    is_uint(get_le32(buf), 0xffffffffu, "le32 all ones");
    is_uint(get_be64(buf), UINT64_MAX, "be64 all ones");
    buf[0] = 0x80; buf[1] = 0; buf[2] = 0; buf[3] = 0;
    is_uint(get_be32(buf), 0x80000000u, "be32 top bit");
    is_uint(get_le32(buf), 0x00000080u, "le32 low byte 0x80");

    /* encode, checking exact bytes and that neighbours stay untouched */
    memset(buf, 0xee, sizeof(buf));
    put_be64(buf + 3, 0x0123456789abcdefULL);
    ok(memcmp(buf + 3, pat, 8) == 0, "put_be64 bytes");
    ok(buf[2] == 0xee && buf[11] == 0xee, "put_be64 stays in bounds");
    memset(buf, 0xee, sizeof(buf));
    put_le64(buf + 1, 0xefcdab8967452301ULL);
    ok(memcmp(buf + 1, pat, 8) == 0, "put_le64 bytes");
    ok(buf[0] == 0xee && buf[9] == 0xee, "put_le64 stays in bounds");
    memset(buf, 0, sizeof(buf));
    put_be32(buf + 5, 0xdeadbeef);
    ok(buf[5] == 0xde && buf[6] == 0xad && buf[7] == 0xbe && buf[8] == 0xef, "put_be32 bytes");
    put_le32(buf + 9, 0xdeadbeef);
    ok(buf[9] == 0xef && buf[10] == 0xbe && buf[11] == 0xad && buf[12] == 0xde, "put_le32 bytes");
    put_be16(buf + 13, 0xbeef);
    ok(buf[13] == 0xbe && buf[14] == 0xef, "put_be16 bytes");
    put_le16(buf + 15, 0xbeef);
    ok(buf[15] == 0xef && buf[16] == 0xbe, "put_le16 bytes");

    /* round trips */
    static const uint64_t vals[] = { 0, 1, 0x80, 0xff00, 0x80000000u, 0xffffffffu,
                                     0x8000000000000000ULL, UINT64_MAX, 0x0102030405060708ULL };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint64_t v = vals[i];
        put_be64(buf + 1, v);
        is_uint(get_be64(buf + 1), v, "be64 round trip %#jx", (uintmax_t)v);
        put_le64(buf + 1, v);
        is_uint(get_le64(buf + 1), v, "le64 round trip %#jx", (uintmax_t)v);
        put_be32(buf + 1, (uint32_t)v);
        is_uint(get_be32(buf + 1), (uint32_t)v, "be32 round trip %#jx", (uintmax_t)(uint32_t)v);
        put_le16(buf + 1, (uint16_t)v);
        is_uint(get_le16(buf + 1), (uint16_t)v, "le16 round trip %#jx", (uintmax_t)(uint16_t)v);
    }

    zero_tests();
    return done_testing();
}
