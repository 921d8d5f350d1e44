/* Request validation, alignment and serialization — in one place, so
 * drivers receive only requests inside the node with len > 0.
 *
 * Unaligned requests to nodes with request_alignment > 1 (O_DIRECT files)
 * go through an aligned bounce buffer (read-modify-write for writes). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"

/* A request that reaches past BLK_MAX_LENGTH fails with -EIO, as qemu's
 * bdrv_check_request does (a hostile table offset then reads "Input/output
 * error" as with qemu-img). */
#define MAX_REQUEST BLK_MAX_LENGTH

static void lock_node(struct bds *bs)
{
    if (bs->drv->thread_model != BLK_THREAD_PARALLEL)
        pthread_mutex_lock(&bs->lock);
}

static void unlock_node(struct bds *bs)
{
    if (bs->drv->thread_model != BLK_THREAD_PARALLEL)
        pthread_mutex_unlock(&bs->lock);
}

/* Whether pread takes the node lock (driver.h, enum blk_thread_model). */
static bool read_locked(const struct bds *bs)
{
    return bs->drv->thread_model == BLK_THREAD_SERIALIZE ||
           (bs->drv->thread_model == BLK_THREAD_READS_UNLOCKED_RO && !bs->read_only);
}

static int check_request(uint64_t off, uint64_t len)
{
    uint64_t end;
    if (len > MAX_REQUEST || off > MAX_REQUEST || ckd_add(&end, off, len) || end > MAX_REQUEST)
        return -EIO;
    return 0;
}

static bool misaligned(const struct bds *bs, uint64_t off, uint64_t len, const void *buf)
{
    uint64_t a = bs->request_alignment;
    if (a <= 1)
        return false;
    return (off | len) & (a - 1) || ((uintptr_t)buf & (a - 1));
}

/* Aligned bounce read of [off, off+len). */
static int bounce_read(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    uint64_t a = bs->request_alignment;
    uint64_t start = align_down_u64(off, a);
    uint64_t end = align_up_u64(off + len, a);
    void *tmp;
    int r;

    if (posix_memalign(&tmp, a, (size_t)(end - start)))
        return -ENOMEM;
    r = bs->drv->pread(bs, start, end - start, tmp);
    if (r == 0)
        memcpy(buf, (uint8_t *)tmp + (off - start), (size_t)len);
    free(tmp);
    return r;
}

static int bounce_write(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    uint64_t a = bs->request_alignment;
    uint64_t start = align_down_u64(off, a);
    uint64_t end = align_up_u64(off + len, a);
    void *tmp;
    int r = 0;

    if (posix_memalign(&tmp, a, (size_t)(end - start)))
        return -ENOMEM;
    if (start != off || end != off + len) {
        /* Read the partial head and tail blocks before merging. */
        if (start != off)
            r = bs->drv->pread(bs, start, a, tmp);
        if (!r && end != off + len && (end - a >= start + a || start == off))
            r = bs->drv->pread(bs, end - a, a, (uint8_t *)tmp + (end - a - start));
    }
    if (!r) {
        memcpy((uint8_t *)tmp + (off - start), buf, (size_t)len);
        r = bs->drv->pwrite(bs, start, end - start, tmp, flags);
    }
    free(tmp);
    return r;
}

bool blk_pread_unlocked(const struct bds *bs)
{
    return bs->drv->thread_model == BLK_THREAD_READS_UNLOCKED_RO && !read_locked(bs);
}

void blk_pread_lock(struct bds *bs)
{
    if (blk_pread_unlocked(bs))
        pthread_mutex_lock(&bs->lock);
}

void blk_pread_unlock(struct bds *bs)
{
    if (blk_pread_unlocked(bs))
        pthread_mutex_unlock(&bs->lock);
}

int blk_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    int r;
    /* checked before the empty case, as qemu does: an empty read at a
     * hostile offset fails too */
    if ((r = check_request(off, len)) < 0)
        return r;
    if (len == 0)
        return 0;
    if (!bs->drv->pread)
        return -ENOTSUP;
    bool locked = read_locked(bs);
    if (locked)
        pthread_mutex_lock(&bs->lock);
    if (misaligned(bs, off, len, buf))
        r = bounce_read(bs, off, len, buf);
    else
        r = bs->drv->pread(bs, off, len, buf);
    if (locked)
        pthread_mutex_unlock(&bs->lock);
    return r;
}

/* The checks every write takes: 1 to go on, 0 for an empty request. */
static int write_request(struct bds *bs, uint64_t off, uint64_t len)
{
    int r;
    if (len == 0)
        return 0;
    if ((r = check_request(off, len)) < 0)
        return r;
    return bs->read_only ? -EPERM : 1;
}

int blk_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    int r;
    if ((r = write_request(bs, off, len)) <= 0)
        return r;
    if (!bs->drv->pwrite)
        return -ENOTSUP;
    lock_node(bs);
    if (misaligned(bs, off, len, buf))
        r = bounce_write(bs, off, len, buf, flags);
    else
        r = bs->drv->pwrite(bs, off, len, buf, flags);
    if (r == 0 && (bs->flags & BLK_O_WRITETHROUGH) && bs->drv->flush)
        r = bs->drv->flush(bs);
    unlock_node(bs);
    return r;
}

int blk_pwrite_map(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum, uint64_t *host,
                   struct bds **file)
{
    int r;

    *pnum = len;
    if ((r = write_request(bs, off, len)) <= 0)
        return r;
    /* Write-through nodes flush after each write: blk_pwrite does that. */
    if (!bs->drv->pwrite_map || !bs->drv->pwrite_commit || (bs->flags & BLK_O_WRITETHROUGH))
        return 0;
    lock_node(bs);
    r = bs->drv->pwrite_map(bs, off, len, pnum, host, file);
    unlock_node(bs);
    if (r == 0 && (*pnum == 0 || *pnum > len))
        *pnum = len;
    assert(r != 1 || (*pnum > 0 && *pnum <= len));
    return r;
}

int blk_pwrite_commit(struct bds *bs, uint64_t off, uint64_t len, uint64_t host, int ret)
{
    int r;

    lock_node(bs);
    r = bs->drv->pwrite_commit(bs, off, len, host, ret);
    unlock_node(bs);
    return r;
}

int blk_copy_range(struct bds *src, uint64_t soff, struct bds *dst, uint64_t doff, uint64_t len)
{
    int r;

    if ((r = check_request(soff, len)) < 0 || (r = check_request(doff, len)) < 0)
        return r;
    if (dst->read_only)
        return -EPERM;
    while (dst->drv->kind == BLK_KIND_FORMAT && dst->drv->write_passthrough && dst->file) {
        if (doff + len > dst->total_size)
            return -ENOTSUP;    /* the format would have to grow with it */
        dst = dst->file;
    }
    if (dst->drv->kind != BLK_KIND_PROTOCOL || !dst->drv->copy_range)
        return -ENOTSUP;
    /* Each host extent of the source must be plain data on a node of the
     * target's driver; check all of it before copying any. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t o = soff, d = doff, left = len;
        while (left) {
            struct bds *f = src, *host = NULL;
            uint64_t map = o, pnum = left;
            while (f->drv->kind == BLK_KIND_FORMAT) {
                struct bds *next = NULL;
                uint64_t m = 0, n = 0;
                int st = blk_block_status(f, map, pnum, &n, &m, &next);
                if (st < 0)
                    return st;
                if ((st & (BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ZERO |
                           BLK_STATUS_COMPRESSED)) != (BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID) ||
                    !next || !n)
                    return pass ? -EIO : -ENOTSUP;
                pnum = min_u64(pnum, n);
                map = m;
                f = next;
            }
            host = f;
            if (host->drv != dst->drv)
                return pass ? -EIO : -ENOTSUP;
            if (pass && (r = host->drv->copy_range(host, map, dst, d, pnum)) < 0)
                return r;
            o += pnum;
            d += pnum;
            left -= pnum;
        }
    }
    return 0;
}

bool blk_can_precompress(struct bds *bs)
{
    return bs->drv->compress && bs->drv->pwrite_compressed && bs->request_alignment <= 1;
}

long blk_compress(struct bds *bs, const void *buf, size_t len, void *dst, size_t cap)
{
    if (!blk_can_precompress(bs))
        return -ENOTSUP;
    return bs->drv->compress(bs, buf, len, dst, cap);
}

int blk_pwrite_compressed(struct bds *bs, uint64_t off, uint64_t len, const void *buf,
                          const void *payload, long plen)
{
    int r;
    if ((r = write_request(bs, off, len)) <= 0)
        return r;
    if (!blk_can_precompress(bs))
        return -ENOTSUP;
    lock_node(bs);
    r = bs->drv->pwrite_compressed(bs, off, len, buf, payload, plen);
    if (r == 0 && (bs->flags & BLK_O_WRITETHROUGH) && bs->drv->flush)
        r = bs->drv->flush(bs);
    unlock_node(bs);
    return r;
}

int blk_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    int r;
    if ((r = write_request(bs, off, len)) <= 0)
        return r;
    lock_node(bs);
    if (bs->drv->pwrite_zeroes && !misaligned(bs, off, len, NULL))
        r = bs->drv->pwrite_zeroes(bs, off, len, flags);
    else
        r = -ENOTSUP;
    unlock_node(bs);
    if (r != -ENOTSUP || (flags & BLK_WRITE_NO_FALLBACK))
        return r;

    /* Fallback: write explicit zero buffers. */
    size_t bufsz = (size_t)min_u64(len, 1 << 20);
    uint64_t a = bs->request_alignment > 1 ? bs->request_alignment : 1;
    void *zero;
    if (posix_memalign(&zero, a < 4096 ? 4096 : a, align_up_u64(bufsz, 4096)))
        return -ENOMEM;
    memset(zero, 0, align_up_u64(bufsz, 4096));
    r = 0;
    while (len && !r) {
        uint64_t n = min_u64(len, bufsz);
        r = blk_pwrite(bs, off, n, zero, flags & ~BLK_WRITE_MAY_UNMAP);
        off += n;
        len -= n;
    }
    free(zero);
    return r;
}

int blk_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    int r;
    if ((r = write_request(bs, off, len)) <= 0)
        return r;
    if (!bs->drv->discard)
        return 0;           /* discard is advisory */
    lock_node(bs);
    r = bs->drv->discard(bs, off, len);
    unlock_node(bs);
    return r == -ENOTSUP ? 0 : r;
}

int blk_flush(struct bds *bs)
{
    int r = 0;
    if (!bs || bs->read_only)
        return 0;
    if (bs->drv->flush) {
        lock_node(bs);
        r = bs->drv->flush(bs);
        unlock_node(bs);
    }
    if (r == 0 && bs->file && bs->file != bs)
        r = blk_flush(bs->file);
    return r;
}

static int64_t node_length(struct bds *bs)
{
    if (bs->drv->get_length && bs->drv->kind == BLK_KIND_FORMAT) {
        int64_t r;
        lock_node(bs);
        r = bs->drv->get_length(bs);
        unlock_node(bs);
        return r;
    }
    return bs->total_size > INT64_MAX - 511 ? -EFBIG : (int64_t)bs->total_size;
}

/* Like qemu's bdrv_getlength: whole 512-byte sectors. */
int64_t blk_getlength(struct bds *bs)
{
    int64_t len = node_length(bs);
    if (len < 0)
        return len;
    return (int64_t)align_up_u64((uint64_t)len, 512);
}

int64_t blk_get_allocated_size(struct bds *bs)
{
    if (bs->drv->get_allocated_size)
        return bs->drv->get_allocated_size(bs);
    if (bs->file && bs->file != bs)
        return blk_get_allocated_size(bs->file);
    return -ENOTSUP;
}

int blk_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                 struct err *err)
{
    int r;
    if (size > INT64_MAX)
        return err_set(err, EINVAL, "Image size too large");
    if (bs->read_only)
        return err_set(err, EACCES, "Image is read-only");
    if (!bs->drv->truncate)
        return err_set(err, ENOTSUP, "Image format driver does not support resize");
    lock_node(bs);
    r = bs->drv->truncate(bs, size, exact, prealloc, err);
    unlock_node(bs);
    return r;
}

int blk_read_backing(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct bds *b = bs->backing;
    if (!b) {
        memset(buf, 0, (size_t)len);
        return 0;
    }
    int64_t blen = blk_getlength(b);
    if (blen < 0)
        return (int)blen;
    uint64_t avail = off >= (uint64_t)blen ? 0 : min_u64(len, (uint64_t)blen - off);
    if (avail < len)
        memset((uint8_t *)buf + avail, 0, (size_t)(len - avail));
    return avail ? blk_pread(b, off, avail, buf) : 0;
}
