/* Upkeep operations: dispatch to the driver, answering -ENOTSUP with
 * qemu-img's wording where the driver has no such operation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"

int blk_get_info_unsupported(struct bds *bs, struct blk_info *bi)
{
    (void)bs;
    (void)bi;
    return -ENOTSUP;
}

int blk_get_info(struct bds *bs, struct blk_info *bi)
{
    memset(bi, 0, sizeof(*bi));
    bi->has_dirty_flag = true;
    /* A format without its own answer (raw) gives its file's, as qemu's
     * raw does; network protocols have none (-ENOTSUP: no dirty flag). */
    if (!bs->drv->get_info && bs->drv->kind == BLK_KIND_FORMAT && bs->file && bs->file != bs)
        return blk_get_info(bs->file, bi);
    if (!bs->drv->get_info)
        return 0;
    return bs->drv->get_info(bs, bi);
}

json_t *blk_specific_info(struct bds *bs, struct err *err)
{
    if (!bs->drv->specific_info)
        return NULL;
    return bs->drv->specific_info(bs, err);
}

int blk_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    if (!bs->drv->check)
        return err_set(err, ENOTSUP, "This image format does not support checks");
    return bs->drv->check(bs, res, fix, err);
}

int blk_change_backing(struct bds *bs, const char *file, const char *fmt, struct err *err)
{
    if (!bs->drv->change_backing)
        return err_set(err, ENOTSUP, "Operation not supported");
    return bs->drv->change_backing(bs, file, fmt, err);
}

int blk_make_empty(struct bds *bs, struct err *err)
{
    if (!bs->drv->make_empty)
        return err_set(err, ENOTSUP, "Operation not supported");
    return bs->drv->make_empty(bs, err);
}

/* The status callback of the amend in progress: amend runs synchronously
 * on the command's thread, one at a time. */
static struct {
    struct bds *bs;
    blk_amend_status_fn *fn;
    void *opaque;
} amend_status;

void blk_amend_status(struct bds *bs, int64_t offset, int64_t total)
{
    if (amend_status.fn && amend_status.bs == bs)
        amend_status.fn(amend_status.opaque, offset, total);
}

int blk_amend(struct bds *bs, struct kvopts *opts, bool force, blk_amend_status_fn *status,
              void *status_opaque, struct err *err)
{
    int r;

    if (!bs->drv->amend)
        return err_set(err, ENOTSUP, "Format driver '%s' does not support option amendment",
                       bs->drv->name);
    amend_status.bs = bs;
    amend_status.fn = status;
    amend_status.opaque = status_opaque;
    r = bs->drv->amend(bs, opts, force, err);
    amend_status.bs = NULL;
    amend_status.fn = NULL;
    amend_status.opaque = NULL;
    return r;
}

int blk_measure(const struct blk_driver *drv, struct kvopts *opts, struct bds *in,
                uint64_t size, struct blk_measure *out, struct err *err)
{
    memset(out, 0, sizeof(*out));
    if (!drv->measure)
        return err_set(err, ENOTSUP, "Block driver '%s' does not support size measurement",
                       drv->name);
    return drv->measure(opts, in, size, out, err);
}

int blk_snapshot_list(struct bds *bs, struct blk_snapshot **list, struct err *err)
{
    *list = NULL;
    if (!bs->drv->snapshot || !bs->drv->snapshot->list)
        return 0;
    return bs->drv->snapshot->list(bs, list, err);
}

int blk_snapshot_create(struct bds *bs, struct blk_snapshot *sn, struct err *err)
{
    if (!bs->drv->snapshot || !bs->drv->snapshot->create)
        return err_set(err, ENOTSUP, "Block driver does not support snapshots");
    return bs->drv->snapshot->create(bs, sn, err);
}

int blk_snapshot_goto(struct bds *bs, const char *id_or_name, struct err *err)
{
    if (!bs->drv->snapshot || !bs->drv->snapshot->apply)
        return err_set(err, ENOTSUP, "Block driver does not support snapshots");
    return bs->drv->snapshot->apply(bs, id_or_name, err);
}

int blk_snapshot_delete(struct bds *bs, const char *id, const char *name, struct err *err)
{
    if (!bs->drv->snapshot || !bs->drv->snapshot->remove)
        return err_set(err, ENOTSUP, "Block driver does not support snapshots");
    return bs->drv->snapshot->remove(bs, id, name, err);
}

int blk_snapshot_load_tmp(struct bds *bs, const char *id, const char *name, struct err *err)
{
    if (!bs->drv->snapshot || !bs->drv->snapshot->load_tmp)
        return err_set(err, ENOTSUP, "Block format '%s' used by device '' does not support "
                       "temporarily loading internal snapshots", bs->drv->name);
    return bs->drv->snapshot->load_tmp(bs, id, name, err);
}

bool blk_has_zero_init(struct bds *bs)
{
    if (bs->drv->has_zero_init)
        return bs->drv->has_zero_init(bs);
    return bs->drv->kind == BLK_KIND_PROTOCOL;
}

bool blk_supports_bitmaps(struct bds *bs)
{
    if (!bs->drv->bitmap)
        return false;
    return !bs->drv->bitmap->supported || bs->drv->bitmap->supported(bs);
}

static int no_bitmaps(struct bds *bs, struct err *err)
{
    /* qemu names the node by its generated name: "#block" + counter (1 for
     * the image) + two random digits. */
    (void)bs;
    return err_set(err, ENOTSUP, "Can't store persistent bitmaps to #block1%02d: Operation not supported",
                   rand() % 99);
}

int blk_bitmap_list(struct bds *bs, struct blk_bitmap_info **list, struct err *err)
{
    *list = NULL;
    if (!bs->drv->bitmap || !bs->drv->bitmap->list)
        return 0;
    return bs->drv->bitmap->list(bs, list, err);
}

int blk_bitmap_add(struct bds *bs, const char *name, uint32_t granularity, bool disabled,
                   struct err *err)
{
    if (!name || !*name)
        return err_set(err, EINVAL, "Bitmap name cannot be empty");
    if (!bs->drv->bitmap || !bs->drv->bitmap->add)
        return no_bitmaps(bs, err);
    return bs->drv->bitmap->add(bs, name, granularity, disabled, err);
}

int blk_bitmap_remove(struct bds *bs, const char *name, struct err *err)
{
    if (!bs->drv->bitmap || !bs->drv->bitmap->remove)
        return err_set(err, ENOENT, "Dirty bitmap '%s' not found", name);
    return bs->drv->bitmap->remove(bs, name, err);
}

int blk_bitmap_clear(struct bds *bs, const char *name, struct err *err)
{
    if (!bs->drv->bitmap || !bs->drv->bitmap->clear)
        return err_set(err, ENOENT, "Dirty bitmap '%s' not found", name);
    return bs->drv->bitmap->clear(bs, name, err);
}

int blk_bitmap_enable(struct bds *bs, const char *name, bool enable, struct err *err)
{
    if (!bs->drv->bitmap || !bs->drv->bitmap->enable)
        return err_set(err, ENOENT, "Dirty bitmap '%s' not found", name);
    return bs->drv->bitmap->enable(bs, name, enable, err);
}

int blk_bitmap_merge(struct bds *bs, const char *dst, struct bds *src_bs, const char *src,
                     struct err *err)
{
    if (!bs->drv->bitmap || !bs->drv->bitmap->merge)
        return err_set(err, ENOENT, "Dirty bitmap '%s' not found", dst);
    return bs->drv->bitmap->merge(bs, dst, src_bs, src, err);
}
