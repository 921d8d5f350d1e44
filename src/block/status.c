/* block_status over one node and over a backing chain.
 *
 * Contract with drivers: a driver reports DATA and/or ZERO for ranges its
 * own layer answers (plus OFFSET_VALID with *map and *file where the data lives
 * at a known host offset), and 0 for ranges that fall through to the
 * backing file. The core derives ALLOCATED, marks unallocated ranges ZERO
 * where nothing lies below, and — where the driver sets RECURSE, as qemu's
 * drivers do for preallocated or flat layouts — refines DATA ranges by asking
 * the protocol node whether the host range is a hole. */
#include <errno.h>

#include "block/driver.h"

int blk_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                     uint64_t *map, struct bds **file)
{
    int64_t size = blk_getlength(bs);
    uint64_t m = 0;
    struct bds *f = NULL;
    int r;

    if (size < 0)
        return (int)size;
    if (off >= (uint64_t)size || len == 0) {
        *pnum = 0;
        return BLK_STATUS_EOF;
    }
    len = min_u64(len, (uint64_t)size - off);
    if (!bs->drv->block_status) {
        *pnum = len;
        if (map)
            *map = off;
        if (file)
            *file = NULL;
        return BLK_STATUS_DATA | BLK_STATUS_ALLOCATED;
    }
    if (bs->drv->thread_model != BLK_THREAD_PARALLEL)
        pthread_mutex_lock(&bs->lock);
    r = bs->drv->block_status(bs, off, len, pnum, &m, &f);
    if (bs->drv->thread_model != BLK_THREAD_PARALLEL)
        pthread_mutex_unlock(&bs->lock);
    if (r < 0)
        return r;
    if (*pnum == 0 || *pnum > len)
        *pnum = len;        /* a driver may answer for more than asked */
    if (r & (BLK_STATUS_DATA | BLK_STATUS_ZERO))
        r |= BLK_STATUS_ALLOCATED;
    else if (!bs->backing) {
        r |= BLK_STATUS_ZERO;
    } else {
        int64_t blen = blk_getlength(bs->backing);
        if (blen >= 0 && off >= (uint64_t)blen)
            r |= BLK_STATUS_ZERO;
    }
    /* Ask the protocol whether the host range is a hole. */
    if ((r & BLK_STATUS_RECURSE) && (r & BLK_STATUS_DATA) && !(r & BLK_STATUS_ZERO) &&
        (r & BLK_STATUS_OFFSET_VALID) &&
        f && f != bs && f->drv->kind == BLK_KIND_PROTOCOL && f->drv->block_status) {
        uint64_t n2 = 0, m2;
        struct bds *f2;
        int r2 = blk_block_status(f, m, *pnum, &n2, &m2, &f2);
        if (r2 >= 0 && n2 > 0) {
            if ((r2 & BLK_STATUS_ZERO) && !(r2 & BLK_STATUS_DATA))
                r |= BLK_STATUS_ZERO;
            *pnum = n2;
        } else if (r2 >= 0 && (r2 & BLK_STATUS_EOF)) {
            r |= BLK_STATUS_ZERO;       /* beyond the end of the host file */
        }
    }
    if (map)
        *map = m;
    if (file)
        *file = f;
    return r & ~BLK_STATUS_RECURSE;
}

int blk_block_status_above(struct bds *bs, struct bds *base, uint64_t off, uint64_t len,
                           uint64_t *pnum, uint64_t *map, struct bds **file, int *depth)
{
    int d = 0;
    int64_t top = blk_getlength(bs);

    if (top < 0)
        return (int)top;
    if (off >= (uint64_t)top) {
        *pnum = 0;
        return BLK_STATUS_EOF;
    }
    len = min_u64(len, (uint64_t)top - off);
    for (struct bds *cur = bs; cur && cur != base; cur = cur->backing, d++) {
        int64_t size = blk_getlength(cur);
        uint64_t n;
        int r;

        if (size < 0)
            return (int)size;
        if (off >= (uint64_t)size) {
            /* A shorter backing file: the rest reads as zeros. */
            *pnum = len;
            if (depth)
                *depth = d;
            return BLK_STATUS_ZERO;
        }
        r = blk_block_status(cur, off, len, &n, map, file);
        if (r < 0)
            return r;
        if ((r & BLK_STATUS_ALLOCATED) || !cur->backing || cur->backing == base) {
            *pnum = n;
            if (depth)
                *depth = d;
            return r;
        }
        len = n;
    }
    *pnum = len;
    if (depth)
        *depth = d;
    return BLK_STATUS_ZERO;
}

int blk_is_allocated_above(struct bds *bs, struct bds *base, uint64_t off, uint64_t len,
                           uint64_t *pnum)
{
    int r = blk_block_status_above(bs, base, off, len, pnum, NULL, NULL, NULL);
    if (r < 0)
        return r;
    return (r & BLK_STATUS_ALLOCATED) ? 1 : 0;
}
