/* Image creation entry points and the small option helpers drivers share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "block/driver.h"

int blk_create(const char *fmt, const char *filename, struct kvopts *opts, struct err *err)
{
    const struct blk_driver *drv = blk_find_format(fmt);

    if (!drv)
        return err_set(err, EINVAL, "Unknown file format '%s'", fmt);
    if (!drv->create)
        return err_set(err, ENOTSUP, "Format driver '%s' does not support image creation", fmt);
    const struct blk_driver *proto = blk_find_protocol_for(filename);
    if (!proto->create)
        return err_set(err, ENOTSUP, "Protocol driver '%s' does not support image creation",
                       proto->name);
    blk_created_note(filename);
    if (drv->kind == BLK_KIND_PROTOCOL)
        return drv->create(filename, opts, err);
    return drv->create(filename, opts, err);
}

int blk_create_file(const char *filename, struct kvopts *opts, struct err *err)
{
    const struct blk_driver *proto = blk_find_protocol_for(filename);
    struct kvopts po;
    int r;

    if (!proto->create)
        return err_set(err, ENOTSUP, "Protocol driver '%s' does not support image creation",
                       proto->name);
    kvopts_init(&po);
    kvopts_set(&po, "size", "0");
    static const char *const passthrough[] = { "nocow", "extent_size_hint" };
    for (size_t i = 0; opts && i < sizeof(passthrough) / sizeof(passthrough[0]); i++) {
        const char *v = kvopts_get(opts, passthrough[i]);
        if (v)
            kvopts_set(&po, passthrough[i], v);
    }
    blk_created_note(filename);
    r = proto->create(filename, &po, err);
    kvopts_release(&po);
    return r;
}

static const char *const prealloc_names[] = {
    [BLK_PREALLOC_OFF] = "off",
    [BLK_PREALLOC_METADATA] = "metadata",
    [BLK_PREALLOC_FALLOC] = "falloc",
    [BLK_PREALLOC_FULL] = "full",
};

const char *blk_prealloc_name(enum blk_prealloc p)
{
    return prealloc_names[p];
}

int blk_parse_prealloc(const char *s, unsigned allowed, enum blk_prealloc *out, struct err *err)
{
    for (unsigned i = 0; i < sizeof(prealloc_names) / sizeof(prealloc_names[0]); i++) {
        if (!strcmp(s, prealloc_names[i])) {
            if (!(allowed & (1u << i)))
                return err_set(err, EINVAL, "Unsupported preallocation mode: %s", s);
            *out = (enum blk_prealloc)i;
            return 0;
        }
    }
    return err_set(err, EINVAL, "invalid parameter value: %s", s);
}

void blk_check_log(struct blk_check_result *res, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (!res->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    res->log(res->log_opaque, line);
}
