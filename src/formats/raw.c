/* The raw format: the guest view is the protocol node's bytes, one to one.
 * Probing falls back to raw with the lowest score; the command layer warns
 * about writes to a guessed raw image as qemu-img does. */
#include <errno.h>

#include "block/driver.h"

static int raw_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)head; (void)len; (void)filename;
    return 1;
}

static int raw_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    (void)opts; (void)flags; (void)err;
    int64_t len = blk_getlength(bs->file);
    if (len < 0)
        return (int)len;
    bs->total_size = (uint64_t)len;
    bs->request_alignment = bs->file->request_alignment;
    return 0;
}

static int raw_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    return blk_pread(bs->file, off, len, buf);
}

static int raw_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    int r = blk_pwrite(bs->file, off, len, buf, flags);
    if (r == 0 && off + len > bs->total_size)
        bs->total_size = off + len;
    return r;
}

static int raw_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    return blk_pwrite_zeroes(bs->file, off, len, flags);
}

static int raw_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    return blk_discard(bs->file, off, len);
}

static int raw_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    int r = blk_block_status(bs->file, off, len, pnum, map, file);
    if (r < 0)
        return r;
    if (r & BLK_STATUS_EOF) {
        /* Past the host file's end (file shrank under us): zeros. */
        *pnum = len;
        *map = off;
        *file = bs->file;
        return BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID;
    }
    *file = bs->file;
    return r & (BLK_STATUS_DATA | BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID);
}

static int64_t raw_get_length(struct bds *bs)
{
    return blk_getlength(bs->file);
}

static int raw_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                        struct err *err)
{
    int r = blk_truncate(bs->file, size, exact, prealloc, err);
    if (r == 0)
        bs->total_size = size;
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
    (void)opts; (void)err;
    if (in) {
        int64_t len = blk_getlength(in);
        if (len < 0)
            return (int)len;
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
    .instance_size = 0,
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
