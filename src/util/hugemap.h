/* 2 MiB-aligned anonymous mappings for transparent huge pages.
 *
 * In a VM with shadow page tables a fault on a fresh anonymous page costs
 * 15-30 µs (docs/performance.md): buffers and caches that will be filled
 * anyway are cheaper as one 2 MiB page than as 512 small ones. */
#ifndef QIMG_UTIL_HUGEMAP_H
#define QIMG_UTIL_HUGEMAP_H

#include <stdbool.h>
#include <stddef.h>

#define HUGE_PAGE_SIZE ((size_t)2 << 20)

/* Sanitizer builds keep malloc, so that overruns are caught. */
#if defined(__SANITIZE_ADDRESS__)
#define HUGE_MAP_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define HUGE_MAP_ENABLED 0
#endif
#endif
#ifndef HUGE_MAP_ENABLED
#define HUGE_MAP_ENABLED 1
#endif

/* Maps len bytes (a multiple of HUGE_PAGE_SIZE) of zeroed anonymous memory
 * at a HUGE_PAGE_SIZE-aligned address, or returns NULL. noreserve asks for
 * MAP_NORESERVE (memory that may never be touched). The caller advises it
 * (MADV_HUGEPAGE) when it wants huge pages, and unmaps it with munmap. */
void *huge_map(size_t len, bool noreserve);

/* Faults in, in one system call, the whole pages inside [p, p + len) of
 * memory about to be filled anyway (MADV_POPULATE_WRITE: contents are left
 * as they are). Each page costs the kernel's allocation either way; this
 * saves the fault itself, which in such a VM costs more than the rest.
 * Advice only: nothing happens on kernels without it (before 5.14). */
void mem_prefault(void *p, size_t len);

#endif
