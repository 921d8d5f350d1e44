/* The "mem" protocol: read-only images held in memory, for tests and
 * fuzzers (no files, no system calls per request).
 *
 * A process-wide table of named buffers, not thread-safe to change: set it
 * up before opening images. Buffers are not copied; the caller keeps them
 * alive until every node opened from them is closed. */
#ifndef QIMG_PROTOCOLS_MEM_H
#define QIMG_PROTOCOLS_MEM_H

#include <stdbool.h>
#include <stddef.h>

/* Register name (e.g. "mem:/img") with its contents; 0, -EEXIST or -ENOSPC. */
int mem_file_add(const char *name, const void *data, size_t len);
/* Forget every registered buffer and reset the modes below. */
void mem_file_clear(void);
/* Exclusive mode: the mem protocol claims every filename, so nothing an
 * image names (backing files, extents, data files) reaches the host file
 * system; unregistered names fail with ENOENT. Off: it claims "mem:" names. */
void mem_set_exclusive(bool on);
/* Unpleasant mode: after n successful reads every read fails with -EIO
 * (n < 0: never), to reach the error paths of drivers. */
void mem_set_fail_after(long n);

#endif
