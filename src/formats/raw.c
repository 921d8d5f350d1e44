/* The raw format: the guest view is a window of the protocol node's bytes.
 *
 * Implements qemu 7.2's raw format driver (block/raw-format.c) including its
 * runtime options "offset" (where the window starts in the file) and "size"
 * (a fixed window length; without it the window runs to the file's end).
 * Invariants: offset <= file length at open; with a fixed size, offset + size
 * <= file length and size is a multiple of 512, so no request inside the
 * window reaches beyond it; requests past a fixed window fail (-EINVAL for
 * reads, -ENOSPC for writes) instead of touching bytes outside it.
 * Probing falls back to raw with the lowest score; the command layer warns
 * about writes to a guessed raw image as qemu-img does. */
#include <errno.h>
#include <stdint.h>

#include "block/driver.h"

struct raw_state {
    uint64_t offset;        /* start of the window in bs->file */
    uint64_t size;          /* fixed window length (with has_size) */
    bool has_size;          /* "size" was given: the window never grows */
};

static int raw_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)head; (void)len; (void)filename;
    return 1;
}

static int raw_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct raw_state *s = bs->opaque;
    uint64_t offset = 0, size = 0, end;
    bool has_size = opts && kvopts_has(opts, "size");
    int64_t len;
    int r;

    (void)flags;
    if (opts) {
        if ((r = kvopts_get_size(opts, "offset", 0, &offset, err)) < 0)
            return r;
        if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0)
            return r;
    }
    len = blk_getlength(bs->file);
    if (len < 0)
        return err_set_errno(err, (int)-len, "Could not get image size");
    if (offset > (uint64_t)len)
        return err_set(err, EINVAL, "Offset (%llu) cannot be greater than size of the "
                       "containing file (%lld)", (unsigned long long)offset, (long long)len);
    if (has_size && (ckd_add(&end, offset, size) || end > (uint64_t)len))
        /* qemu's message has the double space */
        return err_set(err, EINVAL, "The sum of offset (%llu) and size (%llu) has to be "
                       "smaller or equal to the  actual size of the containing file (%lld)",
                       (unsigned long long)offset, (unsigned long long)size, (long long)len);
    if (has_size && size % 512)
        return err_set(err, EINVAL, "Specified size is not multiple of 512");
    s->offset = offset;
    s->has_size = has_size;
    s->size = has_size ? size : (uint64_t)len - offset;
    /* io.c's copy offload (write_passthrough) writes at the same offset of
     * bs->file, and only where the range lies below total_size: a shifted
     * window keeps total_size at 0 so that it never takes that path. */
    bs->total_size = offset ? 0 : s->size;
    bs->request_alignment = bs->file->request_alignment;
    return 0;
}

/* qemu's raw_adjust_offset: refuse what leaves a fixed window, then shift. */
static int raw_adjust(struct bds *bs, uint64_t *off, uint64_t len, bool write)
{
    struct raw_state *s = bs->opaque;

    if (s->has_size && (*off > s->size || len > s->size - *off))
        return write ? -ENOSPC : -EINVAL;
    if (ckd_add(off, *off, s->offset) || *off > INT64_MAX)
        return -EINVAL;
    return 0;
}

static int raw_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    int r = raw_adjust(bs, &off, len, false);
    return r ? r : blk_pread(bs->file, off, len, buf);
}

static int raw_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    uint64_t voff = off;
    int r = raw_adjust(bs, &off, len, true);

    if (r)
        return r;
    r = blk_pwrite(bs->file, off, len, buf, flags);
    /* A write past the end grows the file; get_length follows it. */
    if (r == 0 && off == voff && voff + len > bs->total_size)
        bs->total_size = voff + len;
    return r;
}

static int raw_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    int r = raw_adjust(bs, &off, len, true);
    return r ? r : blk_pwrite_zeroes(bs->file, off, len, flags);
}

static int raw_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    int r = raw_adjust(bs, &off, len, true);
    return r ? r : blk_discard(bs->file, off, len);
}

static int raw_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    struct raw_state *s = bs->opaque;
    uint64_t host;
    int r;

    if (ckd_add(&host, off, s->offset))
        return -EINVAL;
    r = blk_block_status(bs->file, host, len, pnum, map, file);
    if (r < 0)
        return r;
    /* qemu's BDRV_BLOCK_RAW: the answer is the child's, so a raw window
     * over another raw node maps to the bottom file with the offsets of
     * every level added up */
    if (!(r & BLK_STATUS_OFFSET_VALID) || (r & BLK_STATUS_EOF) || !*file) {
        *file = bs->file;
        *map = host;
    }
    if (r & BLK_STATUS_EOF) {
        /* Past the host file's end (a sector tail, or the file shrank): zeros. */
        *pnum = len;
        return BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID;
    }
    return r & (BLK_STATUS_DATA | BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID);
}

/* qemu's raw_getlength: follow the file, within a fixed window's bounds.
 * Computed, not stored, so that parallel requests never race on it. */
static int64_t raw_get_length(struct bds *bs)
{
    const struct raw_state *s = bs->opaque;
    int64_t len = blk_getlength(bs->file);

    if (len < 0)
        return len;
    if ((uint64_t)len < s->offset)
        return 0;
    if (s->has_size)
        return (int64_t)min_u64(s->size, (uint64_t)len - s->offset);
    return len - (int64_t)s->offset;
}

static int raw_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                        struct err *err)
{
    struct raw_state *s = bs->opaque;
    uint64_t host;
    int r;

    if (s->has_size)
        return err_set(err, ENOTSUP, "Cannot resize fixed-size raw disks");
    if (ckd_add(&host, size, s->offset) || host > INT64_MAX)
        return err_set(err, EINVAL, "Disk size too large for the chosen offset");
    r = blk_truncate(bs->file, host, exact, prealloc, err);
    if (r == 0) {
        s->size = size;
        if (!s->offset)
            bs->total_size = size;
    }
    return r;
}

static int raw_create(const char *filename, struct kvopts *opts, struct err *err)
{
    const struct blk_driver *proto = blk_find_protocol_for(filename);
    return proto->create(filename, opts, err);
}

static int raw_measure(struct kvopts *opts, struct bds *in, uint64_t size,
                       struct blk_measure *out, struct err *err)
{
    (void)opts;
    if (in) {
        int64_t len = blk_getlength(in);
        if (len < 0)
            return err_set_errno(err, (int)-len, "Unable to get image size");
        size = (uint64_t)len;
    }
    size = align_up_u64(size, 512);     /* whole sectors, as qemu */
    out->required = size;
    out->fully_allocated = size;
    return 0;
}

static bool raw_has_zero_init(struct bds *bs)
{
    return blk_has_zero_init(bs->file);
}

static const struct opt_desc raw_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver raw_driver = {
    .name = "raw",
    .kind = BLK_KIND_FORMAT,
    .write_passthrough = true,
    .instance_size = sizeof(struct raw_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .create_opts = raw_create_opts,
    .probe = raw_probe,
    .open = raw_open,
    .create = raw_create,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .discard = raw_discard,
    .block_status = raw_block_status,
    .get_length = raw_get_length,
    .truncate = raw_truncate,
    .measure = raw_measure,
    .has_zero_init = raw_has_zero_init,
};
