/* Opening images: filename -> protocol node -> probe -> format node ->
 * backing chain.
 *
 * Invariants: a node's drv->close runs exactly when drv->open succeeded;
 * backing chains are bounded in depth and refused when a file reappears
 * (same device and inode) further down the chain. */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"
#include "block/internal.h"
#include "block/registry.h"
#include "util/qjson.h"
#include "util/strbuf.h"
#include "util/xalloc.h"

#define PROBE_BYTES 2048
#define MAX_CHAIN_DEPTH 512

struct chain_link {
    dev_t dev;
    ino_t ino;
    const struct chain_link *up;
};

struct bds *bds_new(const struct blk_driver *drv, const char *filename, int flags)
{
    struct bds *bs = xcalloc(1, sizeof(*bs));
    bs->drv = drv;
    bs->opaque = xcalloc(1, drv->instance_size ? drv->instance_size : 1);
    bs->filename = xstrdup(filename);
    bs->flags = flags;
    bs->read_only = !(flags & BLK_O_RDWR);
    bs->request_alignment = 1;
    pthread_mutex_init(&bs->lock, NULL);
    return bs;
}

void bds_free(struct bds *bs)
{
    if (!bs)
        return;
    pthread_mutex_destroy(&bs->lock);
    free(bs->opaque);
    free(bs->filename);
    free(bs->backing_file);
    free(bs->backing_format);
    free(bs->full_backing_filename);
    free(bs);
}

void blk_close(struct bds *bs)
{
    while (bs) {
        struct bds *backing = bs->backing;
        if (bs->drv->close)
            bs->drv->close(bs);
        if (bs->file && bs->file != bs)
            blk_close(bs->file);
        bds_free(bs);
        bs = backing;
    }
}

/* Open a protocol node with driver drv (NULL: the one that claims the
 * filename) and its options (--image-opts/json: keys, may be NULL). */
static struct bds *open_protocol_node(const struct blk_driver *drv, const char *filename,
                                      struct kvopts *opts, int flags, struct err *err)
{
    struct bds *bs;
    int r;

    if (!drv)
        drv = blk_find_protocol_for(filename);
    bs = bds_new(drv, filename, flags);
    r = drv->open(bs, opts, flags, err);
    if (r < 0) {
        bds_free(bs);
        return NULL;
    }
    return bs;
}

struct bds *blk_open_protocol(const char *filename, int flags, struct err *err)
{
    return open_protocol_node(NULL, filename, NULL, flags, err);
}

/* The protocol child's driver and options: a protocol named as the format
 * (driver=nbd) takes all options; "file.driver" names the child's driver
 * and its "file.*" options move, unprefixed, into popts. */
static int split_protocol_opts(const struct blk_driver *drv, struct kvopts *opts,
                               const struct blk_driver **pdrv, struct kvopts **po,
                               struct kvopts *popts, struct err *err)
{
    const char *name;

    *pdrv = NULL;
    *po = NULL;
    if (drv && drv->kind == BLK_KIND_PROTOCOL) {
        *pdrv = drv;
        *po = opts;
        return 0;
    }
    if (!opts || !(name = kvopts_get(opts, "file.driver")))
        return 0;
    *pdrv = blk_find_format(name);
    if (!*pdrv || (*pdrv)->kind != BLK_KIND_PROTOCOL)
        return err_set(err, EINVAL, "Unknown driver '%s'", name);
    for (size_t i = 0; i < opts->n;) {
        const char *k = opts->v[i].key;
        if (strncmp(k, "file.", 5)) {
            i++;
            continue;
        }
        char *key = xstrdup(k);     /* kvopts_del frees the stored one */
        if (strcmp(key, "file.driver"))
            kvopts_set_json(popts, key + 5, opts->v[i].val, opts->v[i].json_type);
        kvopts_del(opts, key);
        free(key);
    }
    *po = popts;
    return 0;
}

char *blk_resolve_backing(const char *image, const char *backing)
{
    if (backing[0] == '/' || strstr(backing, "://") || !strncmp(backing, "json:", 5) ||
        !strchr(image, '/'))
        return xstrdup(backing);
    const char *slash = strrchr(image, '/');
    return xasprintf("%.*s/%s", (int)(slash - image), image, backing);
}

/* The device/inode identity of the bottom-most node of bs. */
static void node_identity(const struct bds *bs, dev_t *dev, ino_t *ino)
{
    while (bs->file && bs->file != bs)
        bs = bs->file;
    *dev = bs->dev;
    *ino = bs->ino;
}

/* Options that change what a format node reads (qemu's strong_runtime_opts):
 * given explicitly, they make the node's name a json:{...} filename. */
static bool is_strong_opt(const struct blk_driver *drv, const char *key)
{
    static const struct { const char *drv, *key; } strong[] = {
        { "luks", "key-secret" },
        { "qcow2", "encrypt.key-secret" },
        { "qcow", "encrypt.key-secret" },
        { "raw", "offset" },
        { "raw", "size" },
    };
    for (size_t i = 0; i < sizeof(strong) / sizeof(strong[0]); i++)
        if (!strcmp(drv->name, strong[i].drv) && !strcmp(key, strong[i].key))
            return true;
    return false;
}

/* A format node over a protocol known only by options (json:{...}), or
 * opened with strong options, is json:{"driver": FMT, "file": {...}, ...},
 * as qemu names it. */
static char *format_node_name(const struct blk_driver *drv, const struct blk_driver *pdrv,
                              const char *child, const struct kvopts *opts)
{
    json_t *c = NULL, *o;
    struct strbuf sb;
    bool strong = false;

    for (size_t i = 0; opts && i < opts->n; i++)
        strong |= is_strong_opt(drv, opts->v[i].key);
    if (!strncmp(child, "json:{", 6))
        c = json_loads(child + 5, 0, NULL);
    else if (strong && pdrv && !strcmp(pdrv->name, "file")) {
        c = json_object();
        json_object_set_new(c, "driver", json_string("file"));
        json_object_set_new(c, "filename", json_string(child));
    }
    if (!c)
        return xstrdup(child);
    o = json_object();
    json_object_set_new(o, "driver", json_string(drv->name));
    json_object_set_new(o, "file", c);
    for (size_t i = 0; opts && i < opts->n; i++)
        if (is_strong_opt(drv, opts->v[i].key))
            json_object_set_new(o, opts->v[i].key, qjson_opt_value(&opts->v[i]));
    strbuf_init(&sb);
    strbuf_puts(&sb, "json:");
    qjson_compact(&sb, o);
    json_decref(o);
    return strbuf_detach(&sb);
}

static struct bds *open_chain(const char *filename, const char *fmt, struct kvopts *opts,
                              int flags, const struct chain_link *up, int depth,
                              struct err *err);

static int open_backing_linked(struct bds *bs, int flags, const struct chain_link *up,
                               int depth, struct err *err)
{
    struct chain_link me;
    struct err e2;

    if (!bs->backing_file || !bs->backing_file[0] || bs->backing)
        return 0;
    free(bs->full_backing_filename);
    bs->full_backing_filename = blk_resolve_backing(bs->filename, bs->backing_file);
    if (depth >= MAX_CHAIN_DEPTH)
        return err_set(err, ELOOP, "Backing chain of '%s' is deeper than %d images",
                       bs->filename, MAX_CHAIN_DEPTH);
    if (blk_safe_check_ref(bs->filename, bs->full_backing_filename, "backing file", err) < 0)
        return -EPERM;
    node_identity(bs, &me.dev, &me.ino);
    me.up = up;
    err_init(&e2);
    /* Backing files are opened read-only; commit reopens what it writes. */
    bs->backing = open_chain(bs->full_backing_filename, bs->backing_format, NULL,
                             flags & ~(BLK_O_RDWR | BLK_O_PROBE_WARN), &me, depth + 1, &e2);
    if (!bs->backing) {
        if (e2.code == ELOOP) {
            err_propagate(err, &e2);
            return -ELOOP;
        }
        err_propagate(err, &e2);
        err_prefix(err, "Could not open backing file: ");
        return -(e2.code ? e2.code : EIO);
    }
    return 0;
}

int blk_open_backing(struct bds *bs, int flags, struct err *err)
{
    return open_backing_linked(bs, flags, NULL, 0, err);
}

static struct bds *open_chain(const char *filename, const char *fmt, struct kvopts *opts,
                              int flags, const struct chain_link *up, int depth,
                              struct err *err)
{
    const struct blk_driver *drv = NULL;
    struct bds *proto, *bs;
    int r;

    if (fmt && fmt[0]) {
        drv = blk_find_format(fmt);
        if (!drv) {
            err_set(err, EINVAL, "Unknown driver '%s'", fmt);
            return NULL;
        }
    }
    const struct blk_driver *pdrv;
    struct kvopts popts, *po;
    kvopts_init(&popts);
    if (split_protocol_opts(drv, opts, &pdrv, &po, &popts, err) < 0) {
        kvopts_release(&popts);
        return NULL;
    }
    proto = open_protocol_node(pdrv, filename, po, flags, err);
    kvopts_release(&popts);
    if (!proto)
        return NULL;
    for (const struct chain_link *l = up; l; l = l->up) {
        dev_t d;
        ino_t i;
        node_identity(proto, &d, &i);
        if ((d || i) && l->dev == d && l->ino == i) {   /* 0: network node */
            err_set(err, ELOOP, "Backing file '%s' creates an infinite loop.", filename);
            blk_close(proto);
            return NULL;
        }
    }
    if (drv && drv->kind == BLK_KIND_PROTOCOL)
        return proto;

    bool probed = false;
    if (!drv) {
        uint8_t head[PROBE_BYTES];
        uint64_t len = min_u64(proto->total_size, sizeof(head));
        if (len && (r = blk_pread(proto, 0, len, head)) < 0) {
            err_set_errno(err, -r, "Could not read image for determining its format");
            blk_close(proto);
            return NULL;
        }
        drv = blk_probe_format(head, (size_t)len, filename);
        if (!drv) {
            err_set(err, EINVAL, "Could not determine image format");
            blk_close(proto);
            return NULL;
        }
        probed = true;
    }

    /* The protocol may have put its name in canonical form (nbd, http):
     * the format node is known by that name, as in qemu. */
    char *name = format_node_name(drv, proto->drv, proto->filename, opts);
    bs = bds_new(drv, name, flags);
    free(name);
    bs->file = proto;
    bs->probed = probed;
    bs->dev = proto->dev;
    bs->ino = proto->ino;
    if (drv->instance_size && drv->open) {
        r = drv->open(bs, opts, flags, err);
    } else {
        r = drv->open ? drv->open(bs, opts, flags, err) : 0;
    }
    if (r < 0) {
        if (!err_is_set(err))
            err_set_errno(err, -r, "Could not open '%s'", filename);
        blk_close(proto);
        bds_free(bs);
        return NULL;
    }
    if (!(flags & BLK_O_NO_BACKING)) {
        r = open_backing_linked(bs, flags, up, depth, err);
        if (r < 0) {
            blk_close(bs);
            return NULL;
        }
    } else if (bs->backing_file && bs->backing_file[0]) {
        bs->full_backing_filename = blk_resolve_backing(bs->filename, bs->backing_file);
    }
    return bs;
}

struct bds *blk_open(const char *filename, const char *fmt, struct kvopts *opts, int flags,
                     struct err *err)
{
    return open_chain(filename, fmt, opts, flags, NULL, 0, err);
}

/* Reopen one node (and its protocol child) with new flags, keeping its place
 * in the chain: commit needs its base writable. The driver state is rebuilt
 * from the image, so nothing cached survives the reopen. */
int blk_reopen(struct bds *bs, int flags, struct err *err)
{
    struct bds *proto;
    int r;

    if (!bs->file || bs->file == bs)
        return err_set(err, ENOTSUP, "Cannot reopen '%s'", bs->filename);
    if ((r = blk_flush(bs)) < 0)
        return err_set_errno(err, -r, "Could not flush '%s'", bs->filename);
    if (bs->drv->close)
        bs->drv->close(bs);
    blk_close(bs->file);
    bs->file = NULL;
    free(bs->backing_file);
    free(bs->backing_format);
    bs->backing_file = bs->backing_format = NULL;
    memset(bs->opaque, 0, bs->drv->instance_size ? bs->drv->instance_size : 1);
    flags = (flags & ~BLK_O_NO_BACKING) | (bs->flags & BLK_O_NO_BACKING);
    proto = blk_open_protocol(bs->filename, flags, err);
    if (!proto)
        goto dead;
    bs->file = proto;
    bs->flags = flags;
    bs->read_only = !(flags & BLK_O_RDWR);
    r = bs->drv->open ? bs->drv->open(bs, NULL, flags, err) : 0;
    if (r < 0) {
        blk_close(proto);
        bs->file = NULL;
        goto dead;
    }
    return 0;
dead:
    /* The node cannot serve I/O any more; make that safe to close. */
    bs->drv = &blk_dead_driver;
    return -EIO;
}
