/* qcow2 image creation and size measurement (qcow2.txt "Header",
 * "Host cluster management").
 *
 * Creation follows qemu's sequence so the result is laid out identically:
 * a header cluster, the refcount table in cluster 1 and its first refcount
 * block in cluster 2; the image is then opened through this driver, the full
 * header (extensions, feature table) is written, and resizing to the
 * requested size allocates the L1 table in the first free cluster (and
 * preallocates when asked). The backing file is recorded last. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/qcow2/qcow2.h"

#define COMMON_OPTS \
    { "size", OPT_SIZE, "Virtual disk size", NULL }, \
    { "compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL }, \
    { "backing_file", OPT_STRING, "File name of a base image", NULL }, \
    { "backing_fmt", OPT_STRING, "Image format of the base image", NULL }, \
    { "data_file", OPT_STRING, "File name of an external data file", NULL }, \
    { "data_file_raw", OPT_BOOL, "The external data file must stay valid as a raw image", NULL }, \
    { "lazy_refcounts", OPT_BOOL, "Postpone refcount updates", "off" }, \
    { "refcount_bits", OPT_NUMBER, "Width of a reference count entry in bits", "16" }

const struct opt_desc qcow2_create_opts[] = {
    { "encryption", OPT_BOOL, "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", NULL },
    { "encrypt.format", OPT_STRING, "Encrypt the image, format choices: 'aes', 'luks'", NULL },
    { "encrypt.key-secret", OPT_STRING, "ID of secret providing qcow AES key or LUKS passphrase", NULL },
    { "encrypt.cipher-alg", OPT_STRING, "Name of encryption cipher algorithm", NULL },
    { "encrypt.cipher-mode", OPT_STRING, "Name of encryption cipher mode", NULL },
    { "encrypt.ivgen-alg", OPT_STRING, "Name of IV generator algorithm", NULL },
    { "encrypt.ivgen-hash-alg", OPT_STRING, "Name of IV generator hash algorithm", NULL },
    { "encrypt.hash-alg", OPT_STRING, "Name of encryption hash algorithm", NULL },
    { "encrypt.iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL },
    { "cluster_size", OPT_SIZE, "qcow2 cluster size", "65536" },
    { "extended_l2", OPT_BOOL, "Extended L2 tables", "off" },
    { "preallocation", OPT_STRING, "Preallocation mode (allowed values: off, metadata, falloc, full)", NULL },
    { "compression_type", OPT_STRING, "Compression method used for image cluster compression", "zlib" },
    COMMON_OPTS,
    { NULL, 0, NULL, NULL },
};

const struct opt_desc qcow2_amend_opts[] = {
    { "encrypt.state", OPT_STRING, "Select new state of affected keyslots (active/inactive)", NULL },
    { "encrypt.keyslot", OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL },
    { "encrypt.old-secret", OPT_STRING, "Select all keyslots that match this password", NULL },
    { "encrypt.new-secret", OPT_STRING, "New secret to set in the matching keyslots. Empty string to erase", NULL },
    { "encrypt.iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL },
    COMMON_OPTS,
    { NULL, 0, NULL, NULL },
};

struct create_params {
    uint64_t size, cluster_size, refcount_bits;
    int version;
    bool extl2, lazy, data_file_raw;
    enum blk_prealloc prealloc;
    int compression;
    const char *backing_file, *backing_fmt, *data_file;
    struct qcow2_crypt_create crypt;
};

static int parse_bool(const struct kvopts *o, const char *key, const char *qapi, bool *out,
                      struct err *err)
{
    const char *v = kvopts_get(o, key);
    *out = false;
    if (!v)
        return 0;
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true"))
        *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false"))
        *out = false;
    else
        return err_set(err, EINVAL, "Parameter '%s' expects 'on' or 'off'", qapi);
    return 0;
}

/* qcow2 takes preallocation through QAPI, hence the visitor's wording. */
static int parse_prealloc(const struct kvopts *o, enum blk_prealloc *out, struct err *err)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    const char *v = kvopts_get(o, "preallocation");

    *out = BLK_PREALLOC_OFF;
    if (!v)
        return 0;
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcmp(v, names[i])) {
            *out = (enum blk_prealloc)i;
            return 0;
        }
    }
    return err_set(err, EINVAL, "Parameter 'preallocation' does not accept value '%s'", v);
}

static bool valid_cluster_size(uint64_t cs, bool extl2, struct err *err)
{
    if (cs < 512 || cs > (2u << 20) || !is_pow2_u64(cs)) {
        err_set(err, EINVAL, "Cluster size must be a power of two between 512 and 2048k");
        return false;
    }
    if (extl2 && cs < 512u * QCOW2_SUBCLUSTERS) {
        err_set(err, EINVAL, "Extended L2 entries are only supported with cluster sizes of at least %u bytes",
                512u * QCOW2_SUBCLUSTERS);
        return false;
    }
    return true;
}

/* Options in the order qemu's QAPI visitor and qcow2_co_create check them. */
static int parse_params(struct kvopts *o, struct create_params *p, struct err *err)
{
    const char *v;
    int r;

    memset(p, 0, sizeof(*p));
    p->data_file = kvopts_get(o, "data_file");
    if ((r = parse_bool(o, "data_file_raw", "data-file-raw", &p->data_file_raw, err)) < 0)
        return r;
    if ((r = parse_bool(o, "extended_l2", "extended-l2", &p->extl2, err)) < 0)
        return r;
    if ((r = kvopts_get_size(o, "size", 0, &p->size, err)) < 0)
        return r;
    v = kvopts_get(o, "compat");
    if (!v || !strcmp(v, "1.1") || !strcmp(v, "v3"))
        p->version = 3;
    else if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
        p->version = 2;
    else
        return err_set(err, EINVAL, "Parameter 'version' does not accept value '%s'", v);
    p->backing_file = kvopts_get(o, "backing_file");
    p->backing_fmt = kvopts_get(o, "backing_fmt");
    if ((r = qcow2_crypt_create_parse(o, &p->crypt, err)) < 0)
        return r;
    if ((r = kvopts_get_size(o, "cluster_size", QCOW2_DEFAULT_CLUSTER_SIZE, &p->cluster_size, err)) < 0)
        return r;
    if ((r = parse_prealloc(o, &p->prealloc, err)) < 0)
        return r;
    if ((r = parse_bool(o, "lazy_refcounts", "lazy-refcounts", &p->lazy, err)) < 0)
        return r;
    if ((r = kvopts_get_number(o, "refcount_bits", 16, &p->refcount_bits, err)) < 0)
        return r;
    v = kvopts_get(o, "compression_type");
    if (!v || !strcmp(v, "zlib"))
        p->compression = QCOW2_COMPRESS_ZLIB;
    else if (!strcmp(v, "zstd"))
        p->compression = QCOW2_COMPRESS_ZSTD;
    else
        return err_set(err, EINVAL, "Parameter 'compression-type' does not accept value '%s'", v);

    /* qcow2_co_create's own checks. */
    if (p->size % 512)
        return err_set(err, EINVAL, "Image size must be a multiple of 512 bytes");
    if (p->extl2 && p->version < 3)
        return err_set(err, EINVAL, "Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
    if (!valid_cluster_size(p->cluster_size, p->extl2, err))
        return -EINVAL;
    if (p->backing_file && p->prealloc != BLK_PREALLOC_OFF && !p->extl2)
        return err_set(err, EINVAL, "Backing file and preallocation can only be used at the same time if extended_l2 is on");
    if (p->backing_fmt && !p->backing_file)
        return err_set(err, EINVAL, "Backing format cannot be used without backing file");
    if (p->version < 3 && p->lazy)
        return err_set(err, EINVAL, "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)");
    if (p->refcount_bits > 64 || !is_pow2_u64(p->refcount_bits))
        return err_set(err, EINVAL, "Refcount width must be a power of two and may not exceed 64 bits");
    if (p->version < 3 && p->refcount_bits != 16)
        return err_set(err, EINVAL, "Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)");
    if (p->data_file_raw && !p->data_file)
        return err_set(err, EINVAL, "data-file-raw requires data-file");
    if (p->data_file_raw && p->backing_file)
        return err_set(err, EINVAL, "Backing file and data-file-raw cannot be used at the same time");
    if (p->data_file_raw && p->prealloc == BLK_PREALLOC_OFF)
        p->prealloc = BLK_PREALLOC_METADATA;
    if (p->data_file && p->version < 3)
        return err_set(err, EINVAL, "External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
    if (p->compression != QCOW2_COMPRESS_ZLIB && p->version < 3)
        return err_set(err, EINVAL, "Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)");
    return 0;
}

static unsigned ctz_u64(uint64_t v)
{
    return (unsigned)__builtin_ctzll(v);
}

int qcow2_create(const char *filename, struct kvopts *opts, struct err *err)
{
    struct create_params p;
    struct bds *proto = NULL, *bs = NULL;
    uint8_t *buf = NULL;
    bool crypt_failed = false;
    int r;

    r = blk_create_file(filename, opts, err);
    if (r < 0)
        return r;
    if (opts->help)
        return 0;
    r = parse_params(opts, &p, err);
    if (r < 0)
        return r;
    if (p.data_file) {
        r = blk_create_file(p.data_file, opts, err);
        if (r < 0)
            return r;
    }

    /* Minimal image: header, refcount table, first refcount block. */
    proto = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!proto)
        return -EIO;
    buf = calloc(3, p.cluster_size);
    if (!buf) {
        r = err_set(err, ENOMEM, "Could not write qcow2 header: Cannot allocate memory");
        goto out;
    }
    {
        unsigned order = ctz_u64(p.refcount_bits);
        uint64_t cs = p.cluster_size;
        put_be32(buf + QH_MAGIC, QCOW2_MAGIC);
        put_be32(buf + QH_VERSION, (uint32_t)p.version);
        put_be32(buf + QH_CLUSTER_BITS, ctz_u64(cs));
        put_be64(buf + QH_REFTABLE_OFFSET, cs);
        put_be32(buf + QH_REFTABLE_CLUSTERS, 1);
        put_be32(buf + QH_REFCOUNT_ORDER, order);
        put_be32(buf + QH_HEADER_LENGTH, QCOW2_V3_HEADER_LEN);
        buf[QH_COMPRESSION_TYPE] = (uint8_t)p.compression;
        uint64_t incompat = 0;
        if (p.compression != QCOW2_COMPRESS_ZLIB)
            incompat |= QCOW2_INCOMPAT_COMPRESSION;
        if (p.extl2)
            incompat |= QCOW2_INCOMPAT_EXTL2;
        put_be64(buf + QH_INCOMPAT, incompat);
        put_be64(buf + QH_COMPAT, p.lazy ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
        /* data_file_raw is set with the data file below: the open in
         * between must not see it without one. */
        put_be64(buf + QH_AUTOCLEAR, 0);
        put_be64(buf + cs, 2 * cs);
        for (int i = 0; i < 3; i++)
            qcow2_refcount_set(buf + 2 * cs, (uint64_t)i, order, 1);
        /* Crash order: the refcount table and block first, the header
         * last, so that a killed create leaves either no qcow2 header or
         * one whose metadata is all there (a fatal signal can cut a large
         * write short). */
        r = blk_pwrite(proto, cs, 2 * cs, buf + cs, 0);
        if (r == 0)
            r = blk_pwrite(proto, 0, cs, buf, 0);
        if (r < 0) {
            err_set_errno(err, -r, "Could not write qcow2 header");
            goto out;
        }
    }
    blk_close(proto);
    proto = NULL;

    bs = blk_open(filename, "qcow2", NULL, BLK_O_RDWR | BLK_O_NO_BACKING | BLK_O_NO_FLUSH, err);
    if (!bs) {
        r = -EIO;
        goto out;
    }
    {
        struct qcow2_state *s = qcow2_st(bs);
        if (p.data_file) {
            struct err e2;
            err_init(&e2);
            s->data_file = blk_open_protocol(p.data_file, BLK_O_RDWR | BLK_O_NO_FLUSH, &e2);
            if (!s->data_file) {
                s->data_file = bs->file;
                err_propagate(err, &e2);
                r = -EIO;
                goto out;
            }
            s->own_data_file = true;
            s->incompat |= QCOW2_INCOMPAT_DATA_FILE;
            s->image_data_file = strdup(p.data_file);
            if (p.data_file_raw)
                s->autoclear |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
        }
        r = qcow2_update_header(bs);
        if (r < 0) {
            err_set_errno(err, -r, "Could not update qcow2 header");
            goto out;
        }
        r = blk_truncate(bs, p.size, false, p.prealloc, err);
        if (r < 0) {
            err_prefix(err, "Could not resize image: ");
            goto out;
        }
        if (p.backing_file) {
            r = blk_change_backing(bs, p.backing_file, p.backing_fmt, err);
            if (r < 0)
                goto out;
        }
        r = qcow2_crypt_create(bs, &p.crypt, err);
        if (r < 0) {
            crypt_failed = true;   /* qemu deletes the half-made image */
            goto out;
        }
    }
    r = 0;
out:
    free(buf);
    if (proto)
        blk_close(proto);
    if (bs) {
        blk_flush(bs);
        blk_close(bs);
    }
    if (r == 0) {
        /* The image above is written without flushes; qemu's create writes
         * its tables through and fails when that fails, so one flush of the
         * finished file stands for them. */
        proto = blk_open_protocol(filename, BLK_O_RDWR, err);
        if (!proto)
            return -EIO;
        r = blk_flush(proto);
        blk_close(proto);
        if (r < 0)
            return err_set_errno(err, -r, "Could not flush the new image");
    }
    if (crypt_failed)
        unlink(filename);
    return r;
}

static uint64_t prealloc_size(uint64_t total, uint64_t cs, unsigned order, bool extl2)
{
    uint64_t meta = cs, aligned = align_up_u64(total, cs);
    uint64_t l2e = extl2 ? 16 : 8;
    uint64_t nl2e = align_up_u64(aligned / cs, cs / l2e);
    uint64_t nl1e;

    meta += nl2e * l2e;
    nl1e = align_up_u64(nl2e * l2e / cs, cs / 8);
    meta += nl1e * 8;
    meta += qcow2_refcount_metadata_size((meta + aligned) / cs, cs, order, false, NULL);
    return meta + aligned;
}

int qcow2_measure(struct kvopts *opts, struct bds *in, uint64_t size, struct blk_measure *out,
                  struct err *err)
{
    bool extl2 = false;
    uint64_t cs, rb, vsize, required = 0, luks_payload = 0;
    int version = 3, r;
    enum blk_prealloc prealloc = BLK_PREALLOC_OFF;
    const char *v;

    if ((r = parse_bool(opts, "extended_l2", "extended_l2", &extl2, err)) < 0)
        return r;
    if ((r = kvopts_get_size(opts, "cluster_size", QCOW2_DEFAULT_CLUSTER_SIZE, &cs, err)) < 0)
        return r;
    if (!valid_cluster_size(cs, extl2, err))
        return -EINVAL;
    v = kvopts_get(opts, "compat");
    if (v && !strcmp(v, "0.10"))
        version = 2;
    else if (v && strcmp(v, "1.1"))
        return err_set(err, EINVAL, "Invalid compatibility level: '%s'", v);
    if ((r = kvopts_get_number(opts, "refcount_bits", 16, &rb, err)) < 0)
        return r;
    if (rb > 64 || !is_pow2_u64(rb))
        return err_set(err, EINVAL, "Refcount width must be a power of two and may not exceed 64 bits");
    if (version < 3 && rb != 16)
        return err_set(err, EINVAL, "Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)");
    /* measure parses the mode with qapi_enum_parse: its own wording */
    if ((r = parse_prealloc(opts, &prealloc, err)) < 0)
        return err_set(err, EINVAL, "invalid parameter value: %s", kvopts_get(opts, "preallocation"));
    if ((r = qcow2_crypt_measure(opts, cs, &luks_payload, err)) < 0)
        return r;

    vsize = align_up_u64(size, cs);
    {
        uint64_t l2e = extl2 ? 16 : 8;
        uint64_t l2_tables = div_round_up_u64(vsize / cs, cs / l2e);
        if (l2_tables * 8 > QCOW2_MAX_L1_BYTES)
            return err_set(err, EINVAL, "The image size is too large (try using a larger cluster size)");
    }
    if (in) {
        int64_t ssize = blk_getlength(in);
        if (ssize < 0)
            return err_set_errno(err, (int)-ssize, "Unable to get image virtual_size");
        vsize = align_up_u64((uint64_t)ssize, cs);
        if (kvopts_get(opts, "backing_file")) {
            required = vsize;
        } else {
            uint64_t pnum;
            for (uint64_t off = 0; off < (uint64_t)ssize; off += pnum) {
                int st = blk_block_status_above(in, NULL, off, (uint64_t)ssize - off, &pnum,
                                                NULL, NULL, NULL);
                if (st < 0)
                    return err_set_errno(err, -st, "Unable to get block status");
                if (pnum == 0)
                    break;
                if (st & BLK_STATUS_ZERO) {
                    /* zero regions need no data clusters */
                } else if ((st & (BLK_STATUS_DATA | BLK_STATUS_ALLOCATED)) ==
                           (BLK_STATUS_DATA | BLK_STATUS_ALLOCATED)) {
                    pnum = align_up_u64(off + pnum, cs) - off;
                    required += off % cs + pnum;
                }
            }
        }
    }
    if (prealloc == BLK_PREALLOC_FULL || prealloc == BLK_PREALLOC_FALLOC)
        required = vsize;
    out->fully_allocated = luks_payload + prealloc_size(vsize, cs, (unsigned)ctz_u64(rb), extl2);
    out->required = out->fully_allocated - vsize + required;
    out->has_bitmaps = version >= 3 && in && qcow2_bitmaps_supported(in);
    out->bitmaps = out->has_bitmaps ? qcow2_bitmaps_size(in, cs) : 0;
    return 0;
}
