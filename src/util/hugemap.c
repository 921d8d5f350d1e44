/* 2 MiB-aligned anonymous mappings (see util/hugemap.h). */
#include "util/hugemap.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void *huge_map(size_t len, bool noreserve)
{
    size_t span, head;
    uintptr_t start;
    uint8_t *p;

    if (len == 0 || len > SIZE_MAX - HUGE_PAGE_SIZE)
        return NULL;
    span = len + HUGE_PAGE_SIZE;
    p = mmap(NULL, span, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0), -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Over-map by one huge page, then trim both ends to the aligned part. */
    start = ((uintptr_t)p + HUGE_PAGE_SIZE - 1) & ~(uintptr_t)(HUGE_PAGE_SIZE - 1);
    head = (size_t)(start - (uintptr_t)p);
    if (head)
        munmap(p, head);
    if (span - head > len)
        munmap((uint8_t *)start + len, span - head - len);
    return (void *)start;
}

void mem_prefault(void *p, size_t len)
{
#ifdef MADV_POPULATE_WRITE
    static size_t page;
    uintptr_t lo, hi;

    if (!page) {
        long v = sysconf(_SC_PAGESIZE);
        page = v > 0 ? (size_t)v : 4096;
    }
    if (!p || len < page)
        return;
    lo = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
    hi = ((uintptr_t)p + len) & ~(uintptr_t)(page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);   /* advice only */
#else
    (void)p;
    (void)len;
#endif
}
