/* The comparison engine; see compare.h.
 *
 * Follows qemu-img 7.2's img_compare (qemu-img.c) step for step, because
 * the reported offsets depend on the step boundaries: each step is bounded
 * by both images' block-status extents and by the buffer size; a range both
 * sides report as zero is skipped, a range allocated on both sides is read
 * and compared sector by sector, a range allocated on one side only must
 * read as zeros there. The status word of a backing chain is rebuilt here
 * with qemu's bdrv_block_status_above() rules so that strict mode compares
 * the same bits qemu compares. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compare.h"
#include "util/ckd.h"
#include "util/zero.h"

#define SECTOR 512ULL
#define DEFAULT_BUF (2ULL << 20)

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

int compare_status_above(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum)
{
    int64_t top = blk_getlength(bs);
    uint64_t n = 0;
    int r, q;

    if (top < 0)
        return (int)top;
    if (off >= (uint64_t)top || len == 0)
        return -EINVAL;
    len = min_u64(len, (uint64_t)top - off);
    r = blk_block_status(bs, off, len, &n, NULL, NULL);
    if (r < 0)
        return r;
    if (n == 0 || n > len)
        return -EIO;
    q = to_qstatus(r);
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
                break;
            }
            r = blk_block_status(p, off, n, &n2, NULL, NULL);
            if (r < 0)
                return r;
            if (n2 == 0 || n2 > n)
                return -EIO;
            n = n2;
            q = to_qstatus(r);
            if (q & QSTATUS_ALLOCATED)
                break;
        }
    }
    if (off + n == (uint64_t)top)
        q |= QSTATUS_EOF;
    *pnum = n;
    return q;
}

int64_t compare_find_nonzero(const uint8_t *buf, uint64_t len)
{
    uint64_t end = align_down_u64(len, SECTOR), i;

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

    while (i < len) {
        uint64_t n = min_u64(len - i, SECTOR);
        if ((memcmp(a + i, b + i, n) != 0) != differ)
            break;
        i += n;
    }
    *pnum = i;
    return differ;
}

struct bufs {
    uint8_t *b[2];
    uint64_t size;
};

static int bufs_init(struct bufs *bf, const struct compare_job *job)
{
    bf->size = job->buf_size ? job->buf_size : DEFAULT_BUF;
    bf->b[0] = bf->b[1] = NULL;
    if (posix_memalign((void **)&bf->b[0], 4096, bf->size) ||
        posix_memalign((void **)&bf->b[1], 4096, bf->size)) {
        free(bf->b[0]);
        bf->b[0] = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void bufs_release(struct bufs *bf)
{
    free(bf->b[0]);
    free(bf->b[1]);
}

static void set_result(struct compare_result *res, enum compare_kind kind, int which,
                       uint64_t offset, int err)
{
    res->kind = kind;
    res->which = which;
    res->offset = offset;
    res->err = err;
}

/* qemu-img's check_empty_sectors: the range of image `which` must read as
 * zeros. Returns true when a result was recorded. */
static bool check_empty(struct compare_job *job, int which, uint64_t off, uint64_t len,
                        uint8_t *buf, struct compare_result *res)
{
    int r = blk_pread(job->bs[which], off, len, buf);
    int64_t idx;

    if (r < 0) {
        set_result(res, COMPARE_READ_ERROR, which, off, -r);
        return true;
    }
    idx = compare_find_nonzero(buf, len);
    if (idx >= 0) {
        set_result(res, COMPARE_CONTENT_MISMATCH, which, off + (uint64_t)idx, 0);
        return true;
    }
    return false;
}

int compare_common(struct compare_job *job, struct compare_result *res)
{
    uint64_t total = min_u64(job->size[0], job->size[1]);
    struct bufs bf;
    int r;

    set_result(res, COMPARE_IDENTICAL, 0, 0, 0);
    if (job->offset >= total)
        return 0;
    if ((r = bufs_init(&bf, job)) < 0)
        return r;
    while (job->offset < total) {
        uint64_t off = job->offset, pnum[2], chunk;
        int st[2];
        bool alloc[2];

        for (int i = 0; i < 2; i++) {
            st[i] = compare_status_above(job->bs[i], off, job->size[i] - off, &pnum[i]);
            if (st[i] < 0) {
                set_result(res, COMPARE_STATUS_ERROR, i, off, -st[i]);
                goto out;
            }
            alloc[i] = st[i] & QSTATUS_ALLOCATED;
        }
        chunk = min_u64(pnum[0], pnum[1]);
        if (job->strict && st[0] != st[1]) {
            set_result(res, COMPARE_STATUS_MISMATCH, 0, off, 0);
            goto out;
        }
        if ((st[0] & QSTATUS_ZERO) && (st[1] & QSTATUS_ZERO)) {
            /* both read as zeros: nothing to read */
        } else if (alloc[0] == alloc[1]) {
            if (alloc[0]) {
                uint64_t same;
                bool differ;

                chunk = min_u64(chunk, bf.size);
                for (int i = 0; i < 2; i++) {
                    r = blk_pread(job->bs[i], off, chunk, bf.b[i]);
                    if (r < 0) {
                        set_result(res, COMPARE_READ_ERROR, i, off, -r);
                        goto out;
                    }
                }
                differ = compare_sectors(bf.b[0], bf.b[1], chunk, &same);
                if (differ || same != chunk) {
                    set_result(res, COMPARE_CONTENT_MISMATCH, 0, off + (differ ? 0 : same), 0);
                    goto out;
                }
            }
        } else {
            chunk = min_u64(chunk, bf.size);
            /* qemu reads either side into the first buffer */
            if (check_empty(job, alloc[0] ? 0 : 1, off, chunk, bf.b[0], res))
                goto out;
        }
        job->offset = off + chunk;
        if (job->progress)
            job->progress(job->opaque, chunk);
    }
out:
    bufs_release(&bf);
    return 0;
}

int compare_tail(struct compare_job *job, struct compare_result *res)
{
    int big = job->size[0] > job->size[1] ? 0 : 1;
    uint64_t end = job->size[big];
    struct bufs bf;
    int r;

    set_result(res, COMPARE_IDENTICAL, 0, 0, 0);
    if (job->offset >= end)
        return 0;
    if ((r = bufs_init(&bf, job)) < 0)
        return r;
    while (job->offset < end) {
        uint64_t off = job->offset, chunk;
        int st = compare_status_above(job->bs[big], off, end - off, &chunk);

        if (st < 0) {
            set_result(res, COMPARE_STATUS_ERROR, big, off, -st);
            break;
        }
        if ((st & QSTATUS_ALLOCATED) && !(st & QSTATUS_ZERO)) {
            chunk = min_u64(chunk, bf.size);
            if (check_empty(job, big, off, chunk, bf.b[0], res))
                break;
        }
        job->offset = off + chunk;
        if (job->progress)
            job->progress(job->opaque, chunk);
    }
    bufs_release(&bf);
    return 0;
}
