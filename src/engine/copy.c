/* The copy engine; see copy.h.
 *
 * Like qemu-img convert, the walk is done in 512-byte sectors: a first
 * pass sums the bytes to be written (for progress), the second copies.
 * Each step asks block status once for the longest extent it can, so a
 * hole of any size is one call. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "block/driver.h"
#include "engine/compare.h"
#include "engine/copy.h"
#include "util/hugemap.h"
#include "util/zero.h"

#define SECTOR 512ULL
#define COPY_DIRECT_BUF (4ULL << 20)
#define REBASE_BUF_BUDGET (8ULL << 20)

enum copy_status { ST_DATA, ST_ZERO, ST_BACKING };

/* Step buffers. Every byte of one is written by the first read, and in
 * the bench VM a first-touch fault costs 15-30 us per 4 KiB page: 512
 * per 2 MiB buffer, thousands per copy. Buffers of 2 MiB and more are
 * mapped 2 MiB-aligned and advised for transparent huge pages (one fault
 * each, the same resident size since they are filled anyway). Sanitizer
 * builds keep malloc so that overruns are caught. */
#define HUGE_BUF HUGE_PAGE_SIZE
#define BUF_MMAP HUGE_MAP_ENABLED

static size_t buf_len(uint64_t size)
{
    return (size_t)align_up_u64(size, size >= HUGE_BUF ? HUGE_BUF : 4096);
}

static uint8_t *buf_alloc(uint64_t size)
{
    size_t len = buf_len(size);
    uint8_t *p;
    void *q = NULL;

    if (!BUF_MMAP || size < HUGE_BUF)
        return posix_memalign(&q, 4096, len) ? NULL : q;
    p = huge_map(len, false);
#ifdef MADV_HUGEPAGE
    if (p)
        madvise(p, len, MADV_HUGEPAGE);     /* advice only */
#endif
    return p;
}

static void buf_free(uint8_t *p, uint64_t size)
{
    if (!p)
        return;
    if (!BUF_MMAP || size < HUGE_BUF)
        free(p);
    else
        munmap(p, buf_len(size));
}

struct walk {
    struct copy_job *job;
    uint64_t total;         /* bytes */
    uint64_t next_status;   /* status is valid below this offset */
    enum copy_status status;
};

static void select_part(const struct copy_job *j, uint64_t off, int *idx, uint64_t *base)
{
    *idx = 0;
    *base = 0;
    while (*idx < j->nsrc - 1 && off - *base >= j->src_size[*idx]) {
        *base += j->src_size[*idx];
        (*idx)++;
    }
}

/* Length of the next step at off and its status (w->status). */
static int64_t iterate(struct walk *w, uint64_t off, struct err *err)
{
    struct copy_job *j = w->job;
    uint64_t n = min_u64(w->total - off, 1ULL << 30);
    bool post_backing_zero = false;
    int idx;
    uint64_t base;

    select_part(j, off, &idx, &base);
    if (j->target_backing_size >= 0) {
        if (off >= (uint64_t)j->target_backing_size)
            post_backing_zero = true;
        else if (off + n > (uint64_t)j->target_backing_size)
            n = (uint64_t)j->target_backing_size - off;
    }
    if (w->next_status <= off) {
        struct bds *src = j->src[idx];
        struct bds *bbase = j->target_has_backing ? src->backing : NULL;
        uint64_t count = min_u64(n, j->src_size[idx] - (off - base));
        uint64_t pnum = 0;
        int r;

        for (;;) {
            r = blk_block_status_above(src, bbase, off - base, count, &pnum, NULL, NULL, NULL);
            if (r >= 0 && pnum == 0 && (r & BLK_STATUS_EOF)) {
                /* Source shorter than announced: zeros. */
                pnum = count;
                r = BLK_STATUS_ZERO;
            }
            if (r >= 0)
                break;
            if (!j->salvage)
                return err_set(err, -r, "error while reading block status at offset %llu: %s",
                               (unsigned long long)(off - base), strerror(-r));
            if (count <= SECTOR) {
                if (j->warn) {
                    char m[256];
                    snprintf(m, sizeof(m), "error while reading block status at offset %llu: %s",
                             (unsigned long long)(off - base), strerror(-r));
                    j->warn(j->progress_opaque, m);
                }
                r = BLK_STATUS_DATA;
                pnum = SECTOR;
                break;
            }
            count = align_up_u64(div_round_up_u64(count, 4), SECTOR);
        }
        n = align_up_u64(pnum, SECTOR);
        if (r & BLK_STATUS_ZERO)
            w->status = post_backing_zero ? ST_BACKING : ST_ZERO;
        else if (r & BLK_STATUS_DATA)
            w->status = ST_DATA;
        else
            w->status = j->target_has_backing ? ST_BACKING : ST_DATA;
        w->next_status = off + n;
    }
    n = min_u64(n, w->next_status - off);
    if (w->status == ST_DATA)
        n = min_u64(n, j->buf_size);
    if (j->compressed) {
        if (n < j->cluster_size) {
            n = min_u64(j->cluster_size, w->total - off);
            w->status = ST_DATA;
        } else {
            n = align_down_u64(n, j->cluster_size);
        }
    }
    return (int64_t)n;
}

/* qemu's is_allocated_sectors: length of the run of sectors sharing the
 * first sector's zero-ness, nudged to the alignment. Returns 1 for data. */
static int run_of_sectors(const uint8_t *buf, uint64_t n, uint64_t *pnum, uint64_t sector,
                          uint64_t alignment)
{
    bool is_zero;
    uint64_t i, tail;

    if (n == 0) {
        *pnum = 0;
        return 0;
    }
    is_zero = buffer_is_zero(buf, SECTOR);
    for (i = 1; i < n; i++)
        if (is_zero != buffer_is_zero(buf + i * SECTOR, SECTOR))
            break;
    if (i == n) {
        *pnum = i;
        return !is_zero;
    }
    tail = (sector + i) & (alignment - 1);
    if (tail) {
        if (is_zero && i <= tail)
            is_zero = false;
        if (!is_zero)
            i = min_u64(i + alignment - tail, n);
        else
            i -= tail;
    }
    *pnum = i;
    return !is_zero;
}

/* Data runs absorb zero runs shorter than min sectors. */
static int run_min(const uint8_t *buf, uint64_t n, uint64_t *pnum, uint64_t min,
                   uint64_t sector, uint64_t alignment)
{
    uint64_t used, checked;
    int r;

    if (n < min)
        min = n;
    r = run_of_sectors(buf, n, pnum, sector, alignment);
    if (!r)
        return 0;
    used = checked = *pnum;
    buf += *pnum * SECTOR;
    n -= *pnum;
    sector += *pnum;
    while (n > 0) {
        r = run_of_sectors(buf, n, pnum, sector, alignment);
        buf += *pnum * SECTOR;
        n -= *pnum;
        sector += *pnum;
        checked += *pnum;
        if (r)
            used = checked;
        else if (*pnum >= min)
            break;
    }
    *pnum = used;
    return 1;
}

static int read_sources(struct copy_job *j, uint64_t off, uint64_t len, uint8_t *buf,
                        struct err *err)
{
    while (len) {
        int idx;
        uint64_t base;
        select_part(j, off, &idx, &base);
        uint64_t in = off - base;
        uint64_t n = min_u64(len, j->src_size[idx] - in);
        int64_t slen = blk_getlength(j->src[idx]);
        int r = 0;
        if (slen >= 0 && in >= (uint64_t)slen)
            memset(buf, 0, n);
        else
            r = blk_pread(j->src[idx], in, min_u64(n, slen >= 0 ? (uint64_t)slen - in : n), buf);
        if (slen >= 0 && in < (uint64_t)slen && in + n > (uint64_t)slen)
            memset(buf + ((uint64_t)slen - in), 0, n - ((uint64_t)slen - in));
        if (r < 0 && j->salvage) {
            /* Retry sector by sector, zero-filling what cannot be read. */
            for (uint64_t s = 0; s < n; s += SECTOR) {
                uint64_t m = min_u64(SECTOR, n - s);
                if (blk_pread(j->src[idx], in + s, m, buf + s) < 0) {
                    if (j->warn) {
                        char msg[256];
                        snprintf(msg, sizeof(msg), "error while reading offset %llu: %s",
                                 (unsigned long long)(in + s), strerror(-r));
                        j->warn(j->progress_opaque, msg);
                    }
                    memset(buf + s, 0, m);
                }
            }
            r = 0;
        }
        if (r < 0)
            return err_set(err, -r, "error while reading at byte %llu: %s",
                           (unsigned long long)off, strerror(-r));
        off += n;
        len -= n;
        buf += n;
    }
    return 0;
}

/* A step's data compressed ahead of its turn (see engine_worker). */
struct precomp {
    bool valid;
    const uint8_t *payload;
    long plen;              /* < 0: incompressible */
};

/* Data writes whose host space was allocated in the writer's turn and
 * whose data goes out after it (blk_pwrite_map): with O_DIRECT targets
 * the writes of several steps are then in flight at once, while the
 * allocation order, hence the layout, stays qemu-img's. */
#define MAX_PENDING 16

struct pending {
    uint64_t off, len, host;
    struct bds *file;
    const uint8_t *buf;
};

struct pendq {
    int n;
    struct pending p[MAX_PENDING];
};

static int write_run(struct copy_job *j, uint64_t off, uint64_t len, const uint8_t *buf,
                     struct pendq *q)
{
    while (len) {
        uint64_t pnum = len, host = 0;
        struct bds *file = NULL;
        int r = 0;

        if (q && q->n < MAX_PENDING)
            r = blk_pwrite_map(j->target, off, len, &pnum, &host, &file);
        if (r < 0)
            return r;
        if (r == 1) {
            q->p[q->n++] = (struct pending){ off, pnum, host, file, buf };
        } else {
            pnum = min_u64(pnum, len);
            r = blk_pwrite(j->target, off, pnum, buf, 0);
            if (r < 0)
                return r;
        }
        off += pnum;
        len -= pnum;
        buf += pnum;
    }
    return 0;
}

/* The data of the mapped writes, then their mapping. Every entry is
 * committed, failed ones (and those after a failure) with an error, so
 * that their allocation is released. */
static int write_pending(struct copy_job *j, struct pendq *q, bool cancel, struct err *err)
{
    int ret = cancel ? -ECANCELED : 0;

    for (int i = 0; i < q->n; i++) {
        struct pending *p = &q->p[i];
        int r = ret ? -ECANCELED : blk_pwrite(p->file, p->host, p->len, p->buf, 0);
        int c = blk_pwrite_commit(j->target, p->off, p->len, p->host, r);
        if (r == 0 && c < 0)
            r = c;
        if (r < 0 && !ret)
            ret = err_set(err, -r, "error while writing at byte %llu: %s",
                          (unsigned long long)p->off, strerror(-r));
    }
    q->n = 0;
    return ret;
}

static int write_step(struct copy_job *j, uint64_t off, uint64_t len, uint8_t *buf,
                      enum copy_status st, const struct precomp *pc, struct pendq *q,
                      struct err *err)
{
    int wflags = j->compressed ? BLK_WRITE_COMPRESSED : 0;
    int r = 0;

    while (len) {
        uint64_t n = len;

        if (st == ST_BACKING) {
            /* leave unallocated: the backing file shows through */
        } else {
            bool write_data = false;
            if (st == ST_DATA) {
                if (!j->min_sparse) {
                    write_data = true;
                } else if (!j->compressed) {
                    uint64_t ns;
                    uint64_t total_sec = div_round_up_u64(len, SECTOR);
                    write_data = run_min(buf, total_sec, &ns, j->min_sparse / SECTOR,
                                         off / SECTOR, j->alignment / SECTOR);
                    n = min_u64(ns * SECTOR, len);
                } else {
                    write_data = !buffer_is_zero(buf, len);
                }
            }
            if (write_data && pc && pc->valid && n == len) {
                r = blk_pwrite_compressed(j->target, off, n, buf, pc->payload, pc->plen);
            } else if (write_data && !wflags) {
                r = write_run(j, off, n, buf, q);
            } else if (write_data) {
                r = blk_pwrite(j->target, off, n, buf, wflags);
            } else if (!j->has_zero_init) {
                r = blk_pwrite_zeroes(j->target, off, n, BLK_WRITE_MAY_UNMAP);
            }
            if (r < 0)
                return err_set(err, -r, "error while writing at byte %llu: %s",
                               (unsigned long long)off, strerror(-r));
        }
        off += n;
        len -= n;
        buf += n;
    }
    return 0;
}

/* Shared state of one threaded copy. Workers take the next step under the
 * lock (block status is asked there, so the walk stays sequential), then
 * read and write outside it; with in-order writes a worker waits until the
 * writes before its step are done, as qemu-img does without -W. */
/* A worker waiting for its turn to write (in-order mode): each has its own
 * condition, so a finished write wakes only the worker whose step is next
 * instead of every waiting one. */
struct turn_waiter {
    uint64_t off;
    pthread_cond_t cv;
    struct turn_waiter *next;
};

struct engine {
    struct copy_job *j;
    struct walk w;
    pthread_mutex_t lock;
    struct turn_waiter *waiters;    /* under lock */
    uint64_t next_off;      /* next offset to hand out */
    uint64_t wr_off;        /* in-order mode: offset whose write is due */
    uint64_t allocated, done;
    uint64_t limited;       /* bytes counted against rate_limit so far */
    struct timespec t0;     /* when the copy started, for rate_limit */
    int ret;
    struct err err;
    bool split;             /* data writes through blk_pwrite_map */
};

static void engine_fail(struct engine *e, int r, struct err *err)
{
    pthread_mutex_lock(&e->lock);
    if (!e->ret) {
        e->ret = r;
        e->err = *err;
    }
    for (struct turn_waiter *t = e->waiters; t; t = t->next)
        pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&e->lock);
}

/* -r: a step of n bytes may start once the bytes before it fit in the
 * rate since the copy began (the budget is shared by all workers). */
static void rate_wait(struct engine *e, uint64_t n)
{
    struct timespec now, due;
    double at;

    if (!e->j->rate_limit)
        return;
    pthread_mutex_lock(&e->lock);
    at = (double)e->limited / (double)e->j->rate_limit;
    e->limited += n;
    pthread_mutex_unlock(&e->lock);
    due.tv_sec = e->t0.tv_sec + (time_t)at;
    due.tv_nsec = e->t0.tv_nsec + (long)((at - (double)(time_t)at) * 1e9);
    if (due.tv_nsec >= 1000000000L) {
        due.tv_sec++;
        due.tv_nsec -= 1000000000L;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec < due.tv_nsec))
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
            ;
}

/* In-order mode: wait until the writes before off are done. Returns false
 * when the copy failed meanwhile. */
static bool wait_turn(struct engine *e, uint64_t off)
{
    bool ok;
    if (!e->j->in_order)
        return true;
    pthread_mutex_lock(&e->lock);
    if (e->wr_off != off && !e->ret) {
        struct turn_waiter t = { .off = off, .next = e->waiters };
        pthread_cond_init(&t.cv, NULL);
        e->waiters = &t;
        while (e->wr_off != off && !e->ret)
            pthread_cond_wait(&t.cv, &e->lock);
        for (struct turn_waiter **p = &e->waiters; *p; p = &(*p)->next)
            if (*p == &t) {
                *p = t.next;
                break;
            }
        pthread_cond_destroy(&t.cv);
    }
    ok = e->ret == 0;
    pthread_mutex_unlock(&e->lock);
    return ok;
}

static void end_turn(struct engine *e, uint64_t end)
{
    if (!e->j->in_order)
        return;
    pthread_mutex_lock(&e->lock);
    e->wr_off = end;
    for (struct turn_waiter *t = e->waiters; t; t = t->next)
        if (t->off == end) {
            pthread_cond_signal(&t->cv);
            break;
        }
    pthread_mutex_unlock(&e->lock);
}

/* -C: the data of one step copied inside the host. 0 when done, -ENOTSUP
 * when the caller must copy it itself. */
static int offload_step(struct copy_job *j, uint64_t off, uint64_t n, struct err *err)
{
    int idx;
    uint64_t base;
    int r;

    select_part(j, off, &idx, &base);
    if (off - base + n > j->src_size[idx])
        return -ENOTSUP;
    r = blk_copy_range(j->src[idx], off - base, j->target, off, n);
    if (r == -ENOTSUP || r == -EXDEV)
        return -ENOTSUP;
    if (r < 0)
        return err_set(err, -r, "error while writing at byte %llu: %s",
                       (unsigned long long)off, strerror(-r));
    return 0;
}

static void *engine_worker(void *opaque)
{
    struct engine *e = opaque;
    struct copy_job *j = e->j;
    uint8_t *buf = NULL, *cbuf = NULL;
    size_t ccap = 0;
    struct pendq pq = { 0 };
    struct err err;

    err_init(&err);
    if (!(buf = buf_alloc(j->buf_size))) {
        err_set(&err, ENOMEM, "Could not allocate the copy buffer");
        engine_fail(e, -ENOMEM, &err);
        return NULL;
    }
    /* Compression happens here, on every worker, before a step waits for
     * its turn to write; the driver then only stores the payload. */
    if (j->compressed && blk_can_precompress(j->target)) {
        ccap = (size_t)j->buf_size * 2 + 4096;
        cbuf = malloc(ccap);
    }
    for (;;) {
        uint64_t off, n;
        enum copy_status st;
        int r;

        pthread_mutex_lock(&e->lock);
        if (e->ret || e->next_off >= e->w.total) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        int64_t sn = iterate(&e->w, e->next_off, &err);
        if (sn < 0) {
            pthread_mutex_unlock(&e->lock);
            engine_fail(e, (int)sn, &err);
            break;
        }
        off = e->next_off;
        n = (uint64_t)sn;
        st = e->w.status;
        if (!j->min_sparse && st == ST_ZERO)
            n = min_u64(n, j->buf_size);
        e->next_off += n;
        if (st == ST_DATA || (!j->min_sparse && st == ST_ZERO)) {
            e->done += n;
            if (j->progress && e->allocated)
                j->progress(j->progress_opaque, 100.0 * (double)e->done / (double)e->allocated);
        }
        pthread_mutex_unlock(&e->lock);

        if (st == ST_DATA)
            rate_wait(e, n);
        if (j->copy_range && st == ST_DATA) {
            if (!wait_turn(e, off))
                break;
            r = offload_step(j, off, n, &err);
            if (r == 0) {
                end_turn(e, off + n);
                continue;
            }
            if (r != -ENOTSUP) {
                engine_fail(e, r, &err);
                break;
            }
        }
        if (st == ST_DATA) {
            if ((r = read_sources(j, off, n, buf, &err)) < 0) {
                engine_fail(e, r, &err);
                break;
            }
        } else if (!j->min_sparse && st == ST_ZERO) {
            st = ST_DATA;
            memset(buf, 0, n);
        }
        struct precomp pc = { false, NULL, -1 };
        if (cbuf && st == ST_DATA && !buffer_is_zero(buf, n)) {
            long c = blk_compress(j->target, buf, n, cbuf, ccap);
            if (c >= 0 || c == -ENOSPC) {
                pc.valid = true;
                pc.payload = cbuf;
                pc.plen = c >= 0 ? c : -1;
            }
        }
        if (!wait_turn(e, off))
            break;
        r = write_step(j, off, n, buf, st, &pc, e->split ? &pq : NULL, &err);
        if (r < 0) {
            write_pending(j, &pq, true, NULL);
            engine_fail(e, r, &err);
            break;
        }
        end_turn(e, off + n);
        if (pq.n && (r = write_pending(j, &pq, false, &err)) < 0) {
            engine_fail(e, r, &err);
            break;
        }
    }
    free(cbuf);
    buf_free(buf, j->buf_size);
    return NULL;
}

/* Is every node under bs a page-cached local file? Then requests finish
 * without waiting on a device, and threads beyond the CPUs only add
 * switching; O_DIRECT and network nodes gain from requests in flight. */
/* fn(arg) on n threads: n - 1 started here (fewer if creation fails) and
 * the caller's own; returns when all are done. */
static void run_workers(void *(*fn)(void *), void *arg, int n)
{
    pthread_t tid[COPY_MAX_WORKERS];
    int started = 0;

    for (int i = 1; i < n && i < COPY_MAX_WORKERS; i++)
        if (pthread_create(&tid[started], NULL, fn, arg) == 0)
            started++;
    fn(arg);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
}

static bool cached_local(const struct bds *bs, int depth)
{
    if (!bs)
        return true;
    if (depth > 64 || (bs->flags & BLK_O_NOCACHE))
        return false;
    if (bs->drv->kind == BLK_KIND_PROTOCOL && strcmp(blk_driver_name(bs->drv), "file"))
        return false;
    return cached_local(bs->file, depth + 1) && cached_local(bs->backing, depth + 1);
}

static bool uses_nocache(const struct bds *bs, int depth)
{
    if (!bs || depth > 64)
        return false;
    if (bs->flags & BLK_O_NOCACHE)
        return true;
    return uses_nocache(bs->file, depth + 1) || uses_nocache(bs->backing, depth + 1);
}

int copy_run(struct copy_job *j, struct err *err)
{
    struct engine e;
    int nthreads;
    uint64_t off;

    memset(&e, 0, sizeof(e));
    e.j = j;
    e.w.job = j;
    err_init(&e.err);
    for (int i = 0; i < j->nsrc; i++)
        e.w.total += j->src_size[i];
    if (j->alignment < SECTOR)
        j->alignment = SECTOR;
    if (!j->buf_size)
        j->buf_size = 2u << 20;
    bool local = cached_local(j->target, 0), direct = uses_nocache(j->target, 0);
    for (int i = 0; i < j->nsrc; i++) {
        local = local && cached_local(j->src[i], 0);
        direct = direct || uses_nocache(j->src[i], 0);
    }
    /* O_DIRECT (-t none / -T none): each request waits on the device and
     * a qcow2 target takes its data writes one at a time, so fewer, larger
     * steps keep the disk busier (convert -t none -T none of the bench
     * corpus: 4 MiB steps measured 10-40% faster than 2 MiB, 8 and 16 MiB
     * no better for twice the memory). Step size changes neither the
     * content nor, with in-order writes, the target's layout. */
    if (direct && !j->compressed && j->buf_size < COPY_DIRECT_BUF)
        j->buf_size = COPY_DIRECT_BUF;
    e.split = uses_nocache(j->target, 0) && !j->compressed;
    if (j->compressed) {
        if (!j->cluster_size || j->cluster_size > (64ULL << 20))
            return err_set(err, EINVAL, "invalid cluster size");
        j->buf_size = j->cluster_size;
    }
    /* Pass 1: how much will be written, for progress. */
    for (off = 0; off < e.w.total;) {
        int64_t n = iterate(&e.w, off, err);
        if (n < 0)
            return (int)n;
        if (e.w.status == ST_DATA || (!j->min_sparse && e.w.status == ST_ZERO))
            e.allocated += (uint64_t)n;
        off += (uint64_t)n;
    }
    e.w.next_status = 0;
    pthread_mutex_init(&e.lock, NULL);
    clock_gettime(CLOCK_MONOTONIC, &e.t0);

    nthreads = j->workers > 0 ? j->workers : 1;
    if (nthreads > COPY_MAX_WORKERS)
        nthreads = COPY_MAX_WORKERS;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (local && ncpu > 0 && nthreads > ncpu)
        nthreads = (int)ncpu;
    /* Doubled O_DIRECT steps, half as many in flight: the buffers stay
     * what -m asks of qemu-img (8 x 2 MiB by default). */
    if (direct && j->buf_size == COPY_DIRECT_BUF && nthreads > 1)
        nthreads /= 2;
    /* No more workers than there are buffers of data to copy: each one
     * faults in its own buffer (a 2 MiB huge page), so a worker without
     * a step of its own only adds to the peak memory (a sparse 64 GiB image
     * with 2 MiB of data took 10.6 MiB with two workers, 8.6 with one). */
    uint64_t fill = e.allocated / j->buf_size + (e.allocated % j->buf_size != 0);
    if (fill < (uint64_t)nthreads)
        nthreads = fill ? (int)fill : 1;
    run_workers(engine_worker, &e, nthreads);
    pthread_mutex_destroy(&e.lock);
    if (e.ret) {
        if (err && e.err.set && !err->set)
            *err = e.err;
        return e.ret;
    }
    return 0;
}

/* --- rebase (safe mode) ---
 *
 * One walk shared by the workers, as in copy_run: a worker takes the next
 * step under the lock (allocation is asked there, so the steps are exactly
 * qemu-img's), reads and compares outside it, and writes when the steps
 * before it are written. */
struct rebase {
    struct rebase_job *j;
    pthread_mutex_t lock;
    pthread_cond_t turn;
    uint64_t next_off;      /* next offset to hand out */
    uint64_t wr_off;        /* offset whose writes are due */
    int ret;
    struct err err;
};

static void rebase_fail(struct rebase *rb, int r, struct err *err)
{
    pthread_mutex_lock(&rb->lock);
    if (!rb->ret) {
        rb->ret = r;
        rb->err = *err;
    }
    pthread_cond_broadcast(&rb->turn);
    pthread_mutex_unlock(&rb->lock);
}

/* The next step at rb->next_off (lock held) in *off and *n, with
 * *skip set for a range bs allocates itself. */
static int rebase_next(struct rebase *rb, uint64_t *off, uint64_t *n, bool *skip,
                       struct err *err)
{
    struct rebase_job *j = rb->j;
    struct bds *bs = j->bs;
    uint64_t o = rb->next_off, len = min_u64(j->buf_size, j->size - o);
    int r;

    *off = o;
    *skip = false;
    r = blk_is_allocated_above(bs, bs->backing, o, len, &len);
    if (r < 0)
        return err_set(err, -r, "error while reading image metadata: %s", strerror(-r));
    if (len == 0)
        len = 1;    /* cannot happen below the image size; keeps the walk moving */
    if (r) {
        *skip = true;
        *n = len;
        return 0;
    }
    if (j->prefix) {
        uint64_t bytes = len;
        r = bs->backing ? blk_is_allocated_above(bs->backing, j->prefix, o, len, &len) : 0;
        if (r < 0)
            return err_set(err, -r, "error while reading image metadata: %s", strerror(-r));
        if (!r && len) {
            *skip = true;
            *n = len;
            return 0;
        }
        if (!len)
            len = bytes;
    }
    if (o < j->old_size && o + len > j->old_size)
        len = j->old_size - o;
    if (j->new_backing && o < j->new_size && o + len > j->new_size)
        len = j->new_size - o;
    *n = len;
    return 0;
}

/* Reads [off, off+n) of node (size bytes long; NULL reads as zeros) into
 * buf. Ranges that read as zero by block status are not read. Returns 1
 * when all of it is zero that way, 0 when data was read, or -errno. */
static int rebase_fill(struct bds *node, uint64_t size, uint64_t off, uint64_t n, uint8_t *buf)
{
    bool all_zero = true;

    if (!node || off >= size) {
        memset(buf, 0, n);
        return 1;
    }
    while (n) {
        uint64_t pnum = 0;
        int r = blk_block_status_above(node, NULL, off, n, &pnum, NULL, NULL, NULL);
        if (r >= 0 && pnum == 0 && (r & BLK_STATUS_EOF)) {
            memset(buf, 0, n);
            break;
        }
        if (r < 0 || pnum == 0 || pnum > n) {
            pnum = n;
            r = BLK_STATUS_DATA;    /* no answer: read it */
        }
        if (r & BLK_STATUS_ZERO) {
            memset(buf, 0, pnum);
        } else {
            r = blk_pread(node, off, pnum, buf);
            if (r < 0)
                return r;
            all_zero = false;
        }
        off += pnum;
        buf += pnum;
        n -= pnum;
    }
    return all_zero ? 1 : 0;
}

static bool rebase_wait_turn(struct rebase *rb, uint64_t off)
{
    bool ok;
    pthread_mutex_lock(&rb->lock);
    while (rb->wr_off != off && !rb->ret)
        pthread_cond_wait(&rb->turn, &rb->lock);
    ok = rb->ret == 0;
    pthread_mutex_unlock(&rb->lock);
    return ok;
}

static void rebase_end_turn(struct rebase *rb, uint64_t end, bool compared)
{
    pthread_mutex_lock(&rb->lock);
    rb->wr_off = end;
    if (compared && rb->j->step_done)
        rb->j->step_done(rb->j->opaque);
    pthread_cond_broadcast(&rb->turn);
    pthread_mutex_unlock(&rb->lock);
}

/* compare_sectors() against a buffer of zeros, without the buffer: whether
 * the first sector has data, and in *pnum the length of the prefix (whole
 * sectors, the last may be short) that shares that state. */
static bool nonzero_sectors(const uint8_t *a, uint64_t len, uint64_t *pnum)
{
    uint64_t i = min_u64(len, SECTOR);
    bool differ = !buffer_is_zero(a, i);

    if (!differ && buffer_is_zero(a + i, len - i)) {
        *pnum = len;
        return false;
    }
    while (i < len) {
        uint64_t n = min_u64(len - i, SECTOR);
        if (!buffer_is_zero(a + i, n) != differ)
            break;
        i += n;
    }
    *pnum = i;
    return differ;
}

/* A worker's buffers. The new backing's side is allocated on first use:
 * with no new backing (rebase -b "") or past its end it reads as zeros,
 * and the comparison needs no second buffer (half the memory). */
struct rebase_bufs {
    uint8_t *old, *new;
};

static int rebase_step(struct rebase_job *j, uint64_t off, uint64_t n, struct rebase_bufs *b,
                       struct rebase *rb, struct err *err)
{
    bool old_is_zero = off >= j->old_size;
    bool new_is_zero = !j->new_backing || off >= j->new_size;
    uint8_t *buf_old = b->old, *buf_new = NULL;
    int zo, zn = 1;

    zo = rebase_fill(j->bs->backing, j->old_size, off, n, buf_old);
    if (zo < 0)
        return err_set(err, -zo, "error while reading from old backing file");
    if (!new_is_zero) {
        if (!b->new && !(b->new = buf_alloc(j->buf_size)))
            return err_set(err, ENOMEM, "Could not allocate buffers");
        buf_new = b->new;
        zn = rebase_fill(j->new_backing, j->new_size, off, n, buf_new);
        if (zn < 0)
            return err_set(err, -zn, "error while reading from new backing file");
    }
    if (!rebase_wait_turn(rb, off))
        return 1;
    if (zo && zn)
        return 0;   /* both read as zero: nothing differs */
    for (uint64_t done = 0; done < n;) {
        uint64_t pnum;
        bool differ = zn ? nonzero_sectors(buf_old + done, n - done, &pnum)
                         : compare_sectors(buf_old + done, buf_new + done, n - done, &pnum);
        if (differ) {
            /* Zeros beyond the old backing's end are written as zeros,
             * anything read from it (even zeros) as data, as qemu-img. */
            int w = old_is_zero ? blk_pwrite_zeroes(j->bs, off + done, pnum, 0)
                                : blk_pwrite(j->bs, off + done, pnum, buf_old + done, 0);
            if (w < 0)
                return err_set(err, -w, "Error while writing to COW image: %s", strerror(-w));
        }
        done += pnum;
    }
    return 0;
}

static void *rebase_worker(void *opaque)
{
    struct rebase *rb = opaque;
    struct rebase_job *j = rb->j;
    struct rebase_bufs b = { NULL, NULL };
    struct err err;

    err_init(&err);
    if (!(b.old = buf_alloc(j->buf_size))) {
        err_set(&err, ENOMEM, "Could not allocate buffers");
        rebase_fail(rb, -ENOMEM, &err);
        goto out;
    }
    for (;;) {
        uint64_t off = 0, n = 0;
        bool skip = false;
        int r;

        pthread_mutex_lock(&rb->lock);
        if (rb->ret || rb->next_off >= j->size) {
            pthread_mutex_unlock(&rb->lock);
            break;
        }
        r = rebase_next(rb, &off, &n, &skip, &err);
        if (r < 0) {
            pthread_mutex_unlock(&rb->lock);
            rebase_fail(rb, r, &err);
            break;
        }
        rb->next_off = off + n;
        if (skip) {
            /* Nothing to write: pass the turn on at once (in order). */
            if (rb->wr_off == off) {
                rb->wr_off = off + n;
                pthread_cond_broadcast(&rb->turn);
                pthread_mutex_unlock(&rb->lock);
                continue;
            }
            pthread_mutex_unlock(&rb->lock);
            if (!rebase_wait_turn(rb, off))
                break;
            rebase_end_turn(rb, off + n, false);
            continue;
        }
        pthread_mutex_unlock(&rb->lock);
        r = rebase_step(j, off, n, &b, rb, &err);
        if (r < 0) {
            rebase_fail(rb, r, &err);
            break;
        }
        if (r > 0)
            break;  /* another worker failed */
        rebase_end_turn(rb, off + n, true);
    }
out:
    buf_free(b.old, j->buf_size);
    buf_free(b.new, j->buf_size);
    return NULL;
}

int rebase_run(struct rebase_job *j, struct err *err)
{
    struct rebase rb;
    int nthreads;

    memset(&rb, 0, sizeof(rb));
    rb.j = j;
    err_init(&rb.err);
    if (!j->buf_size)
        j->buf_size = 2u << 20;
    pthread_mutex_init(&rb.lock, NULL);
    pthread_cond_init(&rb.turn, NULL);
    nthreads = j->workers > 0 ? j->workers : 1;
    if (nthreads > COPY_MAX_WORKERS)
        nthreads = COPY_MAX_WORKERS;
    /* Peak memory no higher than qemu-img's (its rebase holds two 2 MiB
     * buffers on top of a larger process): the buffers of all workers
     * stay within REBASE_BUF_BUDGET, one per worker when the new backing
     * reads as zeros (rebase -b ""), two otherwise. */
    {
        uint64_t per = j->buf_size * (j->new_backing ? 2 : 1);
        uint64_t fit = per ? REBASE_BUF_BUDGET / per : 1;
        if ((uint64_t)nthreads > fit)
            nthreads = fit ? (int)fit : 1;
    }
    run_workers(rebase_worker, &rb, nthreads);
    pthread_cond_destroy(&rb.turn);
    pthread_mutex_destroy(&rb.lock);
    if (rb.ret) {
        if (err && rb.err.set && !err->set)
            *err = rb.err;
        return rb.ret;
    }
    return 0;
}
