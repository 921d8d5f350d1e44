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

/* Write faults, on writable files only: the kinds of call that count. */
#define MEM_FAULT_WRITE     0x01u   /* pwrite */
#define MEM_FAULT_ZERO      0x02u   /* pwrite_zeroes and discard */
#define MEM_FAULT_TRUNCATE  0x04u
#define MEM_FAULT_FLUSH     0x08u
#define MEM_FAULT_KINDS     0x0fu
/* Modes: every counted call from the failing one on fails (a dead disk),
 * not only that one (a transient error); only calls that would grow the
 * file count, and they fail with -ENOSPC (a full disk). */
#define MEM_FAULT_STICKY    0x10u
#define MEM_FAULT_ENOSPC    0x20u
/* After n counted calls succeed, the next one fails with -EIO (-ENOSPC
 * under MEM_FAULT_ENOSPC) and changes nothing; n < 0 disarms. Counted
 * calls are those whose kind is in flags, across all writable files.
 * Read-only files never count. mem_file_clear() disarms. */
void mem_set_write_faults(long n, unsigned flags);
/* How many calls the write faults have failed since they were armed. */
unsigned long mem_write_faults_hit(void);

#endif
