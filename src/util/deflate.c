/* See deflate.h. A libdeflate compressor holds its level and a large
 * work area, and a zlib stream allocates its window and tables at init, so
 * both are kept in pools (util/objpool.h) instead of being made per call. */
#include "util/deflate.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util/objpool.h"

static void free_compressor(void *c)
{
    libdeflate_free_compressor(c);
}

static struct objpool compressors = OBJPOOL_INIT(free_compressor);   /* keyed by level */

/* zlib streams with a window of their own (qemu reads compressed qcow and
 * qcow2 clusters with a 4 KiB one). deflateInit2 allocates and clears
 * about 200 KiB; deflateReset clears only the hash heads. */
static void free_deflater(void *z)
{
    deflateEnd(z);
    free(z);
}

static void free_inflater(void *z)
{
    inflateEnd(z);
    free(z);
}

static void free_decompressor(void *d)
{
    libdeflate_free_decompressor(d);
}

static struct objpool deflaters = OBJPOOL_INIT(free_deflater);   /* keyed by level x window */
static struct objpool decompressors = OBJPOOL_INIT(free_decompressor);
static struct objpool inflaters = OBJPOOL_INIT(free_inflater);   /* keyed by window */

__attribute__((destructor)) static void pools_release(void)
{
    objpool_drain(&compressors);
    objpool_drain(&deflaters);
    objpool_drain(&inflaters);
    objpool_drain(&decompressors);
}

long deflate_compress(enum deflate_wrap wrap, int level, const void *in, size_t n, void *out,
                      size_t cap)
{
    struct libdeflate_compressor *c;
    size_t r;

    if (level == DEFLATE_LEVEL_STORED)
        level = 0;                  /* libdeflate's "no compression" */
    else if (level <= 0)
        level = DEFLATE_DEFAULT_LEVEL;
    if (level > DEFLATE_MAX_LEVEL)
        level = DEFLATE_MAX_LEVEL;
    c = objpool_get(&compressors, level);
    if (!c && !(c = libdeflate_alloc_compressor(level)))
        return -ENOMEM;
    r = wrap == DEFLATE_ZLIB ? libdeflate_zlib_compress(c, in, n, out, cap)
                             : libdeflate_deflate_compress(c, in, n, out, cap);
    objpool_put(&compressors, level, c);
    return r ? (long)r : -ENOSPC;
}

/* A flat histogram: the sum of squared byte counts stays within a few
 * percent of what n uniform random bytes give (n*n/256 + n). Text, tables
 * and sparse data lie far above it. */
static bool flat_histogram(const uint8_t *p, size_t n)
{
    uint32_t h[4][256] = { { 0 } };
    uint64_t sq = 0;
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        h[0][p[i]]++;
        h[1][p[i + 1]]++;
        h[2][p[i + 2]]++;
        h[3][p[i + 3]]++;
    }
    for (; i < n; i++)
        h[0][p[i]]++;
    for (int b = 0; b < 256; b++) {
        uint64_t c = (uint64_t)h[0][b] + h[1][b] + h[2][b] + h[3][b];
        sq += c * c;
    }
    uint64_t uniform = (uint64_t)n * n / 256 + n;
    return sq <= uniform + uniform / 32;
}

/* Number of positions whose next 4 bytes also start somewhere in the
 * preceding 32 KiB (deflate's largest window), up to limit. A hash table of
 * the last position per 4-byte hash finds nearly every repeat of real data
 * (which has thousands); in n random bytes a repeat is a chance of about
 * n * 32768 / 2^32, so random data gives 0 or 1. */
static unsigned repeats(const uint8_t *p, size_t n, unsigned limit)
{
    enum { HASH_BITS = 12, WINDOW = 32768 };
    uint32_t last[1u << HASH_BITS];
    unsigned found = 0;

    memset(last, 0xff, sizeof(last));
    for (size_t i = 0; i + 4 <= n; i++) {
        uint32_t v;
        memcpy(&v, p + i, 4);
        uint32_t h = (v * 2654435761u) >> (32 - HASH_BITS);
        uint32_t j = last[h];
        last[h] = (uint32_t)i;
        if (j != UINT32_MAX && i - j <= WINDOW && memcmp(p + j, &v, 4) == 0 && ++found >= limit)
            break;
    }
    return found;
}

bool deflate_incompressible(const void *in, size_t n, size_t cap)
{
    if (n < 4096 || n > (1u << 24) || !flat_histogram(in, n))
        return false;
    /* Flat and without repeated strings: no deflate encoder gets it below
     * its own length, let alone into a smaller buffer. */
    if (cap < n && repeats(in, n, 4) < 4)
        return true;
    void *out = malloc(cap ? cap : 1);
    if (!out)
        return false;
    long r = deflate_compress(DEFLATE_RAW, 1, in, n, out, cap);
    free(out);
    return r == -ENOSPC;
}

/* A zlib stream from a pool, reset, or made (deflate at level, or inflate
 * when level is INT_MIN) and set to read n bytes of in into cap bytes of
 * out; NULL when none can be had. */
static z_stream *stream_get(struct objpool *p, int key, int level, int window_bits,
                            const void *in, size_t n, void *out, size_t cap)
{
    bool inflating = level == INT_MIN;
    z_stream *z = objpool_get(p, key);

    if (z && (inflating ? inflateReset(z) : deflateReset(z)) != Z_OK) {
        p->destroy(z);
        return NULL;
    }
    if (!z) {
        if (!(z = calloc(1, sizeof(*z))))
            return NULL;
        if ((inflating ? inflateInit2(z, window_bits)
                       : deflateInit2(z, level, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY)) !=
            Z_OK) {
            free(z);
            return NULL;
        }
    }
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    return z;
}

long deflate_zlib_window(int level, int window_bits, const void *in, size_t n, void *out,
                         size_t cap)
{
    int key = (level + 1) * 64 + window_bits + 16;
    z_stream *z;

    if (window_bits < -15 || window_bits > 15 || level < Z_DEFAULT_COMPRESSION || level > 9 ||
        n > UINT32_MAX || cap > UINT32_MAX)
        return -EINVAL;
    if (!(z = stream_get(&deflaters, key, level, window_bits, in, n, out, cap)))
        return -ENOMEM;
    int r = deflate(z, Z_FINISH);
    long len = (long)(cap - z->avail_out);
    objpool_put(&deflaters, key, z);
    return r == Z_STREAM_END ? len : -ENOSPC;
}

/* A raw deflate stream through libdeflate, about twice zlib's speed: 1 when
 * it decoded to exactly len bytes, 0 when it did not, -1 when only zlib can
 * tell (a stream longer than len, or one that breaks off: zlib accepts
 * either once it has filled the output, and so does qemu). */
static int fast_inflate(const void *in, size_t n, void *out, size_t len)
{
    struct libdeflate_decompressor *d = objpool_get(&decompressors, 0);
    size_t got = 0;

    if (!d && !(d = libdeflate_alloc_decompressor()))
        return -1;
    enum libdeflate_result r = libdeflate_deflate_decompress_ex(d, in, n, out, len, NULL, &got);
    objpool_put(&decompressors, 0, d);
    if (r != LIBDEFLATE_SUCCESS)
        return -1;
    return got == len;
}

int inflate_window_exact(int window_bits, const void *in, size_t n, void *out, size_t len)
{
    int key = window_bits + 16;
    z_stream *z;
    int r;

    if (window_bits < -15 || window_bits > 15 || n > UINT32_MAX || len > UINT32_MAX)
        return -EINVAL;
    /* A window smaller than 32 KiB only limits what the encoder may
     * refer to; a valid stream decodes the same with any decoder. */
    if (window_bits < 0 && (r = fast_inflate(in, n, out, len)) >= 0)
        return r ? 0 : -EIO;
    if (!(z = stream_get(&inflaters, key, INT_MIN, window_bits, in, n, out, len)))
        return -ENOMEM;
    r = inflate(z, Z_FINISH);
    /* Complete output is what matters; input may carry padding. */
    bool ok = (r == Z_STREAM_END || r == Z_BUF_ERROR) && z->avail_out == 0;
    objpool_put(&inflaters, key, z);
    return ok ? 0 : -EIO;
}

long inflate_zlib_stream(const void *in, size_t n, void *out, size_t cap)
{
    struct libdeflate_decompressor *d;
    size_t used = 0, got = 0;
    uLongf zlen = (uLongf)cap;

    if (n > UINT32_MAX || cap > UINT32_MAX)
        return -EINVAL;
    if ((d = objpool_get(&decompressors, 0)) || (d = libdeflate_alloc_decompressor())) {
        enum libdeflate_result r = libdeflate_zlib_decompress_ex(d, in, n, out, cap, &used, &got);
        objpool_put(&decompressors, 0, d);
        if (r == LIBDEFLATE_SUCCESS)
            return (long)got;
    }
    /* zlib's verdict on what libdeflate refused (they should agree) */
    return uncompress(out, &zlen, in, (uLong)n) == Z_OK ? (long)zlen : -EIO;
}
