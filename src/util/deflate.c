/* See deflate.h. A libdeflate compressor holds its level and a large
 * work area, so they are kept in a small pool instead of being made per
 * call; the pool is emptied at exit. */
#include "util/deflate.h"

#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 32

struct pooled {
    struct libdeflate_compressor *c;
    int level;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pooled pool[POOL_MAX];
static int pool_n;

static struct libdeflate_compressor *get_compressor(int level)
{
    struct libdeflate_compressor *c = NULL;

    pthread_mutex_lock(&pool_lock);
    for (int i = pool_n - 1; i >= 0; i--) {
        if (pool[i].level == level) {
            c = pool[i].c;
            pool[i] = pool[--pool_n];
            break;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return c ? c : libdeflate_alloc_compressor(level);
}

static void put_compressor(struct libdeflate_compressor *c, int level)
{
    pthread_mutex_lock(&pool_lock);
    if (pool_n < POOL_MAX) {
        pool[pool_n].c = c;
        pool[pool_n++].level = level;
        c = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    if (c)
        libdeflate_free_compressor(c);
}

__attribute__((destructor)) static void pool_release(void)
{
    pthread_mutex_lock(&pool_lock);
    while (pool_n > 0)
        libdeflate_free_compressor(pool[--pool_n].c);
    pthread_mutex_unlock(&pool_lock);
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
    c = get_compressor(level);
    if (!c)
        return -ENOMEM;
    r = wrap == DEFLATE_ZLIB ? libdeflate_zlib_compress(c, in, n, out, cap)
                             : libdeflate_deflate_compress(c, in, n, out, cap);
    put_compressor(c, level);
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
