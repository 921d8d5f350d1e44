/* Allocation helpers that never return NULL. Only for sizes the program
 * controls (option strings, small structs, output buffers): running out of
 * memory there is not a recoverable condition, so report and abort.
 * Allocations sized by image contents must not come through here. */
#include "util/xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void xalloc_die(size_t n)
{
    fprintf(stderr, "qemu-img: failed to allocate %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    /* malloc(0) may return NULL; ask for one byte so NULL always means OOM. */
    void *p = malloc(n ? n : 1);
    if (!p)
        xalloc_die(n);
    return p;
}

void *xcalloc(size_t n, size_t sz)
{
    void *p;

    if (n == 0 || sz == 0)
        n = sz = 1;
    p = calloc(n, sz);
    if (!p) {
        size_t total;
        if (__builtin_mul_overflow(n, sz, &total))
            total = SIZE_MAX;
        xalloc_die(total);
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        xalloc_die(n);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *xreallocarray(void *p, size_t n, size_t sz)
{
    size_t total;

    if (__builtin_mul_overflow(n, sz, &total))
        xalloc_die(SIZE_MAX);
    return xrealloc(p, total);
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    int n;
    char *p;

    va_start(ap, fmt);
    va_copy(ap2, ap);
    char probe[1];
    if (!fmt)   /* tells gcc 12 + UBSan the format is never NULL */
        abort();
    n = vsnprintf(probe, sizeof(probe), fmt, ap);
    va_end(ap);
    if (n < 0) {
        /* Only an invalid format or a wide-char conversion error can get here. */
        va_end(ap2);
        fprintf(stderr, "qemu-img: xasprintf: bad format\n");
        abort();
    }
    p = xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}
