/* qcow2 driver: probe, open (header and extension validation), close, the
 * read/write entry points, block status, header rewriting, info, resize and
 * backing changes (qcow2.txt "Header", "Header extensions", "Feature name
 * table", "Cluster mapping").
 *
 * Every number from the header is checked before use, in qemu's order and
 * with qemu's messages, so a broken image fails the same way it does with
 * qemu-img. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/strbuf.h"

static int qcow2_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    if (len >= QCOW2_V3_HEADER_LEN && get_be32(head + QH_MAGIC) == QCOW2_MAGIC &&
        get_be32(head + QH_VERSION) >= 2)
        return 100;
    return 0;
}

void qcow2_signal_corruption(struct bds *bs, bool fatal, const char *fmt, ...)
{
    struct qcow2_state *s = qcow2_st(bs);
    char msg[512];
    va_list ap;

    /* As qemu: a fatal event on a writable image sets the corrupt bit and
     * makes the node unusable; one message per node unless a later fatal
     * event still has to set the bit. */
    fatal = fatal && s->writable;
    if (s->corrupt_signalled && (!fatal || (s->incompat & QCOW2_INCOMPAT_CORRUPT)))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (fatal)
        blk_message("qcow2: Marking image as corrupt: %s; further corruption events will "
                    "be suppressed", msg);
    else
        blk_message("qcow2: Image is corrupt: %s; further non-fatal corruption events "
                    "will be suppressed", msg);
    s->corrupt_signalled = true;
    if (fatal) {
        if (s->version >= 3)
            qcow2_mark_corrupt(bs);
        else
            s->incompat |= QCOW2_INCOMPAT_CORRUPT;
        s->unusable = true;
    }
}

int qcow2_validate_table(struct qcow2_state *s, uint64_t offset, uint64_t entries,
                         uint64_t entry_len, uint64_t max_bytes, const char *name,
                         struct err *err)
{
    if (entries > max_bytes / entry_len)
        return err_set(err, EFBIG, "%s too large", name);
    if ((uint64_t)INT64_MAX - entries * entry_len < offset || qcow2_off_in_cluster(s, offset))
        return err_set(err, EINVAL, "%s offset invalid", name);
    return 0;
}

/* --- feature names for the "Unsupported qcow2 feature(s)" message --- */
static void report_unsupported(struct bds *bs, uint64_t start, uint64_t end, uint64_t mask,
                               struct err *err)
{
    struct strbuf sb = STRBUF_INIT;
    uint8_t *table = NULL;
    uint32_t tlen = 0;
    uint64_t off = start;

    /* Find the feature name table, if any. */
    while (off + 8 <= end) {
        uint8_t eh[8];
        if (blk_pread(bs->file, off, 8, eh) < 0)
            break;
        uint32_t magic = get_be32(eh), len = get_be32(eh + 4);
        off += 8;
        if (len > end - off)
            break;
        if (magic == QCOW2_EXT_END)
            break;
        if (magic == QCOW2_EXT_FEATURE_TABLE) {
            free(table);
            table = malloc(len ? len : 1);
            if (table && blk_pread(bs->file, off, len, table) == 0)
                tlen = len;
            else
                tlen = 0;
        }
        off += align_up_u64(len, 8);
    }
    for (uint32_t i = 0; i + 48 <= tlen; i += 48) {
        const uint8_t *f = table + i;
        char name[47];
        if (!f[2])
            break;
        if (f[0] != 0 || f[1] >= 64 || !(mask & (1ULL << f[1])))
            continue;
        memcpy(name, f + 2, 46);
        name[46] = 0;
        if (sb.len)
            strbuf_puts(&sb, ", ");
        strbuf_puts(&sb, name);
        mask &= ~(1ULL << f[1]);
    }
    if (mask) {
        if (sb.len)
            strbuf_puts(&sb, ", ");
        strbuf_addf(&sb, "Unknown incompatible feature: %llx", (unsigned long long)mask);
    }
    err_set(err, ENOTSUP, "Unsupported qcow2 feature(s): %s", strbuf_str(&sb));
    strbuf_release(&sb);
    free(table);
}

static int read_extensions(struct bds *bs, uint64_t start, uint64_t end, bool *update,
                           struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t off = start;
    int r;

    *update = false;
    while (off < end) {
        uint8_t eh[8];
        r = blk_pread(bs->file, off, 8, eh);
        if (r < 0)
            return err_set_errno(err, -r, "qcow2_read_extension: ERROR: pread fail from offset %llu",
                                 (unsigned long long)off);
        uint32_t magic = get_be32(eh), len = get_be32(eh + 4);
        off += 8;
        if (off > end || len > end - off)
            return err_set(err, EINVAL, "Header extension too large");
        switch (magic) {
        case QCOW2_EXT_END:
            return 0;
        case QCOW2_EXT_BACKING_FORMAT:
            if (len >= 16)
                return err_set(err, EINVAL, "ERROR: ext_backing_format: len=%u too large (>=16)", len);
            free(s->image_backing_format);
            s->image_backing_format = calloc(1, len + 1);
            if (!s->image_backing_format)
                return -ENOMEM;
            r = blk_pread(bs->file, off, len, s->image_backing_format);
            if (r < 0)
                return err_set_errno(err, -r, "ERROR: ext_backing_format: Could not read format name");
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            break;
        case QCOW2_EXT_CRYPTO_HEADER: {
            uint8_t b[16];
            if (s->crypt_method != QCOW2_CRYPT_LUKS)
                return err_set(err, EINVAL, "CRYPTO header extension only expected with LUKS encryption method");
            if (len != 16)
                return err_set(err, EINVAL, "CRYPTO header extension size %u, but expected size 16", len);
            r = blk_pread(bs->file, off, 16, b);
            if (r < 0)
                return err_set_errno(err, -r, "Unable to read CRYPTO header extension");
            s->crypto_hdr_offset = get_be64(b);
            s->crypto_hdr_len = get_be64(b + 8);
            if (qcow2_off_in_cluster(s, s->crypto_hdr_offset))
                return err_set(err, EINVAL, "Encryption header offset '%llu' is not a multiple of cluster size '%llu'",
                               (unsigned long long)s->crypto_hdr_offset, (unsigned long long)s->cluster_size);
            break;
        }
        case QCOW2_EXT_BITMAPS: {
            uint8_t b[24];
            if (len != 24)
                return err_set(err, EINVAL, "bitmaps_ext: Invalid extension length");
            if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
                /* Stale bitmaps: dropped from the header when writable. */
                if (s->version < 3)
                    blk_message("%s: warning: This qcow2 v2 image contains bitmaps, but they may "
                                "have been modified by a program without persistent bitmap "
                                "support; so now they must all be considered inconsistent",
                                blk_prog_name());
                else
                    blk_message("%s: warning: a program lacking bitmap support modified this "
                                "file, so all bitmaps are now considered inconsistent",
                                blk_prog_name());
                blk_message_partial("Some clusters may be leaked, run 'qemu-img check -r' on "
                                    "the image file to fix.");
                *update = true;
                break;
            }
            r = blk_pread(bs->file, off, 24, b);
            if (r < 0)
                return err_set_errno(err, -r, "bitmaps_ext: Could not read ext header");
            if (get_be32(b + 4))
                return err_set(err, EINVAL, "bitmaps_ext: Reserved field is not zero");
            uint32_t nb = get_be32(b);
            uint64_t dsz = get_be64(b + 8), doff = get_be64(b + 16);
            if (nb > 65535)
                return err_set(err, EINVAL, "bitmaps_ext: Image has %u bitmaps, exceeding the QEMU supported maximum of 65535", nb);
            if (nb == 0)
                return err_set(err, EINVAL, "found bitmaps extension with zero bitmaps");
            if (qcow2_off_in_cluster(s, doff))
                return err_set(err, EINVAL, "bitmaps_ext: invalid bitmap directory offset");
            if (dsz > 1024ULL * 65535)
                return err_set(err, EINVAL, "bitmaps_ext: bitmap directory size (%llu) exceeds the maximum supported size (%d)",
                               (unsigned long long)dsz, 1024 * 65535);
            s->nb_bitmaps = nb;
            s->bitmap_dir_size = dsz;
            s->bitmap_dir_offset = doff;
            break;
        }
        case QCOW2_EXT_DATA_FILE:
            free(s->image_data_file);
            s->image_data_file = calloc(1, len + 1);
            if (!s->image_data_file)
                return -ENOMEM;
            r = blk_pread(bs->file, off, len, s->image_data_file);
            if (r < 0)
                return err_set_errno(err, -r, "ERROR: Could not read data file name");
            break;
        default: {
            struct qcow2_unknown_ext *n = realloc(s->uexts, (s->n_uexts + 1) * sizeof(*n));
            if (!n)
                return -ENOMEM;
            s->uexts = n;
            n = &s->uexts[s->n_uexts];
            n->magic = magic;
            n->len = len;
            n->data = malloc(len ? len : 1);
            if (!n->data)
                return -ENOMEM;
            s->n_uexts++;
            r = blk_pread(bs->file, off, len, n->data);
            if (r < 0)
                return err_set_errno(err, -r, "ERROR: unknown extension: Could not read data");
            break;
        }
        }
        off += align_up_u64(len, 8);
    }
    return 0;
}

static void free_state(struct qcow2_state *s)
{
    free(s->l1);
    s->l1 = NULL;
    free(s->reftable);
    s->reftable = NULL;
    qcow2_cache_release(&s->l2_cache);
    qcow2_cache_release(&s->rb_cache);
    free(s->image_backing_file);
    free(s->image_backing_format);
    free(s->image_data_file);
    s->image_backing_file = s->image_backing_format = s->image_data_file = NULL;
    free(s->unknown_fields);
    s->unknown_fields = NULL;
    for (unsigned i = 0; i < s->n_uexts; i++)
        free(s->uexts[i].data);
    free(s->uexts);
    s->uexts = NULL;
    s->n_uexts = 0;
    free(s->cbuf);
    free(s->cin);
    s->cbuf = s->cin = NULL;
    qcow2_free_snapshots(s);
    qcow2_crypt_close(s);
    qcow2_bitmaps_free(s);
    free(s->discards);
    s->discards = NULL;
    s->n_discards = s->cap_discards = 0;
}

static int open_data_file(struct bds *bs, int flags, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct err e2;
    char *path;

    if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
        s->data_file = bs->file;
        if (s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW)
            return err_set(err, EINVAL, "data-file-raw requires a data file");
        return 0;
    }
    if (!s->image_data_file)
        return err_set(err, EINVAL, "'data-file' is required for this image");
    path = blk_resolve_backing(bs->filename, s->image_data_file);
    err_init(&e2);
    s->data_file = blk_open_ref(bs->filename, path, "data file", flags & (BLK_O_RDWR | BLK_O_NOCACHE | BLK_O_SHARE | BLK_O_NO_FLUSH), &e2);
    free(path);
    if (!s->data_file) {
        err_propagate(err, &e2);
        return -EINVAL;
    }
    s->own_data_file = true;
    return 0;
}

static int qcow2_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t h[QCOW2_V3_HEADER_LEN];
    int64_t flen;
    uint64_t size, l1_offset, rt_offset, snap_offset, ext_end, backing_off;
    uint32_t l1_size, rt_clusters, nb_snap, backing_len, version, cbits;
    bool update = false;
    int r;

    /* qemu's pass-discard-* defaults (the node's options may change them,
     * qcow2-options.c). "request" follows the node's
     * discard=unmap, which qemu-img sets exactly for the opens that write
     * zeroes with BDRV_REQ_MAY_UNMAP (convert, commit): the only requests
     * that reach this driver's REQUEST frees. */
    s->discard_pass[QCOW2_DISCARD_ALWAYS] = true;
    s->discard_pass[QCOW2_DISCARD_REQUEST] = true;
    s->discard_pass[QCOW2_DISCARD_SNAPSHOT] = true;
    memset(h, 0, sizeof(h));
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Could not read qcow2 header");
    r = blk_pread(bs->file, 0, min_u64(sizeof(h), (uint64_t)flen), h);
    if (r < 0)
        return err_set_errno(err, -r, "Could not read qcow2 header");

    if (get_be32(h + QH_MAGIC) != QCOW2_MAGIC)
        return err_set(err, EINVAL, "Image is not in qcow2 format");
    version = get_be32(h + QH_VERSION);
    if (version < 2 || version > 3)
        return err_set(err, ENOTSUP, "Unsupported qcow2 version %u", version);
    s->version = version;
    cbits = get_be32(h + QH_CLUSTER_BITS);
    if (cbits < QCOW2_MIN_CLUSTER_BITS || cbits > QCOW2_MAX_CLUSTER_BITS)
        return err_set(err, EINVAL, "Unsupported cluster size: 2^%u", cbits);
    s->cluster_bits = cbits;
    s->cluster_size = 1ULL << cbits;

    if (version == 2) {
        s->incompat = s->compat = s->autoclear = 0;
        s->refcount_order = 4;
        s->header_length = QCOW2_V2_HEADER_LEN;
    } else {
        s->incompat = get_be64(h + QH_INCOMPAT);
        s->compat = get_be64(h + QH_COMPAT);
        s->autoclear = get_be64(h + QH_AUTOCLEAR);
        s->refcount_order = get_be32(h + QH_REFCOUNT_ORDER);
        s->header_length = get_be32(h + QH_HEADER_LENGTH);
        if (s->header_length < QCOW2_V3_MIN_HEADER_LEN)
            return err_set(err, EINVAL, "qcow2 header too short");
    }
    if (s->header_length > s->cluster_size)
        return err_set(err, EINVAL, "qcow2 header exceeds cluster size");
    if (s->header_length > QCOW2_V3_HEADER_LEN) {
        s->unknown_fields_len = s->header_length - QCOW2_V3_HEADER_LEN;
        s->unknown_fields = malloc(s->unknown_fields_len);
        if (!s->unknown_fields)
            return -ENOMEM;
        r = blk_pread(bs->file, QCOW2_V3_HEADER_LEN, s->unknown_fields_len, s->unknown_fields);
        if (r < 0) {
            err_set_errno(err, -r, "Could not read unknown qcow2 header fields");
            goto fail;
        }
    }
    backing_off = get_be64(h + QH_BACKING_OFFSET);
    if (backing_off > s->cluster_size) {
        r = err_set(err, EINVAL, "Invalid backing file offset");
        goto fail;
    }
    ext_end = backing_off ? backing_off : s->cluster_size;

    s->compression_type = s->header_length > QH_COMPRESSION_TYPE ? h[QH_COMPRESSION_TYPE]
                                                                 : QCOW2_COMPRESS_ZLIB;
    if (s->compression_type > QCOW2_COMPRESS_ZSTD) {
        r = err_set(err, ENOTSUP, "qcow2: unknown compression type: %u", s->compression_type);
        goto fail;
    }
    if (s->compression_type == QCOW2_COMPRESS_ZLIB && (s->incompat & QCOW2_INCOMPAT_COMPRESSION)) {
        r = err_set(err, EINVAL, "qcow2: Compression type incompatible feature bit must not be set");
        goto fail;
    }
    if (s->compression_type != QCOW2_COMPRESS_ZLIB && !(s->incompat & QCOW2_INCOMPAT_COMPRESSION)) {
        r = err_set(err, EINVAL, "qcow2: Compression type incompatible feature bit must be set");
        goto fail;
    }
    if (s->incompat & ~QCOW2_INCOMPAT_MASK) {
        report_unsupported(bs, s->header_length, ext_end, s->incompat & ~QCOW2_INCOMPAT_MASK, err);
        r = -ENOTSUP;
        goto fail;
    }
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && (flags & BLK_O_RDWR) && !(flags & BLK_O_CHECK)) {
        r = err_set(err, EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
        goto fail;
    }
    s->extl2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
    s->subcluster_bits = s->extl2 ? cbits - 5 : cbits;
    if (s->extl2 && cbits - 5 < QCOW2_MIN_CLUSTER_BITS) {
        r = err_set(err, EINVAL, "Unsupported subcluster size: %llu", 1ULL << (cbits - 5));
        goto fail;
    }
    if (s->refcount_order > 6) {
        r = err_set(err, EINVAL, "Reference count entry width too large; may not exceed 64 bits");
        goto fail;
    }
    s->refcount_max = qcow2_refcount_max(s->refcount_order);
    s->crypt_method = get_be32(h + QH_CRYPT_METHOD);
    if (s->crypt_method > QCOW2_CRYPT_LUKS) {
        r = err_set(err, EINVAL, "Unsupported encryption method %d", (int)s->crypt_method);
        goto fail;
    }
    if (s->crypt_method)
        bs->encrypted = true;

    s->l2_entry_size = s->extl2 ? 16 : 8;
    s->l2_bits = cbits - (s->extl2 ? 4 : 3);
    s->l2_entries = 1ULL << s->l2_bits;
    s->rb_bits = cbits + 3 - s->refcount_order;
    size = get_be64(h + QH_SIZE);

    rt_offset = get_be64(h + QH_REFTABLE_OFFSET);
    rt_clusters = get_be32(h + QH_REFTABLE_CLUSTERS);
    s->reftable_offset = rt_offset;
    s->reftable_size = (uint64_t)rt_clusters << (cbits - 3);
    if (rt_clusters == 0 && !(flags & BLK_O_CHECK)) {
        r = err_set(err, EINVAL, "Image does not contain a reference count table");
        goto fail;
    }
    r = qcow2_validate_table(s, rt_offset, rt_clusters, s->cluster_size,
                             QCOW2_MAX_REFTABLE_BYTES, "Reference count table", err);
    if (r < 0)
        goto fail;
    nb_snap = get_be32(h + QH_NB_SNAPSHOTS);
    snap_offset = get_be64(h + QH_SNAPSHOTS_OFFSET);
    if (!(flags & BLK_O_CHECK)) {
        r = qcow2_validate_table(s, snap_offset, nb_snap, QCOW2_SNAPSHOT_HEADER_LEN,
                                 (uint64_t)QCOW2_SNAPSHOT_HEADER_LEN * QCOW2_MAX_SNAPSHOTS,
                                 "Snapshot table", err);
        if (r < 0)
            goto fail;
    }
    l1_size = get_be32(h + QH_L1_SIZE);
    l1_offset = get_be64(h + QH_L1_OFFSET);
    r = qcow2_validate_table(s, l1_offset, l1_size, 8, QCOW2_MAX_L1_BYTES, "Active L1 table",
                             err);
    if (r < 0)
        goto fail;
    s->l1_size = l1_size;
    s->l1_offset = l1_offset;
    {
        uint64_t need = qcow2_size_to_l1(cbits, s->l2_bits, size);
        if (need > INT32_MAX) {
            r = err_set(err, EFBIG, "Image is too big");
            goto fail;
        }
        if (l1_size < need) {
            r = err_set(err, EINVAL, "L1 table is too small");
            goto fail;
        }
    }
    /* Read as big-endian bytes into the table itself, converted in place:
     * one buffer, not a table and a read buffer (fresh pages fault). */
    s->l1 = malloc(l1_size ? (size_t)l1_size * 8 : 8);
    if (!s->l1) {
        r = err_set(err, ENOMEM, "Could not allocate L1 table");
        goto fail;
    }
    if (l1_size) {
        r = blk_pread(bs->file, l1_offset, (uint64_t)l1_size * 8, s->l1);
        if (r < 0) {
            err_set_errno(err, -r, "Could not read L1 table");
            goto fail;
        }
        for (uint32_t i = 0; i < l1_size; i++)
            s->l1[i] = get_be64((const uint8_t *)&s->l1[i]);
    } else {
        s->l1[0] = 0;
    }
    /* the node's options, where qemu reads them (after the L1 table) */
    s->use_lazy_refcounts = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    r = qcow2_runtime_options(bs, opts, size, err);
    if (r < 0)
        goto fail;

    /* Metadata caches: enough L2 tables to map the whole disk, up to 32 MiB. */
    {
        uint64_t max_l2 = max_u64(4, (32ULL << 20) >> cbits);
        unsigned n_l2 = (unsigned)min_u64(max_u64(l1_size, 4), max_l2);
        unsigned n_rb = (unsigned)min_u64(max_u64(4, (4ULL << 20) >> cbits), 64);
        if (qcow2_cache_init(&s->l2_cache, n_l2, s->cluster_size) < 0 ||
            qcow2_cache_init(&s->rb_cache, n_rb, s->cluster_size) < 0) {
            r = err_set(err, ENOMEM, "Could not allocate metadata caches");
            goto fail;
        }
    }
    s->writable = !bs->read_only;

    r = qcow2_refcount_init(bs, err);
    if (r < 0)
        goto fail;

    r = read_extensions(bs, s->header_length, ext_end, &update, err);
    if (r < 0) {
        r = -EINVAL;
        goto fail;
    }
    r = open_data_file(bs, flags, err);
    if (r < 0)
        goto fail;
    r = qcow2_crypt_open(bs, opts, flags, err);
    if (r < 0)
        goto fail;

    backing_len = get_be32(h + QH_BACKING_SIZE);
    if (backing_off) {
        if (backing_len > min_u64(QCOW2_MAX_BACKING_NAME, s->cluster_size - backing_off)) {
            r = err_set(err, EINVAL, "Backing file name too long");
            goto fail;
        }
        s->image_backing_file = calloc(1, backing_len + 1);
        if (!s->image_backing_file) {
            r = -ENOMEM;
            goto fail;
        }
        r = blk_pread(bs->file, backing_off, backing_len, s->image_backing_file);
        if (r < 0) {
            err_set_errno(err, -r, "Could not read backing file name");
            goto fail;
        }
        bs->backing_file = strdup(s->image_backing_file);
        if (s->image_backing_format)
            bs->backing_format = strdup(s->image_backing_format);
    }

    if (!(flags & BLK_O_CHECK)) {
        s->nb_snapshots = nb_snap;
        s->snapshots_offset = snap_offset;
        r = qcow2_read_snapshots(bs, err);
        if (r < 0)
            goto fail;
    } else {
        /* check reads the table itself through qcow2_read_snapshots too. */
        s->nb_snapshots = nb_snap;
        s->snapshots_offset = snap_offset;
        struct err e2;
        err_init(&e2);
        if (qcow2_read_snapshots(bs, &e2) < 0) {
            qcow2_free_snapshots(s);
            s->nb_snapshots = 0;
        }
    }

    /* qemu keeps whole sectors of the header's size, and its open ends with
     * refresh_total_sectors: past BLK_MAX_LENGTH that is EFBIG. */
    if (size / 512 > BLK_MAX_LENGTH / 512) {
        r = err_set_errno(err, EFBIG, "Could not refresh total sector count");
        goto fail;
    }
    bs->total_size = size / 512 * 512;
    bs->request_alignment = bs->encrypted ? 512 : 1;   /* sectors for the cipher */

    r = qcow2_bitmaps_load(bs, err);
    if (r < 0)
        goto fail;

    if ((s->autoclear & ~QCOW2_AUTOCLEAR_MASK) || update) {
        if (s->writable) {
            s->autoclear &= QCOW2_AUTOCLEAR_MASK;
            if (update) {
                s->nb_bitmaps = 0;
                s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
            }
            r = qcow2_update_header(bs);
            if (r < 0) {
                err_set_errno(err, -r, "Could not update qcow2 header");
                goto fail;
            }
        }
    }

    if (!(flags & BLK_O_CHECK) && s->writable && (s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        struct blk_check_result res;
        struct err e2;
        memset(&res, 0, sizeof(res));
        err_init(&e2);
        r = qcow2_check(bs, &res, BLK_FIX_ERRORS | BLK_FIX_LEAKS, &e2);
        if (r < 0 || res.check_errors) {
            if (r >= 0)
                r = -EIO;
            err_set_errno(err, -r, "Could not repair dirty image");
            goto fail;
        }
    }
    return 0;

fail:
    if (s->own_data_file && s->data_file)
        blk_close(s->data_file);
    s->data_file = NULL;
    s->own_data_file = false;
    free_state(s);
    return r < 0 ? r : -EINVAL;
}

static void qcow2_close(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    /* After a fatal corruption event qemu drops the node without writing
     * its cached metadata back; so do we. */
    if (s->writable && !s->unusable) {
        qcow2_bitmaps_close(bs);
        if (s->wrote_compressed) {
            /* Compressed data ends anywhere; qemu leaves the file ending on
             * a sector boundary, and so do we. */
            int64_t len = blk_getlength(bs->file);
            if (len > 0) {
                struct err e2;
                err_init(&e2);
                blk_truncate(bs->file, align_up_u64((uint64_t)len, 512), false, BLK_PREALLOC_OFF, &e2);
            }
        }
        if (qcow2_meta_flush(bs) == 0) {
            blk_flush(bs->file);
            qcow2_mark_clean(bs);
        }
    }
    if (s->own_data_file && s->data_file)
        blk_close(s->data_file);
    free_state(s);
}

/* --- header --- */

static size_t ext_add(uint8_t *buf, size_t room, uint32_t magic, const void *data, size_t len)
{
    size_t need = 8 + align_up_u64(len, 8);
    if (room < need)
        return 0;
    put_be32(buf, magic);
    put_be32(buf + 4, (uint32_t)len);
    if (len)
        memcpy(buf + 8, data, len);
    return need;
}

static const struct { uint8_t type, bit; const char *name; } feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

int qcow2_update_header(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    size_t cs = s->cluster_size, pos, n;
    uint8_t *b = calloc(1, cs);
    int r;

    if (!b)
        return -ENOMEM;
    put_be32(b + QH_MAGIC, QCOW2_MAGIC);
    put_be32(b + QH_VERSION, s->version);
    put_be32(b + QH_CLUSTER_BITS, s->cluster_bits);
    put_be64(b + QH_SIZE, bs->total_size);
    put_be32(b + QH_CRYPT_METHOD, s->crypt_method);
    put_be32(b + QH_L1_SIZE, s->l1_size);
    put_be64(b + QH_L1_OFFSET, s->l1_offset);
    put_be64(b + QH_REFTABLE_OFFSET, s->reftable_offset);
    put_be32(b + QH_REFTABLE_CLUSTERS, (uint32_t)(s->reftable_size >> (s->cluster_bits - 3)));
    put_be32(b + QH_NB_SNAPSHOTS, s->nb_snapshots);
    put_be64(b + QH_SNAPSHOTS_OFFSET, s->snapshots_offset);
    if (s->version >= 3) {
        put_be64(b + QH_INCOMPAT, s->incompat);
        put_be64(b + QH_COMPAT, s->compat);
        put_be64(b + QH_AUTOCLEAR, s->autoclear);
        put_be32(b + QH_REFCOUNT_ORDER, s->refcount_order);
        put_be32(b + QH_HEADER_LENGTH, QCOW2_V3_HEADER_LEN + s->unknown_fields_len);
        b[QH_COMPRESSION_TYPE] = s->compression_type;
        pos = QCOW2_V3_HEADER_LEN;
        if (s->unknown_fields_len) {
            if (cs - pos < s->unknown_fields_len) {
                r = -ENOSPC;
                goto out;
            }
            memcpy(b + pos, s->unknown_fields, s->unknown_fields_len);
            pos += s->unknown_fields_len;
        }
    } else {
        pos = QCOW2_V2_HEADER_LEN;
    }
    r = -ENOSPC;
    if (s->image_backing_format) {
        n = ext_add(b + pos, cs - pos, QCOW2_EXT_BACKING_FORMAT, s->image_backing_format,
                    strlen(s->image_backing_format));
        if (!n)
            goto out;
        pos += n;
    }
    if (qcow2_has_data_file(s) && s->image_data_file) {
        n = ext_add(b + pos, cs - pos, QCOW2_EXT_DATA_FILE, s->image_data_file,
                    strlen(s->image_data_file));
        if (!n)
            goto out;
        pos += n;
    }
    if (s->crypto_hdr_offset) {
        uint8_t c[16];
        put_be64(c, s->crypto_hdr_offset);
        put_be64(c + 8, s->crypto_hdr_len);
        n = ext_add(b + pos, cs - pos, QCOW2_EXT_CRYPTO_HEADER, c, 16);
        if (!n)
            goto out;
        pos += n;
    }
    if (s->version >= 3 && cs > 4096) {
        uint8_t ft[sizeof(feature_names) / sizeof(feature_names[0]) * 48];
        memset(ft, 0, sizeof(ft));
        for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
            ft[i * 48] = feature_names[i].type;
            ft[i * 48 + 1] = feature_names[i].bit;
            memcpy(ft + i * 48 + 2, feature_names[i].name, strlen(feature_names[i].name));
        }
        n = ext_add(b + pos, cs - pos, QCOW2_EXT_FEATURE_TABLE, ft, sizeof(ft));
        if (!n)
            goto out;
        pos += n;
    }
    if (s->nb_bitmaps) {
        uint8_t bm[24] = { 0 };
        put_be32(bm, s->nb_bitmaps);
        put_be64(bm + 8, s->bitmap_dir_size);
        put_be64(bm + 16, s->bitmap_dir_offset);
        n = ext_add(b + pos, cs - pos, QCOW2_EXT_BITMAPS, bm, 24);
        if (!n)
            goto out;
        pos += n;
    }
    for (unsigned i = 0; i < s->n_uexts; i++) {
        n = ext_add(b + pos, cs - pos, s->uexts[i].magic, s->uexts[i].data, s->uexts[i].len);
        if (!n)
            goto out;
        pos += n;
    }
    n = ext_add(b + pos, cs - pos, QCOW2_EXT_END, NULL, 0);
    if (!n)
        goto out;
    pos += n;
    if (s->image_backing_file) {
        size_t bl = strlen(s->image_backing_file);
        if (cs - pos < bl)
            goto out;
        memcpy(b + pos, s->image_backing_file, bl);
        put_be64(b + QH_BACKING_OFFSET, pos);
        put_be32(b + QH_BACKING_SIZE, (uint32_t)bl);
    }
    r = blk_pwrite(bs->file, 0, cs, b, 0);
out:
    free(b);
    return r;
}

static int write_incompat(struct bds *bs, uint64_t v)
{
    uint8_t be[8];
    int r;
    put_be64(be, v);
    r = blk_pwrite(bs->file, QH_INCOMPAT, 8, be, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    return r;
}

int qcow2_mark_dirty(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;
    if (s->version < 3 || (s->incompat & QCOW2_INCOMPAT_DIRTY))
        return 0;
    r = write_incompat(bs, s->incompat | QCOW2_INCOMPAT_DIRTY);
    if (r == 0)
        s->incompat |= QCOW2_INCOMPAT_DIRTY;
    return r;
}

/* Everything the dirty bit guarded, on disk before the bit goes. */
static int flush_before_clean(struct bds *bs)
{
    int r = qcow2_meta_flush(bs);
    return r < 0 ? r : blk_flush(bs->file);
}

int qcow2_mark_clean(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;
    if (!(s->incompat & QCOW2_INCOMPAT_DIRTY))
        return 0;
    s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    r = flush_before_clean(bs);
    return r < 0 ? r : qcow2_update_header(bs);
}

int qcow2_clear_dirty(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;
    if (!(s->incompat & QCOW2_INCOMPAT_DIRTY))
        return 0;
    r = flush_before_clean(bs);
    if (r == 0)
        r = write_incompat(bs, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
    if (r == 0)
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    return r;
}

int qcow2_mark_corrupt(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    s->incompat |= QCOW2_INCOMPAT_CORRUPT;
    return qcow2_update_header(bs);
}

int qcow2_mark_consistent(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;
    if (!(s->incompat & QCOW2_INCOMPAT_CORRUPT))
        return 0;
    r = qcow2_meta_flush(bs);
    if (r < 0)
        return r;
    s->incompat &= ~QCOW2_INCOMPAT_CORRUPT;
    return qcow2_update_header(bs);
}

/* --- data path --- */

/* Guest reads. Under the node lock (unlocked false) everything is done in
 * turn. A read-only node's pread runs without it (BLK_THREAD_READS_UNLOCKED_RO):
 * then the lock is taken here around the cluster lookup, which goes through
 * the metadata caches; data reads, decryption (crypto_sectors_crypt keeps
 * its cipher state per call) and decompression, the costly parts, run on
 * the callers' threads at once. The mapping of a read-only node does not
 * change while it is open. */
static int do_pread(struct bds *bs, uint64_t off, uint64_t len, uint8_t *buf, bool unlocked)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *tmp = NULL, *cin = NULL;
    int r = 0;

    while (len) {
        uint64_t n = len, host, entry;
        enum qcow2_sc_type t;

        if (unlocked)
            blk_pread_lock(bs);
        r = qcow2_get_host_offset(bs, off, &n, &host, &t, &entry);
        if (unlocked)
            blk_pread_unlock(bs);
        if (r < 0)
            break;
        switch (t) {
        case QCOW2_SC_UNALLOC_PLAIN:
        case QCOW2_SC_UNALLOC_ALLOC:
            r = blk_read_backing(bs, off, n, buf);
            break;
        case QCOW2_SC_ZERO_PLAIN:
        case QCOW2_SC_ZERO_ALLOC:
            memset(buf, 0, n);
            break;
        case QCOW2_SC_NORMAL:
            r = qcow2_crypt_pread(bs, host, off, n, buf);
            break;
        case QCOW2_SC_COMPRESSED:
            if (!tmp && !(tmp = malloc(s->cluster_size))) {
                r = -ENOMEM;
                break;
            }
            if (unlocked) {
                if (!cin && !(cin = malloc(2 * s->cluster_size))) {
                    r = -ENOMEM;
                    break;
                }
                r = qcow2_read_compressed_into(bs, entry, tmp, cin);
            } else {
                r = qcow2_read_compressed(bs, entry, tmp);
            }
            if (r == 0)
                memcpy(buf, tmp + qcow2_off_in_cluster(s, off), n);
            break;
        default:
            r = -EIO;
            break;
        }
        if (r < 0)
            break;
        off += n;
        buf += n;
        len -= n;
    }
    free(tmp);
    free(cin);
    return r;
}

int qcow2_do_pread(struct bds *bs, uint64_t off, uint64_t len, uint8_t *buf)
{
    return do_pread(bs, off, len, buf, false);
}

static int qcow2_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    if (qcow2_st(bs)->unusable)
        return -ENOMEDIUM;
    /* Past the end of the image (a request the core clipped differently)
     * reads as zero. */
    if (off >= bs->total_size) {
        memset(buf, 0, len);
        return 0;
    }
    if (off + len > bs->total_size) {
        uint64_t in = bs->total_size - off;
        memset((uint8_t *)buf + in, 0, len - in);
        len = in;
    }
    return do_pread(bs, off, len, buf, blk_pread_unlocked(bs));
}

static int qcow2_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct qcow2_state *s = qcow2_st(bs);
    const uint8_t *p = buf;
    if (qcow2_st(bs)->unusable)
        return -ENOMEDIUM;

    if (off + len > bs->total_size)
        return -EINVAL;
    qcow2_bitmap_note_write(bs, off, len);
    if (flags & BLK_WRITE_COMPRESSED) {
        while (len) {
            uint64_t n = min_u64(len, s->cluster_size - qcow2_off_in_cluster(s, off));
            int r;
            if (qcow2_off_in_cluster(s, off) || (n < s->cluster_size && off + n != bs->total_size))
                r = qcow2_write_data(bs, off, n, p);
            else
                r = qcow2_write_compressed(bs, off, n, p);
            if (r < 0)
                return r;
            off += n;
            p += n;
            len -= n;
        }
        return 0;
    }
    return qcow2_write_data(bs, off, len, p);
}

/* Does [off, off+len) read as zero through the whole chain? (Our own node is
 * locked by the core here, so only our mapping and the backing node are
 * asked.) */
static bool reads_zero(struct bds *bs, uint64_t off, uint64_t len)
{
    while (len) {
        uint64_t n = len, host;
        enum qcow2_sc_type t;
        if (qcow2_get_host_offset(bs, off, &n, &host, &t, NULL) < 0 || n == 0)
            return false;
        if (t == QCOW2_SC_UNALLOC_PLAIN || t == QCOW2_SC_UNALLOC_ALLOC) {
            if (bs->backing) {
                int64_t blen = blk_getlength(bs->backing);
                if (blen < 0)
                    return false;
                uint64_t done = 0;
                while (done < n && off + done < (uint64_t)blen) {
                    uint64_t m;
                    int r = blk_block_status_above(bs->backing, NULL, off + done,
                                                   min_u64(n - done, (uint64_t)blen - off - done),
                                                   &m, NULL, NULL, NULL);
                    if (r < 0 || !(r & BLK_STATUS_ZERO) || m == 0)
                        return false;
                    done += m;
                }
            }
        } else if (t != QCOW2_SC_ZERO_PLAIN && t != QCOW2_SC_ZERO_ALLOC) {
            return false;
        }
        off += n;
        len -= n;
    }
    return true;
}

static int qcow2_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    struct qcow2_state *s = qcow2_st(bs);
    if (qcow2_st(bs)->unusable)
        return -ENOMEDIUM;
    uint64_t scs = 1ULL << s->subcluster_bits;
    uint64_t end = off + len;
    uint64_t a = align_up_u64(off, scs);
    uint64_t b = end == bs->total_size ? end : align_down_u64(end, scs);
    int r;

    if (s->version < 3)
        return -ENOTSUP;
    qcow2_bitmap_note_write(bs, off, len);
    if (a >= b && a > off && a < end) {
        /* Two partial subclusters and nothing whole in between. */
        b = a;
    } else if (a >= b) {
        /* All inside one subcluster: only if the rest already reads zero. */
        uint64_t cs0 = align_down_u64(off, scs);
        uint64_t ce = min_u64(cs0 + scs, bs->total_size);
        if (!reads_zero(bs, cs0, off - cs0) || !reads_zero(bs, end, ce - end))
            return -ENOTSUP;
        if (s->extl2 && scs != s->cluster_size) {
            /* As qemu: only a subcluster that has no data of its own. */
            uint64_t n1 = scs, host;
            enum qcow2_sc_type t;
            r = qcow2_get_host_offset(bs, cs0, &n1, &host, &t, NULL);
            if (r < 0)
                return r;
            if (t != QCOW2_SC_UNALLOC_PLAIN && t != QCOW2_SC_UNALLOC_ALLOC &&
                t != QCOW2_SC_ZERO_PLAIN && t != QCOW2_SC_ZERO_ALLOC)
                return -ENOTSUP;
        }
        return qcow2_zeroize(bs, cs0, ce - cs0, flags & BLK_WRITE_MAY_UNMAP);
    }
    if (a > off || b < end) {
        if (flags & BLK_WRITE_NO_FALLBACK) {
            if ((a > off && !reads_zero(bs, off, a - off)) || (b < end && !reads_zero(bs, b, end - b)))
                return -ENOTSUP;
        }
    }
    if (a > off && !reads_zero(bs, off, a - off)) {
        uint8_t *z = calloc(1, a - off);
        if (!z)
            return -ENOMEM;
        r = qcow2_write_data(bs, off, a - off, z);
        free(z);
        if (r < 0)
            return r;
    }
    if (b > a) {
        r = qcow2_zeroize(bs, a, b - a, flags & BLK_WRITE_MAY_UNMAP);
        if (r < 0)
            return r;
    }
    r = 0;
    if (b < end && !reads_zero(bs, b, end - b)) {
        uint8_t *z = calloc(1, end - b);
        if (!z)
            return -ENOMEM;
        r = qcow2_write_data(bs, b, end - b, z);
        free(z);
    }
    return r;
}

static int qcow2_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_st(bs);
    if (qcow2_st(bs)->unusable)
        return -ENOMEDIUM;
    uint64_t a, b;

    if (s->version < 3 && bs->backing)
        return -ENOTSUP;
    qcow2_bitmap_note_write(bs, off, len);
    a = align_up_u64(off, s->cluster_size);
    b = off + len == bs->total_size ? off + len : align_down_u64(off + len, s->cluster_size);
    if (a >= b)
        return 0;
    return qcow2_discard_clusters(bs, a, b - a, false, QCOW2_DISCARD_REQUEST);
}

static int qcow2_flush(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if (s->unusable)
        return 0;       /* qemu: a node without driver flushes nothing */
    r = qcow2_meta_flush(bs);
    if (r == 0 && s->data_file && s->data_file != bs->file)
        r = blk_flush(s->data_file);
    return r;
}

/* qemu's heuristic (qcow2_detect_metadata_preallocation): the image counts
 * as metadata-preallocated when clearly more clusters carry a refcount than
 * the file has host blocks allocated. Returns 1/0 or -errno. */
static int qcow2_detect_meta_prealloc(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int64_t flen = blk_getlength(bs->file), alloc = blk_get_allocated_size(bs->file);
    uint64_t real, threshold, end, count;
    int r;

    if (flen < 0)
        return (int)flen;
    if (alloc < 0)
        return (int)alloc;
    real = (uint64_t)alloc / s->cluster_size;
    threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
    end = ((uint64_t)flen + s->cluster_size - 1) >> s->cluster_bits;
    r = qcow2_count_referenced(bs, 0, end, threshold, &count);
    if (r < 0)
        return r;
    return count >= threshold;
}

static int qcow2_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                              uint64_t *map, struct bds **file)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t n = min_u64(len, INT32_MAX), host;
    enum qcow2_sc_type t;
    int r, st = 0;

    if (s->unusable)
        return -ENOMEDIUM;
    if (!s->meta_prealloc_checked) {
        r = qcow2_detect_meta_prealloc(bs);
        s->meta_prealloc = r == 1;
        s->meta_prealloc_checked = true;
    }
    r = qcow2_get_host_offset(bs, off, &n, &host, &t, NULL);
    if (r < 0)
        return r;
    *pnum = n;
    if ((t == QCOW2_SC_NORMAL || t == QCOW2_SC_ZERO_ALLOC || t == QCOW2_SC_UNALLOC_ALLOC) &&
        !bs->encrypted) {
        *map = host;
        *file = s->data_file;
        st |= BLK_STATUS_OFFSET_VALID;
    }
    if (t == QCOW2_SC_ZERO_PLAIN || t == QCOW2_SC_ZERO_ALLOC)
        st |= BLK_STATUS_ZERO;
    else if (t != QCOW2_SC_UNALLOC_PLAIN && t != QCOW2_SC_UNALLOC_ALLOC)
        st |= BLK_STATUS_DATA;
    if (t == QCOW2_SC_COMPRESSED)
        st |= BLK_STATUS_COMPRESSED;
    if (s->meta_prealloc && (st & BLK_STATUS_DATA) && (st & BLK_STATUS_OFFSET_VALID))
        st |= BLK_STATUS_RECURSE;
    return st;
}

/* --- info --- */

static int qcow2_get_info(struct bds *bs, struct blk_info *bi)
{
    struct qcow2_state *s = qcow2_st(bs);
    bi->cluster_size = s->cluster_size;
    bi->is_dirty = s->incompat & QCOW2_INCOMPAT_DIRTY;
    bi->has_dirty_flag = true;
    return 0;
}

static json_t *qcow2_specific_info(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    json_t *o = json_object();
    (void)err;

    if (s->version == 2) {
        json_object_set_new(o, "compat", json_string("0.10"));
        json_object_set_new(o, "refcount-bits", json_integer(1LL << s->refcount_order));
    } else {
        json_object_set_new(o, "compat", json_string("1.1"));
        if (s->image_data_file)
            json_object_set_new(o, "data-file", json_string(s->image_data_file));
        if (qcow2_has_data_file(s))
            json_object_set_new(o, "data-file-raw",
                                json_boolean(s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW));
        json_object_set_new(o, "extended-l2", json_boolean(s->extl2));
        json_object_set_new(o, "lazy-refcounts", json_boolean(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS));
        json_object_set_new(o, "corrupt", json_boolean(s->incompat & QCOW2_INCOMPAT_CORRUPT));
        json_object_set_new(o, "refcount-bits", json_integer(1LL << s->refcount_order));
    }
    if (s->crypt)
        json_object_set_new(o, "encrypt", qcow2_crypt_info(bs));
    qcow2_bitmaps_info(bs, o);
    json_object_set_new(o, "compression-type",
                        json_string(s->compression_type == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib"));
    return o;
}

/* --- resize, backing, emptying --- */

/* resize --preallocation=falloc|full (qemu's qcow2_co_truncate): refcount
 * structures for the new clusters go after the last used cluster, the data
 * clusters after them in one run, the file is grown over that run with the
 * mode's allocation, then the L2 entries are filled in (subcluster bitmaps
 * untouched: preallocated, not written). */
static int grow_allocated(struct bds *bs, uint64_t old, uint64_t size, enum blk_prealloc mode,
                          struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    int64_t flen = blk_getlength(bs->file), last, start, got;
    uint64_t ofs, nb, nl2, host, guest;
    int r;

    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Failed to inquire current file length");
    last = qcow2_last_cluster(bs, (uint64_t)flen);
    ofs = last >= 0 ? ((uint64_t)last + 1) * cs : align_up_u64((uint64_t)flen, cs);
    nb = (align_up_u64(size, cs) - align_down_u64(old, cs)) >> s->cluster_bits;
    nl2 = div_round_up_u64(nb, s->l2_entries) + 1;
    start = qcow2_refcount_area(bs, ofs, nb + nl2, true, 0, 0);
    if (start < 0)
        return err_set_errno(err, (int)-start, "Failed to resize refcount structures");
    got = qcow2_alloc_clusters_at(bs, (uint64_t)start, nb);
    if (got < 0)
        return err_set_errno(err, (int)-got, "Failed to allocate data clusters");
    if ((uint64_t)got != nb) {
        qcow2_free_clusters(bs, (uint64_t)start, (uint64_t)got * cs, QCOW2_DISCARD_OTHER);
        return err_set(err, EIO, "Failed to allocate data clusters");
    }
    r = qcow2_meta_flush(bs);
    if (r == 0)
        r = blk_truncate(bs->file, (uint64_t)start + nb * cs, false, mode, err);
    if (r < 0) {
        err_prefix(err, "Failed to resize underlying file: ");
        qcow2_free_clusters(bs, (uint64_t)start, nb * cs, QCOW2_DISCARD_OTHER);
        return r;
    }
    host = (uint64_t)start;
    guest = align_down_u64(old, cs);
    while (nb) {
        uint64_t l2i = qcow2_l2_index(s, guest);
        uint64_t n = min_u64(nb, s->l2_entries - l2i);
        uint64_t freed[64];
        unsigned nf = 0;
        uint8_t *l2;

        r = qcow2_get_l2(bs, guest, true, &l2);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to update L2 tables");
        for (uint64_t i = 0; i < n; i++) {
            uint64_t e = qcow2_l2e_get(s, l2, l2i + i);
            if (e && nf < 64)
                freed[nf++] = e;
            qcow2_l2e_set(s, l2, l2i + i, (host + i * cs) | QCOW2_OFLAG_COPIED);
        }
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        if (nf) {
            r = qcow2_cache_flush(bs, &s->l2_cache);
            if (r < 0)
                return err_set_errno(err, -r, "Failed to update L2 tables");
            for (unsigned i = 0; i < nf; i++)
                qcow2_free_any_cluster(bs, freed[i], QCOW2_DISCARD_NEVER);
        }
        guest += n * cs;
        host += n * cs;
        nb -= n;
    }
    return 0;
}

int qcow2_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                   struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t old = bs->total_size;
    uint64_t new_l1 = qcow2_size_to_l1(s->cluster_bits, s->l2_bits, size);
    uint8_t be[8];
    int r;

    if (size % 512)
        return err_set(err, EINVAL, "The new size must be a multiple of 512");
    if (s->nb_snapshots && s->version < 3)
        return err_set(err, ENOTSUP, "Can't resize a v2 image which has snapshots");
    r = qcow2_bitmaps_truncate_check(bs, err);
    if (r < 0)
        return r;
    if (size < old) {
        if (prealloc != BLK_PREALLOC_OFF)
            return err_set(err, EINVAL, "Preallocation can't be used for shrinking an image");
        uint64_t from = align_up_u64(size, s->cluster_size);
        if (old > from) {
            r = qcow2_discard_clusters(bs, from, old - from, true, QCOW2_DISCARD_ALWAYS);
            if (r < 0)
                return err_set_errno(err, -r, "Failed to discard cropped clusters");
        }
        /* Drop L2 tables wholly past the end. */
        for (uint64_t i = new_l1; i < s->l1_size; i++) {
            uint64_t l2 = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
            if (!l2)
                continue;
            s->l1[i] = 0;
            r = qcow2_write_l1_entry(bs, i);
            if (r < 0)
                return err_set_errno(err, -r, "Failed to reduce the number of L2 tables");
            qcow2_cache_drop(&s->l2_cache, l2);
            qcow2_free_clusters(bs, l2, s->cluster_size, QCOW2_DISCARD_ALWAYS);
        }
        r = qcow2_meta_flush(bs);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to discard cropped clusters");
        int64_t flen = blk_getlength(bs->file);
        if (flen > 0) {
            int64_t last = qcow2_last_cluster(bs, (uint64_t)flen);
            if (last >= 0 && ((uint64_t)last + 1) * s->cluster_size < (uint64_t)flen) {
                struct err e2;
                err_init(&e2);
                /* qemu's file layer always cuts a regular file to the exact
                 * size asked; ours only does so when told exact. */
                blk_truncate(bs->file, ((uint64_t)last + 1) * s->cluster_size, true,
                             BLK_PREALLOC_OFF, &e2);
                if (err_is_set(&e2))
                    blk_message("%s: warning: Failed to truncate the tail of the image: %s",
                                blk_prog_name(), e2.msg);
            }
        }
    } else {
        r = qcow2_grow_l1(bs, new_l1, true);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to grow the L1 table");
        if ((s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && prealloc == BLK_PREALLOC_OFF)
            prealloc = BLK_PREALLOC_METADATA;
    }
    switch (prealloc) {
    case BLK_PREALLOC_OFF:
        if (qcow2_has_data_file(s)) {
            r = blk_truncate(s->data_file, size, exact, prealloc, err);
            if (r < 0)
                return r;
        }
        break;
    case BLK_PREALLOC_METADATA:
        if (size > old) {
            r = qcow2_preallocate(bs, old, size, prealloc, err);
            if (r < 0)
                return r;
        }
        break;
    case BLK_PREALLOC_FALLOC:
    case BLK_PREALLOC_FULL:
        if (size > old) {
            if (qcow2_has_data_file(s))
                r = qcow2_preallocate(bs, old, size, prealloc, err);
            else
                r = grow_allocated(bs, old, size, prealloc, err);
            if (r < 0)
                return r;
        }
        break;
    }
    if (prealloc != BLK_PREALLOC_OFF) {
        r = qcow2_meta_flush(bs);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to flush the preallocated area to disk");
    }
    bs->total_size = size;
    qcow2_bitmaps_resize(bs, size);
    put_be64(be, size);
    r = blk_pwrite(bs->file, QH_SIZE, 8, be, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to update the image size");
    return 0;
}

static int qcow2_truncate_op(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                             struct err *err)
{
    return qcow2_truncate(bs, size, exact, prealloc, err);
}

static int qcow2_change_backing(struct bds *bs, const char *file, const char *fmt, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    char *of = s->image_backing_file, *ofmt = s->image_backing_format;
    int r;

    if (file && (s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
        return err_set(err, EINVAL, "Could not change the backing file to '%s': Invalid argument", file);
    if (file && strlen(file) > QCOW2_MAX_BACKING_NAME)
        return err_set(err, EINVAL, "Could not change the backing file to '%s': Invalid argument", file);
    /* Crash order: what rebase copied from the old backing file must be
     * reachable (L2 and refcount caches written, and on disk) before the
     * header names another backing file, or a crash in between changes
     * what the image reads. */
    r = qcow2_flush(bs);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        return err_set_errno(err, -r, "Could not change the backing file to '%s'", file ? file : "");
    s->image_backing_file = file && file[0] ? strdup(file) : NULL;
    s->image_backing_format = fmt && fmt[0] && s->image_backing_file ? strdup(fmt) : NULL;
    r = qcow2_update_header(bs);
    if (r < 0) {
        free(s->image_backing_file);
        free(s->image_backing_format);
        s->image_backing_file = of;
        s->image_backing_format = ofmt;
        return err_set_errno(err, -r, "Could not change the backing file to '%s'", file ? file : "");
    }
    free(of);
    free(ofmt);
    free(bs->backing_file);
    free(bs->backing_format);
    bs->backing_file = s->image_backing_file ? strdup(s->image_backing_file) : NULL;
    bs->backing_format = s->image_backing_format ? strdup(s->image_backing_format) : NULL;
    return 0;
}

/* qemu's make_completely_empty: reset the file to header, refcount table,
 * one refcount block and a zeroed L1 table (clusters 0..3+), with the dirty
 * bit set while the refcounts are wrong, then cut the file there. */
static int make_completely_empty(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size, l1_bytes = (uint64_t)s->l1_size * 8;
    uint64_t l1_clusters = div_round_up_u64(l1_bytes, cs);
    uint64_t *nt = NULL;
    uint8_t be[20];
    int64_t a;
    int r;

    r = qcow2_meta_flush(bs);
    if (r < 0)
        goto fail;
    qcow2_cache_drop_all(&s->l2_cache);
    qcow2_cache_drop_all(&s->rb_cache);
    r = qcow2_mark_dirty(bs);
    if (r < 0)
        goto fail;
    nt = calloc(cs / 8, 8);
    if (!nt) {
        r = -ENOMEM;
        goto fail;
    }
    if (l1_clusters) {
        r = blk_pwrite_zeroes(bs->file, s->l1_offset, l1_clusters * cs, 0);
        if (r < 0)
            goto fail;
    }
    memset(s->l1, 0, l1_bytes);
    /* From here the refcounts on disk describe nothing (dirty bit set). */
    r = blk_pwrite_zeroes(bs->file, cs, (2 + l1_clusters) * cs, 0);
    if (r < 0)
        goto fail;
    put_be64(be, 3 * cs);
    put_be64(be + 8, cs);
    put_be32(be + 16, 1);
    r = blk_pwrite(bs->file, QH_L1_OFFSET, 20, be, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        goto fail;
    s->l1_offset = 3 * cs;
    free(s->reftable);
    s->reftable = nt;
    nt = NULL;
    s->reftable_offset = cs;
    s->reftable_size = s->reftable_loaded = cs / 8;
    put_be64(be, 2 * cs);
    r = blk_pwrite(bs->file, cs, 8, be, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        goto fail;
    s->reftable[0] = 2 * cs;
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    s->cbuf_entry = 0;
    a = qcow2_alloc_clusters(bs, 3 * cs + l1_bytes);
    if (a != 0) {
        r = a < 0 ? (int)a : -EIO;
        goto fail;
    }
    r = qcow2_mark_clean(bs);
    if (r < 0)
        goto fail;
    return blk_truncate(bs->file, (3 + l1_clusters) * cs, true, BLK_PREALLOC_OFF, err);

fail:
    free(nt);
    return err_set_errno(err, -r, "Could not empty the image");
}

static int qcow2_make_empty(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t step = s->cluster_size * s->l2_entries;
    int r = 0;

    /* qemu's conditions: nothing else may own clusters (snapshots,
     * bitmaps, a LUKS header), the file holds the data, and the first
     * refcount block covers header, table, itself and the L1 table. */
    if (s->version >= 3 && !s->nb_snapshots && !s->nb_bitmaps &&
        s->crypt_method != QCOW2_CRYPT_LUKS && !qcow2_has_data_file(s) &&
        3 + div_round_up_u64((uint64_t)s->l1_size * 8, s->cluster_size) <= (1ULL << s->rb_bits))
        return make_completely_empty(bs, err);

    /* Otherwise every active cluster is discarded (slow but general). */
    s->cache_discards = true;
    for (uint64_t off = 0; off < bs->total_size; off += step) {
        uint64_t n = min_u64(step, bs->total_size - off);
        r = qcow2_discard_clusters(bs, off, n, true, QCOW2_DISCARD_SNAPSHOT);
        if (r < 0)
            break;
    }
    s->cache_discards = false;
    qcow2_process_discards(bs, r);
    if (r == 0)
        r = qcow2_meta_flush(bs);
    if (r < 0)
        return err_set_errno(err, -r, "Could not empty the image");
    return 0;
}

/* qemu-img 7.2 reports the qcow2 file's allocation only, without the
 * external data file's (checked against the real tool). */
static int64_t qcow2_get_allocated_size(struct bds *bs)
{
    return blk_get_allocated_size(bs->file);
}

static bool qcow2_has_zero_init(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    /* qemu: an encrypted image reads zeros where nothing is allocated, but
     * a preallocated one (first L2 table present) holds undeciphered zeros. */
    if (bs->encrypted)
        return !(s->l1_size > 0 && s->l1[0]);
    if (s->data_file && s->data_file != bs->file)
        return blk_has_zero_init(s->data_file);
    return true;
}

const struct blk_driver qcow2_driver = {
    .name = "qcow2",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct qcow2_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .supports_backing = true,
    .supports_compressed_writes = true,
    .create_opts = qcow2_create_opts,
    .amend_opts = qcow2_amend_opts,
    .amend = qcow2_amend,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .create = qcow2_create,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .pwrite_map = qcow2_pwrite_map,
    .pwrite_commit = qcow2_pwrite_commit,
    .compress = qcow2_compress_op,
    .pwrite_compressed = qcow2_pwrite_compressed_op,
    .discard = qcow2_discard,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .get_allocated_size = qcow2_get_allocated_size,
    .has_zero_init = qcow2_has_zero_init,
    .truncate = qcow2_truncate_op,
    .get_info = qcow2_get_info,
    .specific_info = qcow2_specific_info,
    .check = qcow2_check,
    .measure = qcow2_measure,
    .change_backing = qcow2_change_backing,
    .make_empty = qcow2_make_empty,
    .snapshot = &qcow2_snapshot_ops,
    .bitmap = &qcow2_bitmap_ops,
};
