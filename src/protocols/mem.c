/* The "mem" protocol (see mem.h): nodes over registered memory buffers.
 * Used by the fuzz targets (fuzz/) so that hostile images, and the backing
 * files and extents they name, never touch the host: in exclusive mode every
 * filename resolves here.
 *
 * A file is registered read-only (the caller's buffer, served as is) or
 * writable (a private copy that writes change and that grows up to a hard
 * cap; past it writes and truncates fail with -ENOSPC, the error a full disk
 * gives the file protocol). Writable files behave as the file protocol does
 * on a regular file: writes and zero writes past the end extend the file,
 * discard punches a hole without changing the size, truncate sets the size
 * (only growing unless exact), flush does nothing.
 *
 * Write faults (mem_set_write_faults) make the n+1-th counted write, zero
 * write, discard, truncate or flush of a writable file fail before it
 * changes anything, so drivers' write error paths run too; they are
 * counted under the same lock as the change itself.
 *
 * Invariants: a read-only node's buffer lives at least as long as the node
 * (the caller's promise); reads past the end read as zeros, like the file
 * protocol; in a writable file the bytes from the end to the allocation's
 * end are zero, so growing needs no clearing; node identity (dev, ino) is
 * (MEM_DEV, slot + 1) so the core's backing-loop check works on memory files
 * too. Writable files are changed and read under one lock (a write may move
 * the copy); read-only files take no lock. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"
#include "protocols/mem.h"

#define MEM_MAX_FILES 16
#define MEM_DEV ((dev_t)0x6d656d)       /* "mem": no real device has it */
#define MEM_MIN_ALLOC 4096

struct mem_file {
    const char *name;
    const uint8_t *data;    /* the bytes: the caller's, or copy */
    size_t len;
    /* writable files only */
    bool writable;
    uint8_t *copy;          /* private, malloc'ed, alloc bytes */
    size_t alloc, cap;
};

static struct mem_file mem_files[MEM_MAX_FILES];
static size_t mem_nfiles;
static bool mem_exclusive;
static long mem_reads_left = -1;
static long mem_wfault_left = -1;       /* counted calls before the fault; < 0: off */
static unsigned mem_wfault_flags;
static bool mem_wfault_tripped;         /* sticky: failing from now on */
static unsigned long mem_wfault_hits;
static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;

static int add_file(const char *name, const void *data, size_t len, bool writable, size_t cap)
{
    struct mem_file *f;

    for (size_t i = 0; i < mem_nfiles; i++)
        if (!strcmp(mem_files[i].name, name))
            return -EEXIST;
    if (mem_nfiles >= MEM_MAX_FILES)
        return -ENOSPC;
    f = &mem_files[mem_nfiles];
    *f = (struct mem_file){ .name = name, .data = data, .len = len };
    if (writable) {
        if (cap == 0)
            cap = MEM_RW_CAP;
        if (len > cap)
            return -EFBIG;
        f->alloc = len > MEM_MIN_ALLOC ? len : MEM_MIN_ALLOC;
        if (f->alloc > cap)
            f->alloc = cap;
        f->copy = calloc(1, f->alloc ? f->alloc : 1);
        if (!f->copy)
            return -ENOMEM;
        if (len)
            memcpy(f->copy, data, len);
        f->data = f->copy;
        f->writable = true;
        f->cap = cap;
    }
    mem_nfiles++;
    return 0;
}

int mem_file_add(const char *name, const void *data, size_t len)
{
    return add_file(name, data, len, false, 0);
}

int mem_file_add_rw(const char *name, const void *data, size_t len, size_t cap)
{
    return add_file(name, data, len, true, cap);
}

void mem_file_clear(void)
{
    for (size_t i = 0; i < mem_nfiles; i++)
        free(mem_files[i].copy);
    memset(mem_files, 0, sizeof(mem_files));
    mem_nfiles = 0;
    mem_exclusive = false;
    mem_reads_left = -1;
    mem_set_write_faults(-1, 0);
}

void mem_set_exclusive(bool on) { mem_exclusive = on; }
void mem_set_fail_after(long n) { mem_reads_left = n; }

void mem_set_write_faults(long n, unsigned flags)
{
    pthread_mutex_lock(&mem_lock);
    mem_wfault_left = n;
    mem_wfault_flags = n < 0 ? 0 : flags;
    mem_wfault_tripped = false;
    mem_wfault_hits = 0;
    pthread_mutex_unlock(&mem_lock);
}

unsigned long mem_write_faults_hit(void)
{
    unsigned long n;

    pthread_mutex_lock(&mem_lock);
    n = mem_wfault_hits;
    pthread_mutex_unlock(&mem_lock);
    return n;
}

struct mem_state {
    struct mem_file *f;
};

static bool mem_claims(const char *filename)
{
    return mem_exclusive || !strncmp(filename, "mem:", 4);
}

static int mem_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct mem_state *s = bs->opaque;
    (void)opts;

    for (size_t i = 0; i < mem_nfiles; i++) {
        if (!strcmp(mem_files[i].name, bs->filename)) {
            if ((flags & BLK_O_RDWR) && !mem_files[i].writable)
                return err_set_errno(err, EROFS, "Could not open '%s'", bs->filename);
            s->f = &mem_files[i];
            bs->dev = MEM_DEV;
            bs->ino = (ino_t)(i + 1);
            bs->total_size = mem_files[i].len;
            return 0;
        }
    }
    return err_set_errno(err, ENOENT, "Could not open '%s'", bs->filename);
}

static void lock_file(const struct mem_file *f)
{
    if (f->writable)
        pthread_mutex_lock(&mem_lock);
}

static void unlock_file(const struct mem_file *f)
{
    if (f->writable)
        pthread_mutex_unlock(&mem_lock);
}

static int mem_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    const struct mem_state *s = bs->opaque;
    uint64_t n = 0;

    if (mem_reads_left == 0)
        return -EIO;
    if (mem_reads_left > 0)
        mem_reads_left--;
    lock_file(s->f);
    if (off < s->f->len)
        n = min_u64(len, s->f->len - off);
    if (n)
        memcpy(buf, s->f->data + off, (size_t)n);
    unlock_file(s->f);
    memset((uint8_t *)buf + n, 0, (size_t)(len - n));
    return 0;
}

/* Writable files, under mem_lock: 0, or the error an armed write fault
 * injects into this call of kind (MEM_FAULT_*) that would (grows) or would
 * not extend the file. */
static int write_fault(unsigned kind, bool grows)
{
    if (mem_wfault_left < 0 || !(mem_wfault_flags & kind))
        return 0;
    if ((mem_wfault_flags & MEM_FAULT_ENOSPC) && !grows)
        return 0;
    if (!mem_wfault_tripped) {
        if (mem_wfault_left > 0) {
            mem_wfault_left--;
            return 0;
        }
        if (mem_wfault_flags & MEM_FAULT_STICKY)
            mem_wfault_tripped = true;
        else
            mem_wfault_left = -1;       /* one transient failure */
    }
    mem_wfault_hits++;
    return (mem_wfault_flags & MEM_FAULT_ENOSPC) ? -ENOSPC : -EIO;
}

/* Writable files, under mem_lock. Make room for end bytes: -ENOSPC past the
 * cap. The new tail of the allocation is zeroed (the file's invariant). */
static int reserve(struct mem_file *f, uint64_t end)
{
    size_t want;
    uint8_t *p;

    if (end > f->cap)
        return -ENOSPC;
    if (end <= f->alloc)
        return 0;
    want = f->alloc > f->cap / 2 ? f->cap : f->alloc * 2;
    if (want < end)
        want = (size_t)end;
    p = realloc(f->copy, want);
    if (!p)
        return -ENOMEM;
    memset(p + f->alloc, 0, want - f->alloc);
    f->copy = p;
    f->data = p;
    f->alloc = want;
    return 0;
}

/* Set the file's length; bytes dropped by a shrink are cleared. */
static void set_len(struct bds *bs, struct mem_file *f, uint64_t len)
{
    if (len < f->len)
        memset(f->copy + len, 0, f->len - (size_t)len);
    f->len = (size_t)len;
    bs->total_size = len;
}

static int mem_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct mem_state *s = bs->opaque;
    struct mem_file *f = s->f;
    uint64_t end;
    int r;
    (void)flags;

    if (!f->writable)
        return -EROFS;
    if (ckd_add(&end, off, len))
        return -EFBIG;
    lock_file(f);
    r = write_fault(MEM_FAULT_WRITE, end > f->len);
    if (r == 0)
        r = reserve(f, end);
    if (r == 0) {
        memcpy(f->copy + off, buf, (size_t)len);
        if (end > f->len)
            set_len(bs, f, end);
    }
    unlock_file(f);
    return r;
}

/* Zero [off, off+len) inside the file; with grow, extend it to off+len. */
static int zero_range(struct bds *bs, uint64_t off, uint64_t len, bool grow)
{
    struct mem_state *s = bs->opaque;
    struct mem_file *f = s->f;
    uint64_t end;
    int r = 0;

    if (!f->writable)
        return -EROFS;
    if (ckd_add(&end, off, len))
        return -EFBIG;
    lock_file(f);
    r = write_fault(MEM_FAULT_ZERO, grow && end > f->len);
    if (r < 0) {
        unlock_file(f);
        return r;
    }
    if (off < f->len)
        memset(f->copy + off, 0, (size_t)(min_u64(end, f->len) - off));
    if (grow && end > f->len) {
        r = reserve(f, end);
        if (r == 0)
            set_len(bs, f, end);    /* the tail past len is zero already */
    }
    unlock_file(f);
    return r;
}

static int mem_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    (void)flags;
    return zero_range(bs, off, len, true);
}

/* Like a punched hole: reads as zeros, the size stays. */
static int mem_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    return zero_range(bs, off, len, false);
}

static int mem_flush(struct bds *bs)
{
    const struct mem_state *s = bs->opaque;
    int r;

    if (!s->f->writable)
        return 0;
    lock_file(s->f);
    r = write_fault(MEM_FAULT_FLUSH, false);
    unlock_file(s->f);
    return r;
}

static int mem_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                        struct err *err)
{
    struct mem_state *s = bs->opaque;
    struct mem_file *f = s->f;
    int r;
    (void)prealloc;         /* every byte of a memory file is allocated */

    if (!f->writable)
        return err_set_errno(err, EROFS, "Could not resize file");
    lock_file(f);
    r = write_fault(MEM_FAULT_TRUNCATE, size > f->len);
    if (r == 0 && !exact && size <= f->len) {
        unlock_file(f);
        return 0;
    }
    if (r == 0)
        r = reserve(f, size);
    if (r == 0)
        set_len(bs, f, size);
    unlock_file(f);
    return r < 0 ? err_set_errno(err, -r, "Could not resize file") : 0;
}

static int64_t mem_get_length(struct bds *bs)
{
    const struct mem_state *s = bs->opaque;
    int64_t n;

    lock_file(s->f);
    n = (int64_t)s->f->len;
    unlock_file(s->f);
    return n;
}

static int mem_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    uint64_t flen = (uint64_t)mem_get_length(bs);

    *map = off;
    *file = bs;
    if (off >= flen) {
        *pnum = len;
        return BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
    }
    *pnum = min_u64(len, flen - off);
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
}

static int64_t mem_get_allocated_size(struct bds *bs)
{
    return mem_get_length(bs);
}

static bool mem_has_zero_init(struct bds *bs)
{
    (void)bs;
    return true;
}

const struct blk_driver mem_driver = {
    .name = "mem",
    .kind = BLK_KIND_PROTOCOL,
    .instance_size = sizeof(struct mem_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .claims = mem_claims,
    .open = mem_open,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .pwrite_zeroes = mem_pwrite_zeroes,
    .discard = mem_discard,
    .flush = mem_flush,
    .block_status = mem_block_status,
    .get_length = mem_get_length,
    .get_allocated_size = mem_get_allocated_size,
    .truncate = mem_truncate,
    .has_zero_init = mem_has_zero_init,
};
