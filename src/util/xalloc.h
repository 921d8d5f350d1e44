/* Allocation helpers for sizes the program itself controls (option strings,
 * small structs). Allocations driven by image contents must use plain
 * calloc/reallocarray with caps and handle failure with -ENOMEM instead.
 * All of these print a message and abort() on allocation failure; a zero
 * size still yields a unique non-NULL pointer. */
#ifndef QIMG_UTIL_XALLOC_H
#define QIMG_UTIL_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
/* xrealloc(p, n * sz), aborting when the product overflows. */
void *xreallocarray(void *p, size_t n, size_t sz);
char *xstrdup(const char *s);
/* Copy at most n bytes of s, always NUL-terminated. */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
