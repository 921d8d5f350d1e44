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

static int check_common_opts(const struct kvopts *opts, struct err *err);
static int check_leftover_opts(const struct bds *bs, const struct kvopts *opts,
                               struct err *err);

/* What a protocol node opened with BLK_O_LATE_SHARE goes on letting other
 * processes do, once the format on top (fmt; NULL: none) is known, as
 * qemu's child permissions decide it: qemu-img shares everything except
 * for convert's sources (BLK_O_NO_SHARE); a format with metadata refuses
 * writes and resizes of its file, raw with an offset or a size resizes,
 * plain raw passes everything through (qemu-img info of the raw disk of a
 * running VM works). Only the file protocol locks. */
static int late_unshare(struct bds *proto, const struct blk_driver *fmt,
                        const struct kvopts *opts, int flags, struct err *err)
{
    bool write = flags & BLK_O_NO_SHARE, resize = write;

    if (!(proto->flags & BLK_O_LATE_SHARE) || !proto->drv->unshare)
        return 0;
    if (fmt && strcmp(fmt->name, "raw"))
        write = resize = true;
    else if (fmt && opts && (kvopts_has(opts, "offset") || kvopts_has(opts, "size")))
        resize = true;
    return proto->drv->unshare(proto, write, resize, err);
}

/* A node's own cache.direct and cache.no-flush options (--image-opts,
 * json:) set its open flags, and through them its children's, as qemu's
 * children inherit them (a child's own file.cache.* still wins: the child
 * reads its options last). A value that is not a boolean fails here, before
 * any child is opened, as in qemu (the child inherits the bad value and
 * rejects it before its driver looks at anything else). */
static int own_cache_flags(const struct kvopts *opts, int *flags, struct err *err)
{
    static const struct { const char *key; int flag; } keys[] = {
        { "cache.direct", BLK_O_NOCACHE }, { "cache.no-flush", BLK_O_NO_FLUSH },
    };
    const char *v;
    bool b;

    for (size_t i = 0; opts && i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!(v = kvopts_get(opts, keys[i].key)))
            continue;
        if (kvopts_parse_bool(keys[i].key, v, &b, err) < 0)
            return -EINVAL;
        *flags = b ? *flags | keys[i].flag : *flags & ~keys[i].flag;
    }
    return 0;
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
    if (check_common_opts(opts, err) < 0)
        return NULL;
    bs = bds_new(drv, filename, flags);
    r = drv->open(bs, opts, flags, err);
    if (r < 0) {
        bds_free(bs);
        return NULL;
    }
    if (check_leftover_opts(bs, opts, err) < 0) {
        blk_close(bs);
        return NULL;
    }
    return bs;
}

struct bds *blk_open_protocol(const char *filename, int flags, struct err *err)
{
    return open_protocol_node(NULL, filename, NULL, flags, err);
}

/* The child's driver and options: a protocol named as the format
 * (driver=nbd) takes all options; otherwise every "file.*" option moves,
 * unprefixed, into popts and "file.driver" names the child's driver, which
 * may itself be a format (driver=qcow2,file.driver=raw,file.offset=N). */
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
    if (!opts)
        return 0;
    if ((name = kvopts_get(opts, "file.driver"))) {
        *pdrv = blk_find_format(name);
        if (!*pdrv)
            return err_set(err, EINVAL, "Unknown driver '%s'", name);
    }
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

/* --- runtime options (qemu's bdrv_runtime_opts and each driver's
 * runtime_opts list, plus the sub-dictionaries its open takes) ---
 * A key ending in '.' accepts every key under that prefix. */
static const char *const common_runtime_opts[] = {
    "node-name", "driver", "cache.direct", "cache.no-flush", "read-only",
    "auto-read-only", "detect-zeroes", "discard", "force-share", NULL,
};
static const char *const common_bool_opts[] = {
    "cache.direct", "cache.no-flush", "read-only", "auto-read-only", "force-share", NULL,
};

static const struct {
    const char *drv;
    const char *keys[24];
} driver_runtime_opts[] = {
    { "file", { "filename", "aio", "aio-max-batch", "locking", "pr-manager", "drop-cache",
                "x-check-cache-dropped", NULL } },
    { "raw", { "offset", "size", NULL } },
    { "qcow2", { "data-file", "data-file.", "lazy-refcounts", "pass-discard-request",
                 "pass-discard-snapshot", "pass-discard-other", "overlap-check",
                 "overlap-check.", "cache-size", "l2-cache-size", "l2-cache-entry-size",
                 "refcount-cache-size", "cache-clean-interval", "encrypt.", NULL } },
    { "qcow", { "encrypt.", NULL } },
    { "luks", { "key-secret", NULL } },
    { "vpc", { "force_size_calc", NULL } },
    { "parallels", { "prealloc-size", "prealloc-mode", NULL } },
    { "vmdk", { "extents.", NULL } },
    { "nbd", { "server.", "host", "port", "path", "export", "tls-creds", "tls-hostname",
               "x-dirty-bitmap", "reconnect-delay", "open-timeout", NULL } },
    { "http", { "url", "readahead", "sslverify", "timeout", "cookie", "cookie-secret",
                "username", "password-secret", "proxy-username", "proxy-password-secret",
                NULL } },
    { "https", { "url", "readahead", "sslverify", "timeout", "cookie", "cookie-secret",
                 "username", "password-secret", "proxy-username", "proxy-password-secret",
                 NULL } },
};

static bool key_in(const char *const *keys, const char *key)
{
    for (; *keys; keys++) {
        size_t n = strlen(*keys);
        if ((*keys)[n - 1] == '.' ? !strncmp(key, *keys, n) : !strcmp(key, *keys))
            return true;
    }
    return false;
}

static bool runtime_opt_known(const struct bds *bs, const char *key)
{
    if (key_in(common_runtime_opts, key))
        return true;
    for (size_t i = 0; i < sizeof(driver_runtime_opts) / sizeof(driver_runtime_opts[0]); i++)
        if (!strcmp(driver_runtime_opts[i].drv, bs->drv->name))
            return key_in(driver_runtime_opts[i].keys, key);
    return false;
}

/* The typed common options, checked before the driver opens (as
 * bdrv_open_common parses them). */
static int check_common_opts(const struct kvopts *opts, struct err *err)
{
    bool b;

    for (size_t i = 0; opts && i < opts->n; i++)
        if (key_in(common_bool_opts, opts->v[i].key) &&
            kvopts_parse_bool(opts->v[i].key, opts->v[i].val, &b, err) < 0)
            return -EINVAL;
    return 0;
}

/* An option the opened node did not take fails the open, naming the first
 * leftover in qemu's QDict order (hash buckets, newest first in one). */
static int check_leftover_opts(const struct bds *bs, const struct kvopts *opts,
                               struct err *err)
{
    const struct kvopt *first = NULL;
    unsigned first_bucket = 0;

    if (!opts || !strcmp(bs->drv->name, "mem"))
        return 0;
    for (size_t i = 0; i < opts->n; i++) {
        const struct kvopt *kv = &opts->v[i];
        if (runtime_opt_known(bs, kv->key))
            continue;
        unsigned bucket = qjson_qdict_bucket(kv->key);
        if (!first || bucket <= first_bucket) {
            first = kv;
            first_bucket = bucket;
        }
    }
    if (!first)
        return 0;
    if (bs->drv->kind == BLK_KIND_PROTOCOL)
        return err_set(err, EINVAL, "Block protocol '%s' doesn't support the option '%s'",
                       bs->drv->name, first->key);
    return err_set(err, EINVAL, "Block format '%s' does not support the option '%s'",
                   bs->drv->name, first->key);
}

char *blk_resolve_backing(const char *image, const char *backing)
{
    /* qemu's bdrv_get_full_backing_filename_from_filename: a name with a
     * protocol prefix ("nbd:host:port", "json:{...}") is used as it is */
    if (backing[0] == '/' || blk_path_has_protocol(backing) || !strchr(image, '/'))
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
                               int depth, struct kvopts *bopts, struct err *err)
{
    struct chain_link me;
    struct err e2;
    const char *bfmt = bs->backing_format;
    char *bdrv = NULL;

    if (bopts && bopts->n && (!bs->backing_file || !bs->backing_file[0]) && !bs->backing)
        return err_set(err, EINVAL, "Could not open backing file: %s",
                       kvopts_has(bopts, "driver") ?
                       "A block device must be specified for \"file\"" :
                       "Must specify either driver or file");
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
    if (bopts && (bdrv = kvopts_take(bopts, "driver")))
        bfmt = bdrv;
    bs->backing = open_chain(bs->full_backing_filename, bfmt, bopts && bopts->n ? bopts : NULL,
                             flags & ~(BLK_O_RDWR | BLK_O_PROBE_WARN), &me, depth + 1, &e2);
    free(bdrv);
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
    return open_backing_linked(bs, flags, NULL, 0, NULL, err);
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
    if ((!drv || drv->kind != BLK_KIND_PROTOCOL) && own_cache_flags(opts, &flags, err) < 0)
        return NULL;
    kvopts_init(&popts);
    if (split_protocol_opts(drv, opts, &pdrv, &po, &popts, err) < 0) {
        kvopts_release(&popts);
        return NULL;
    }
    if (pdrv && pdrv->kind == BLK_KIND_FORMAT) {
        /* a format as the child: its own node, with no backing chain */
        proto = open_chain(filename, pdrv->name, &popts, flags | BLK_O_NO_BACKING, up,
                           depth + 1, err);
    } else {
        proto = open_protocol_node(pdrv, filename, po, flags | BLK_O_LATE_SHARE, err);
    }
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
    if (drv && drv->kind == BLK_KIND_PROTOCOL) {
        if (late_unshare(proto, NULL, opts, flags, err) < 0) {
            blk_close(proto);
            return NULL;
        }
        return proto;
    }

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
    if (check_common_opts(opts, err) < 0 || late_unshare(proto, drv, opts, flags, err) < 0) {
        blk_close(proto);
        return NULL;
    }
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
    /* "backing": a node reference (qimg has no named nodes), JSON null (no
     * backing file) or backing.* options for the backing node, as
     * bdrv_open_backing_file takes them; with no backing opened they are
     * leftovers. */
    struct kvopts bopts;
    kvopts_init(&bopts);
    for (size_t i = 0; opts && i < opts->n; i++) {
        if (!strcmp(opts->v[i].key, "backing") && opts->v[i].json_type == 'n') {
            flags |= BLK_O_NO_BACKING;
            kvopts_del(opts, "backing");
            break;
        }
    }
    if (!(flags & BLK_O_NO_BACKING) && opts) {
        bool any = false, sub = false;
        for (size_t i = 0; i < opts->n; i++) {
            any |= !strcmp(opts->v[i].key, "backing");
            sub |= !strncmp(opts->v[i].key, "backing.", 8);
        }
        if (any && sub && drv->supports_backing) {
            err_set(err, EINVAL, "Could not open backing file: Cannot reference an existing "
                    "block device with additional options or a new filename");
            blk_close(bs);
            return NULL;
        }
        any |= sub;
        if (any && !drv->supports_backing) {
            err_set(err, EINVAL, "Driver doesn't support backing files");
            blk_close(bs);
            return NULL;
        }
        for (size_t i = 0; any && i < opts->n;) {
            const struct kvopt *kv = &opts->v[i];
            if (!strcmp(kv->key, "backing")) {
                err_set(err, ENOENT, "Could not open backing file: Cannot find device='%s' "
                        "nor node-name='%s'", kv->val, kv->val);
                kvopts_release(&bopts);
                blk_close(bs);
                return NULL;
            }
            if (strncmp(kv->key, "backing.", 8)) {
                i++;
                continue;
            }
            char *key = xstrdup(kv->key);
            kvopts_set_json(&bopts, key + 8, kv->val, kv->json_type);
            kvopts_del(opts, key);
            free(key);
        }
    }
    if (check_leftover_opts(bs, opts, err) < 0) {
        kvopts_release(&bopts);
        blk_close(bs);
        return NULL;
    }
    if (!(flags & BLK_O_NO_BACKING)) {
        r = open_backing_linked(bs, flags, up, depth, &bopts, err);
        if (r < 0) {
            kvopts_release(&bopts);
            blk_close(bs);
            return NULL;
        }
    } else if (bs->backing_file && bs->backing_file[0]) {
        bs->full_backing_filename = blk_resolve_backing(bs->filename, bs->backing_file);
    }
    kvopts_release(&bopts);
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
