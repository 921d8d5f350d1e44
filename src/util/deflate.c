/* See deflate.h. A libdeflate compressor holds its level and a large
 * work area, so they are kept in a small pool instead of being made per
 * call; the pool is emptied at exit. */
#include "util/deflate.h"

#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>

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

    if (level <= 0)
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
