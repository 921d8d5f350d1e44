/* The "mem" protocol: images held in memory, for tests and fuzzers (no
 * files, no system calls per request).
 *
 * A process-wide table of named buffers, not thread-safe to change: set it
 * up before opening images. Read-only buffers are not copied; the caller
 * keeps them alive until every node opened from them is closed. Writable
 * files are private copies, freed by mem_file_clear(). */
#ifndef QIMG_PROTOCOLS_MEM_H
#define QIMG_PROTOCOLS_MEM_H

#include <stdbool.h>
#include <stddef.h>

/* The default size limit of a writable file (mem_file_add_rw cap 0). */
#define MEM_RW_CAP ((size_t)64 << 20)

/* Register name (e.g. "mem:/img") with its contents, read-only (opening it
 * read-write fails with EROFS); 0, -EEXIST or -ENOSPC. */
int mem_file_add(const char *name, const void *data, size_t len);
/* Register name as a writable file: a private copy of data that writes,
 * zero writes, discards and truncates change as they would a regular file,
 * growing up to cap bytes (0: MEM_RW_CAP); past it they fail with -ENOSPC.
 * Returns 0, -EEXIST, -ENOSPC (table full), -EFBIG (len > cap) or -ENOMEM. */
int mem_file_add_rw(const char *name, const void *data, size_t len, size_t cap);
/* Forget every registered file (freeing writable copies) and reset the
 * modes below. No node may still be open on them. */
void mem_file_clear(void);
/* Exclusive mode: the mem protocol claims every filename, so nothing an
 * image names (backing files, extents, data files) reaches the host file
 * system; unregistered names fail with ENOENT. Off: it claims "mem:" names. */
void mem_set_exclusive(bool on);
/* Unpleasant mode: after n successful reads every read fails with -EIO
 * (n < 0: never), to reach the error paths of drivers. */
void mem_set_fail_after(long n);

#endif
