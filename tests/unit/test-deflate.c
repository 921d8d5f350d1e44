/* util/deflate: the incompressibility test that lets qcow2's zlib writer
 * skip data it would store uncompressed, round trips through zlib, and the
 * pooled zlib window codec (deflate_zlib_window, inflate_window_exact) with
 * its libdeflate fast path and the zlib verdicts it must keep. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tap.h"
#include "util/deflate.h"

#define CS 65536

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint8_t next_byte(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 32);
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = next_byte();
}

static void fill_text(uint8_t *p, size_t n)
{
    static const char *const words[] = { "qcow2 ", "cluster ", "refcount ", "table, ", "image.\n",
                                         "backing ", "snapshot ", "the ", "of ", "zero " };
    size_t i = 0;
    while (i < n) {
        const char *w = words[next_byte() % 10];
        for (size_t k = 0; w[k] && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
}

/* Raw deflate of in inflates (4 KiB window not needed here) back to in. */
static bool round_trip(const uint8_t *in, size_t n)
{
    uint8_t *c = malloc(n + 1024), *d = malloc(n);
    long clen = deflate_compress(DEFLATE_RAW, 6, in, n, c, n + 1024);
    bool ok = false;
    if (clen > 0) {
        z_stream z;
        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, -15) == Z_OK) {
            z.next_in = c;
            z.avail_in = (uInt)clen;
            z.next_out = d;
            z.avail_out = (uInt)n;
            ok = inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_out == 0 && !memcmp(d, in, n);
            inflateEnd(&z);
        }
    }
    free(c);
    free(d);
    return ok;
}

/* zlib's own raw deflate of in with a 4 KiB window, as qemu writes qcow2
 * clusters; the stream is in *out, its length returned. */
static long zlib_raw(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    long len = (long)(cap - z.avail_out);
    deflateEnd(&z);
    return r == Z_STREAM_END ? len : -1;
}

static void window_codec(void)
{
    uint8_t *in = malloc(2 * CS), *c = malloc(2 * CS), *d = malloc(2 * CS);
    long clen;

    fill_text(in, CS);
    clen = deflate_zlib_window(-1, -12, in, CS, c, CS - 1);
    ok(clen > 0 && clen < CS / 2, "4 KiB window deflate of text (%ld bytes)", clen);
    ok(inflate_window_exact(-12, c, (size_t)clen, d, CS) == 0 && !memcmp(d, in, CS),
       "and it inflates back exactly");
    /* again: the pooled stream is reset, not reused mid-stream */
    long clen2 = deflate_zlib_window(-1, -12, in, CS, c, CS - 1);
    ok(clen2 == clen, "a pooled deflate stream gives the same output (%ld)", clen2);
    memset(c + clen, 0xa5, 700);
    ok(inflate_window_exact(-12, c, (size_t)clen + 700, d, CS) == 0 && !memcmp(d, in, CS),
       "padding after the stream is ignored (sector-rounded compressed sizes)");
    ok(inflate_window_exact(-12, c, (size_t)clen, d, CS - 1) == 0 && !memcmp(d, in, CS - 1),
       "a stream longer than the output fills it (zlib's verdict, as qemu)");
    ok(inflate_window_exact(-12, c, (size_t)clen, d, CS + 1) == -EIO,
       "a stream shorter than the output is an error");
    ok(inflate_window_exact(-12, c, (size_t)clen / 2, d, CS) == -EIO,
       "a stream cut in half is an error");
    memset(c, 0xff, 64);
    ok(inflate_window_exact(-12, c, (size_t)clen, d, CS) == -EIO, "a corrupt stream is an error");

    /* zlib's own 4 KiB-window stream, read by the fast path */
    fill_text(in, CS);
    clen = zlib_raw(in, CS, c, 2 * CS);
    ok(clen > 0 && inflate_window_exact(-12, c, (size_t)clen, d, CS) == 0 && !memcmp(d, in, CS),
       "zlib's raw stream inflates exactly");

    fill_random(in, CS);
    ok(deflate_zlib_window(-1, -12, in, CS, c, CS - 1) == -ENOSPC,
       "random data does not fit one byte less than its size");
    ok(deflate_zlib_window(-1, 20, in, CS, c, CS) == -EINVAL, "a bad window is refused");
    ok(deflate_zlib_window(10, -12, in, CS, c, CS) == -EINVAL, "a bad level is refused");

    /* zlib streams (vmdk grains): what uncompress() would say */
    fill_text(in, CS);
    long zl = deflate_compress(DEFLATE_ZLIB, 6, in, CS, c, 2 * CS);
    ok(zl > 0 && zl < CS, "zlib stream made");
    memset(c + zl, 0x3c, 512);
    ok(inflate_zlib_stream(c, (size_t)zl + 512, d, CS) == CS && !memcmp(d, in, CS),
       "a zlib stream inflates, padding after it ignored");
    ok(inflate_zlib_stream(c, (size_t)zl, d, 2 * CS) == CS, "a larger output holds it: its length");
    ok(inflate_zlib_stream(c, (size_t)zl, d, CS - 1) == -EIO, "a smaller one does not");
    c[zl - 1] ^= 1;
    ok(inflate_zlib_stream(c, (size_t)zl, d, CS) == -EIO, "a bad Adler-32 is an error");
    c[zl - 1] ^= 1;
    ok(inflate_zlib_stream(c, (size_t)zl / 2, d, CS) == -EIO, "a stream cut in half is an error");
    free(in);
    free(c);
    free(d);
}

int main(void)
{
    window_codec();
    uint8_t *buf = malloc(CS);

    fill_random(buf, CS);
    ok(deflate_incompressible(buf, CS, CS - 1), "random data is incompressible");
    ok(round_trip(buf, CS), "random data round-trips");
    ok(!deflate_incompressible(buf, CS, 2 * CS), "random data fits a large enough buffer");
    ok(!deflate_incompressible(buf, 1024, 1023), "short inputs are never judged");
    {
        uint8_t *st = malloc(CS + 1024), *back = malloc(CS);
        long sl = deflate_compress(DEFLATE_ZLIB, DEFLATE_LEVEL_STORED, buf, CS, st, CS + 1024);
        uLongf bl = CS;
        ok(sl > CS && sl < CS + 64, "stored level: a few bytes of block headers (%ld)", sl);
        ok(sl > 0 && uncompress(back, &bl, st, (uLong)sl) == Z_OK && bl == CS && !memcmp(back, buf, CS),
           "stored level: a zlib stream that inflates back");
        free(st);
        free(back);
    }

    /* a flat histogram but a repeated 1 KiB block: deflate finds the matches */
    for (size_t i = 1024; i < CS; i++)
        buf[i] = buf[i % 1024];
    ok(!deflate_incompressible(buf, CS, CS - 1), "repeated random block is compressible");

    /* random, but one 4 KiB block repeats the one before (qcow2's window) */
    fill_random(buf, CS);
    memcpy(buf + 20480, buf + 16384, 4096);
    ok(!deflate_incompressible(buf, CS, CS - 1), "a 4 KiB block repeated at 4 KiB is compressible");
    /* random with a single 64-byte repeat: few matches, the level-1 pass decides */
    fill_random(buf, CS);
    memcpy(buf + 40000, buf + 30000, 64);
    ok(deflate_incompressible(buf, CS, CS - 1), "one short repeat in random data saves nothing");

    fill_text(buf, CS);
    ok(!deflate_incompressible(buf, CS, CS - 1), "text is compressible");
    ok(round_trip(buf, CS), "text round-trips");

    memset(buf, 0, CS);
    ok(!deflate_incompressible(buf, CS, CS - 1), "zeros are compressible");

    /* mostly random with one byte value overrepresented: not flat */
    fill_random(buf, CS);
    for (size_t i = 0; i < CS; i += 3)
        buf[i] = 'A';
    ok(!deflate_incompressible(buf, CS, CS - 1), "skewed data goes to the real encoder");

    free(buf);
    return done_testing();
}
