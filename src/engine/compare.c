/* The comparison engine; see compare.h.
 *
 * Follows qemu-img 7.2's img_compare (qemu-img.c) step for step, because
 * the reported offsets depend on the step boundaries: each step is bounded
 * by both images' block-status extents and by the buffer size; a range both
 * sides report as zero is skipped, a range allocated on both sides is read
 * and compared sector by sector, a range allocated on one side only must
 * read as zeros there. The status word of a backing chain is rebuilt here
 * with qemu's bdrv_block_status_above() rules so that strict mode compares
 * the same bits qemu compares.
 *
 * Speed without changing a single reported byte:
 *  - Steps are planned in order (under the runner lock) and processed by
 *    worker threads; the result is the one of the lowest step that is not
 *    identical, and progress is reported in step order, so the outcome is
 *    what the sequential walk gives.
 *  - A step is read in sub-chunks that stay in the CPU cache between the
 *    read and the memcmp (the copy from the page cache is the dominant
 *    cost, and comparing cache-hot data is almost free).
 *  - Where block status gives a host offset for plain data (raw, qcow2
 *    data clusters), the host node is read directly at that offset: no
 *    format driver, and so no serializing driver lock, on the data path.
 *  - Only "identical" is decided on that fast path. A step where it sees a
 *    difference or an error is redone exactly as qemu does it (whole step
 *    read through the image nodes, side 0 then side 1, then the sector
 *    scan), so which error or offset is reported never depends on the
 *    sub-chunks or the direct reads. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/compare.h"
#include "util/ckd.h"
#include "util/zero.h"

#define SECTOR 512ULL
#define DEFAULT_BUF (2ULL << 20)
/* Bytes per read on the fast path: both sides' sub-chunks fit in a core's
 * L2 cache (multiple of SECTOR, so the sector grid stays the step's). */
#define SUB_CHUNK (256ULL << 10)
#define MAX_WORKERS 4
/* Steps in flight or finished but not yet reported (progress order). */
#define WINDOW 64
/* Walks shorter than this run on the calling thread alone. */
#define PARALLEL_MIN (16ULL << 20)

static int to_qstatus(int r)
{
    int q = 0;

    if (r & BLK_STATUS_DATA)
        q |= QSTATUS_DATA;
    if (r & BLK_STATUS_ZERO)
        q |= QSTATUS_ZERO;
    if (r & BLK_STATUS_OFFSET_VALID)
        q |= QSTATUS_OFFSET_VALID;
    if (r & BLK_STATUS_ALLOCATED)
        q |= QSTATUS_ALLOCATED;
    return q;
}

/* Where the data of a range can be read without the format driver. */
struct direct {
    struct bds *file;   /* NULL: read through the image node */
    uint64_t map;       /* host offset of the range's first byte in file */
};

/* Plain data at a known host offset: the node block status named can be
 * read there directly. Zero, compressed and offset-less answers (encrypted
 * data) go through the image. */
static void direct_from(int r, uint64_t map, struct bds *file, struct bds *bs,
                        struct direct *d)
{
    d->file = NULL;
    d->map = 0;
    if ((r & (BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ZERO |
              BLK_STATUS_COMPRESSED)) == (BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID) &&
        file && file != bs) {
        d->file = file;
        d->map = map;
    }
}

static int status_above(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                        struct direct *d)
{
    int64_t top = blk_getlength(bs);
    uint64_t n = 0, map = 0;
    struct bds *file = NULL;
    int r, q;

    if (top < 0)
        return (int)top;
    if (off >= (uint64_t)top || len == 0)
        return -EINVAL;
    len = min_u64(len, (uint64_t)top - off);
    r = blk_block_status(bs, off, len, &n, &map, &file);
    if (r < 0)
        return r;
    if (n == 0 || n > len)
        return -EIO;
    q = to_qstatus(r);
    direct_from(r, map, file, bs, d);
    if (!(q & QSTATUS_ALLOCATED)) {
        for (struct bds *p = bs->backing; p; p = p->backing) {
            int64_t psize = blk_getlength(p);
            uint64_t n2 = 0;

            if (psize < 0)
                return (int)psize;
            if (off >= (uint64_t)psize) {
                /* A short layer below an unallocated range: its synthesized
                 * zeros count as allocated there (qemu's rule). */
                q = QSTATUS_ZERO | QSTATUS_ALLOCATED;
                d->file = NULL;
                break;
            }
            file = NULL;
            r = blk_block_status(p, off, n, &n2, &map, &file);
            if (r < 0)
                return r;
            if (n2 == 0 || n2 > n)
                return -EIO;
            n = n2;
            q = to_qstatus(r);
            direct_from(r, map, file, p, d);
            if (q & QSTATUS_ALLOCATED)
                break;
        }
    }
    if (off + n == (uint64_t)top)
        q |= QSTATUS_EOF;
    *pnum = n;
    return q;
}

int compare_status_above(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum)
{
    struct direct d;
    return status_above(bs, off, len, pnum, &d);
}

int64_t compare_find_nonzero(const uint8_t *buf, uint64_t len)
{
    uint64_t end = align_down_u64(len, SECTOR), i;

    if (buffer_is_zero(buf, len))
        return -1;
    for (i = 0; i < end; i += SECTOR)
        if (!buffer_is_zero(buf + i, SECTOR))
            return (int64_t)i;
    if (i < len && !buffer_is_zero(buf + i, len - end))
        return (int64_t)i;
    return -1;
}

bool compare_sectors(const uint8_t *a, const uint8_t *b, uint64_t len, uint64_t *pnum)
{
    uint64_t i = min_u64(len, SECTOR);
    bool differ = memcmp(a, b, i) != 0;

    if (!differ && memcmp(a + i, b + i, len - i) == 0) {
        *pnum = len;
        return false;
    }
    while (i < len) {
        uint64_t n = min_u64(len - i, SECTOR);
        if ((memcmp(a + i, b + i, n) != 0) != differ)
            break;
        i += n;
    }
    *pnum = i;
    return differ;
}

static void set_result(struct compare_result *res, enum compare_kind kind, int which,
                       uint64_t offset, int err)
{
    res->kind = kind;
    res->which = which;
    res->offset = offset;
    res->err = err;
}

/* --- steps --- */

enum step_kind {
    STEP_SKIP,          /* nothing to read */
    STEP_COMPARE,       /* both sides allocated: read and compare */
    STEP_EMPTY,         /* side `which` must read as zeros */
};

struct step {
    uint64_t index, off, len;
    enum step_kind kind;
    int which;
    struct direct d[2];
};

struct slot {
    uint64_t len;
    bool done;
};

struct runner {
    struct compare_job *job;
    bool tail;
    int big;                    /* the longer image (tail mode) */
    uint64_t end, step_max, sub;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t next_off, next_index;
    bool walk_done;             /* end reached, or a result recorded */
    uint64_t report_index;      /* next step whose progress is due */
    struct slot win[WINDOW];
    bool have_result;
    uint64_t result_index;
    struct compare_result result;
    int error;                  /* -ENOMEM from a worker's exact path */
};

/* Per-worker buffers: sub-chunks for the fast path, whole steps for the
 * exact one (allocated when first needed). */
struct wbuf {
    uint8_t *sub[2];
    uint8_t *full[2];
};

static void wbuf_release(struct wbuf *w)
{
    for (int i = 0; i < 2; i++) {
        free(w->sub[i]);
        free(w->full[i]);
    }
}

static int wbuf_init(struct wbuf *w, uint64_t sub)
{
    memset(w, 0, sizeof(*w));
    for (int i = 0; i < 2; i++) {
        if (posix_memalign((void **)&w->sub[i], 4096, sub)) {
            w->sub[i] = NULL;
            wbuf_release(w);
            return -ENOMEM;
        }
    }
    return 0;
}

static int wbuf_full(struct wbuf *w, uint64_t size)
{
    for (int i = 0; i < 2; i++) {
        if (!w->full[i] && posix_memalign((void **)&w->full[i], 4096, size)) {
            w->full[i] = NULL;
            return -ENOMEM;
        }
    }
    return 0;
}

/* Plan the step at rn->next_off (lock held). Returns false when there is
 * none: the walk ended or its planning produced the result. */
static bool plan(struct runner *rn, struct step *st, struct compare_result *res)
{
    struct compare_job *job = rn->job;
    uint64_t off = rn->next_off;

    memset(st, 0, sizeof(*st));
    st->off = off;
    st->index = rn->next_index;
    set_result(res, COMPARE_IDENTICAL, 0, 0, 0);
    if (rn->tail) {
        uint64_t chunk = 0;
        int s = status_above(job->bs[rn->big], off, rn->end - off, &chunk, &st->d[rn->big]);
        if (s < 0) {
            set_result(res, COMPARE_STATUS_ERROR, rn->big, off, -s);
            return false;
        }
        st->kind = STEP_SKIP;
        if ((s & QSTATUS_ALLOCATED) && !(s & QSTATUS_ZERO)) {
            chunk = min_u64(chunk, rn->step_max);
            st->kind = STEP_EMPTY;
            st->which = rn->big;
        }
        st->len = chunk;
        return true;
    }

    uint64_t pnum[2], chunk;
    int s[2];
    bool alloc[2];

    for (int i = 0; i < 2; i++) {
        s[i] = status_above(job->bs[i], off, job->size[i] - off, &pnum[i], &st->d[i]);
        if (s[i] < 0) {
            set_result(res, COMPARE_STATUS_ERROR, i, off, -s[i]);
            return false;
        }
        alloc[i] = s[i] & QSTATUS_ALLOCATED;
    }
    chunk = min_u64(pnum[0], pnum[1]);
    if (job->strict && s[0] != s[1]) {
        set_result(res, COMPARE_STATUS_MISMATCH, 0, off, 0);
        return false;
    }
    st->kind = STEP_SKIP;
    if ((s[0] & QSTATUS_ZERO) && (s[1] & QSTATUS_ZERO)) {
        /* both read as zeros: nothing to read */
    } else if (alloc[0] == alloc[1]) {
        if (alloc[0]) {
            chunk = min_u64(chunk, rn->step_max);
            st->kind = STEP_COMPARE;
        }
    } else {
        chunk = min_u64(chunk, rn->step_max);
        st->kind = STEP_EMPTY;
        /* qemu reads either side into the first buffer */
        st->which = alloc[0] ? 0 : 1;
    }
    st->len = chunk;
    return true;
}

/* qemu's handling of one step, exactly: whole reads through the image
 * nodes, side 0 first. */
static int exact_step(struct runner *rn, struct wbuf *w, const struct step *st,
                      struct compare_result *res)
{
    struct compare_job *job = rn->job;
    int r;

    if ((r = wbuf_full(w, rn->step_max)) < 0)
        return r;
    if (st->kind == STEP_EMPTY) {
        int64_t idx;
        r = blk_pread(job->bs[st->which], st->off, st->len, w->full[0]);
        if (r < 0) {
            set_result(res, COMPARE_READ_ERROR, st->which, st->off, -r);
            return 0;
        }
        idx = compare_find_nonzero(w->full[0], st->len);
        if (idx >= 0)
            set_result(res, COMPARE_CONTENT_MISMATCH, st->which, st->off + (uint64_t)idx, 0);
        return 0;
    }
    for (int i = 0; i < 2; i++) {
        r = blk_pread(job->bs[i], st->off, st->len, w->full[i]);
        if (r < 0) {
            set_result(res, COMPARE_READ_ERROR, i, st->off, -r);
            return 0;
        }
    }
    uint64_t same;
    bool differ = compare_sectors(w->full[0], w->full[1], st->len, &same);
    if (differ || same != st->len)
        set_result(res, COMPARE_CONTENT_MISMATCH, 0, st->off + (differ ? 0 : same), 0);
    return 0;
}

static int read_side(struct compare_job *job, const struct step *st, int i, uint64_t pos,
                     uint64_t n, uint8_t *buf)
{
    if (st->d[i].file)
        return blk_pread(st->d[i].file, st->d[i].map + pos, n, buf);
    return blk_pread(job->bs[i], st->off + pos, n, buf);
}

/* The fast path: true when the step is certainly identical. */
static bool fast_step(struct runner *rn, struct wbuf *w, const struct step *st)
{
    for (uint64_t pos = 0; pos < st->len; ) {
        uint64_t n = min_u64(st->len - pos, rn->sub);
        if (st->kind == STEP_EMPTY) {
            if (read_side(rn->job, st, st->which, pos, n, w->sub[0]) < 0 ||
                !buffer_is_zero(w->sub[0], n))
                return false;
        } else {
            for (int i = 0; i < 2; i++)
                if (read_side(rn->job, st, i, pos, n, w->sub[i]) < 0)
                    return false;
            if (memcmp(w->sub[0], w->sub[1], n))
                return false;
        }
        pos += n;
    }
    return true;
}

/* Record a step's outcome (lock held): the lowest step with a result wins;
 * identical steps are reported in order. */
static void finish(struct runner *rn, const struct step *st, const struct compare_result *res)
{
    struct compare_job *job = rn->job;

    if (res->kind != COMPARE_IDENTICAL) {
        if (!rn->have_result || st->index < rn->result_index) {
            rn->have_result = true;
            rn->result_index = st->index;
            rn->result = *res;
        }
        rn->walk_done = true;
    } else {
        rn->win[st->index % WINDOW].done = true;
    }
    while (rn->report_index < rn->next_index &&
           rn->win[rn->report_index % WINDOW].done &&
           !(rn->have_result && rn->report_index >= rn->result_index)) {
        struct slot *sl = &rn->win[rn->report_index % WINDOW];
        job->offset += sl->len;
        if (job->progress)
            job->progress(job->opaque, sl->len);
        sl->done = false;
        rn->report_index++;
    }
    pthread_cond_broadcast(&rn->cond);
}

static void run_worker(struct runner *rn, struct wbuf *w)
{
    pthread_mutex_lock(&rn->lock);
    for (;;) {
        struct compare_result res;
        struct step st;

        while (!rn->walk_done && rn->next_index - rn->report_index >= WINDOW)
            pthread_cond_wait(&rn->cond, &rn->lock);
        if (rn->walk_done)
            break;
        if (!plan(rn, &st, &res)) {
            st.index = rn->next_index++;
            finish(rn, &st, &res);
            break;
        }
        rn->win[st.index % WINDOW].len = st.len;
        rn->win[st.index % WINDOW].done = false;
        rn->next_index++;
        rn->next_off += st.len;
        if (rn->next_off >= rn->end)
            rn->walk_done = true;
        if (st.kind != STEP_SKIP) {
            pthread_mutex_unlock(&rn->lock);
            set_result(&res, COMPARE_IDENTICAL, 0, 0, 0);
            int r = 0;
            if (!fast_step(rn, w, &st))
                r = exact_step(rn, w, &st, &res);
            pthread_mutex_lock(&rn->lock);
            if (r < 0) {
                rn->error = r;
                rn->walk_done = true;
                pthread_cond_broadcast(&rn->cond);
                break;
            }
        }
        finish(rn, &st, &res);
    }
    pthread_mutex_unlock(&rn->lock);
}

static void *worker_main(void *opaque)
{
    struct runner *rn = opaque;
    struct wbuf w;

    /* A helper that cannot get buffers leaves the work to the others. */
    if (wbuf_init(&w, rn->sub) == 0) {
        run_worker(rn, &w);
        wbuf_release(&w);
    }
    return NULL;
}

static int run(struct compare_job *job, bool tail, struct compare_result *res)
{
    struct runner rn;
    struct wbuf w;
    pthread_t tid[MAX_WORKERS - 1];
    int nthreads = 0, r;
    long ncpu;

    set_result(res, COMPARE_IDENTICAL, 0, 0, 0);
    memset(&rn, 0, sizeof(rn));
    rn.job = job;
    rn.tail = tail;
    rn.big = job->size[0] > job->size[1] ? 0 : 1;
    rn.end = tail ? job->size[rn.big] : min_u64(job->size[0], job->size[1]);
    if (job->offset >= rn.end)
        return 0;
    rn.step_max = job->buf_size ? job->buf_size : DEFAULT_BUF;
    rn.sub = min_u64(rn.step_max, SUB_CHUNK);
    rn.next_off = job->offset;
    if ((r = wbuf_init(&w, rn.sub)) < 0)
        return r;
    pthread_mutex_init(&rn.lock, NULL);
    pthread_cond_init(&rn.cond, NULL);

    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > MAX_WORKERS)
        ncpu = MAX_WORKERS;
    if (rn.end - job->offset >= PARALLEL_MIN)
        for (; nthreads < ncpu - 1; nthreads++)
            if (pthread_create(&tid[nthreads], NULL, worker_main, &rn) != 0)
                break;
    run_worker(&rn, &w);
    for (int i = 0; i < nthreads; i++)
        pthread_join(tid[i], NULL);

    pthread_cond_destroy(&rn.cond);
    pthread_mutex_destroy(&rn.lock);
    wbuf_release(&w);
    if (rn.error < 0)
        return rn.error;
    if (rn.have_result)
        *res = rn.result;
    return 0;
}

int compare_common(struct compare_job *job, struct compare_result *res)
{
    return run(job, false, res);
}

int compare_tail(struct compare_job *job, struct compare_result *res)
{
    return run(job, true, res);
}
