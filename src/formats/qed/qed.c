/* QED driver: probe, open (header validation in qemu's order and wording),
 * close, reads, allocating writes, zero writes, block status, create,
 * grow-only resize, info and backing changes (qed_spec.txt "Header",
 * "Unallocated L2 tables and data clusters", "Zero data clusters").
 *
 * Allocation appends at file_size: first the data clusters of a write, then
 * (when the L1 entry was empty) the new L2 table, as qemu orders them, so
 * the same writes give the same file. Without a backing file the NEED_CHECK
 * bit is set before the first allocating write and cleared on close. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qed/qed.h"

#define QED_MAX_BACKING_NAME 4095      /* qemu's backing_file buffer less the NUL */

static int qed_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    if (len < QED_HEADER_LEN || get_le32(head + QEDH_MAGIC) != QED_MAGIC)
        return 0;
    return 100;
}

static bool cluster_size_valid(uint64_t cs)
{
    return cs >= QED_MIN_CLUSTER_SIZE && cs <= QED_MAX_CLUSTER_SIZE && is_pow2_u64(cs);
}

static bool table_size_valid(uint64_t ts)
{
    return ts >= QED_MIN_TABLE_SIZE && ts <= QED_MAX_TABLE_SIZE && is_pow2_u64(ts);
}

/* qemu computes this in 64-bit arithmetic that wraps for the largest
 * geometries (the limit then reads as 0 or less than it should); unsigned
 * wrap-around is defined, and reproducing it keeps qemu's answers. */
static uint64_t max_image_size(uint32_t cs, uint32_t ts)
{
    uint64_t entries = ((uint64_t)ts * cs) / 8;
    uint64_t l2_size = entries * cs;
    return l2_size * entries;
}

static bool image_size_valid(uint64_t size, uint32_t cs, uint32_t ts)
{
    return size % 512 == 0 && size <= max_image_size(cs, ts);
}

static void header_decode(const uint8_t *b, struct qed_header *h)
{
    h->magic = get_le32(b + QEDH_MAGIC);
    h->cluster_size = get_le32(b + QEDH_CLUSTER_SIZE);
    h->table_size = get_le32(b + QEDH_TABLE_SIZE);
    h->header_size = get_le32(b + QEDH_HEADER_SIZE);
    h->features = get_le64(b + QEDH_FEATURES);
    h->compat_features = get_le64(b + QEDH_COMPAT_FEATURES);
    h->autoclear_features = get_le64(b + QEDH_AUTOCLEAR_FEATURES);
    h->l1_table_offset = get_le64(b + QEDH_L1_TABLE_OFFSET);
    h->image_size = get_le64(b + QEDH_IMAGE_SIZE);
    h->backing_name_offset = get_le32(b + QEDH_BACKING_NAME_OFFSET);
    h->backing_name_size = get_le32(b + QEDH_BACKING_NAME_SIZE);
}

static void qed_free_state(struct qed_state *s)
{
    qed_cache_clear(s);
    free(s->l1);
    s->l1 = NULL;
}

static int read_backing_name(struct bds *bs, struct err *err)
{
    struct qed_state *s = qed_st(bs);
    uint64_t end = (uint64_t)s->h.backing_name_offset + s->h.backing_name_size;
    char *name;
    int r;

    if (end > (uint64_t)s->h.cluster_size * s->h.header_size)
        return err_set(err, EINVAL, "QED backing filename offset is invalid");
    if (s->h.backing_name_size > QED_MAX_BACKING_NAME)
        return err_set(err, EINVAL, "Failed to read backing filename");
    name = malloc((size_t)s->h.backing_name_size + 1);
    if (!name)
        return err_set(err, ENOMEM, "Failed to read backing filename");
    r = blk_pread(bs->file, s->h.backing_name_offset, s->h.backing_name_size, name);
    if (r < 0) {
        free(name);
        return err_set(err, -r, "Failed to read backing filename");
    }
    name[s->h.backing_name_size] = '\0';
    free(bs->backing_file);
    bs->backing_file = name;
    if (s->h.features & QED_F_BACKING_FORMAT_NO_PROBE) {
        free(bs->backing_format);
        bs->backing_format = strdup("raw");
        if (!bs->backing_format)
            return err_set(err, ENOMEM, "Failed to read backing filename");
    }
    return 0;
}

static int qed_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct qed_state *s = qed_st(bs);
    uint8_t buf[QED_HEADER_LEN];
    int64_t flen;
    int r;

    (void)opts;
    r = blk_pread(bs->file, 0, sizeof(buf), buf);
    if (r < 0)
        return err_set(err, -r, "Failed to read QED header");
    header_decode(buf, &s->h);
    if (s->h.magic != QED_MAGIC)
        return err_set(err, EINVAL, "Image not in QED format");
    if (s->h.features & ~(uint64_t)QED_FEATURE_MASK)
        return err_set(err, ENOTSUP, "Unsupported QED features: %llx",
                       (unsigned long long)(s->h.features & ~(uint64_t)QED_FEATURE_MASK));
    if (!cluster_size_valid(s->h.cluster_size))
        return err_set(err, EINVAL, "QED cluster size is invalid");
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return err_set(err, (int)-flen, "Failed to get file length");
    s->file_size = qed_start_of_cluster(s, (uint64_t)flen);
    if (!table_size_valid(s->h.table_size))
        return err_set(err, EINVAL, "QED table size is invalid");
    if (!image_size_valid(s->h.image_size, s->h.cluster_size, s->h.table_size))
        return err_set(err, EINVAL, "QED image size is invalid");
    if (!qed_check_table_offset(s, s->h.l1_table_offset))
        return err_set(err, EINVAL, "QED table offset is invalid");

    s->table_nelems = (uint32_t)(qed_table_bytes(s) / 8);
    s->l2_shift = (unsigned)__builtin_ctz(s->h.cluster_size);
    s->l2_mask = s->table_nelems - 1;
    s->l1_shift = s->l2_shift + (unsigned)__builtin_ctz(s->table_nelems);

    if (s->h.header_size > UINT32_MAX / s->h.cluster_size)
        return err_set(err, EINVAL, "QED header size is too large");
    if ((s->h.features & QED_F_BACKING_FILE) && (r = read_backing_name(bs, err)) < 0)
        return r;

    s->writable = (flags & BLK_O_RDWR) != 0;
    if ((s->h.autoclear_features & ~(uint64_t)QED_AUTOCLEAR_FEATURE_MASK) && s->writable) {
        s->h.autoclear_features &= QED_AUTOCLEAR_FEATURE_MASK;
        if ((r = qed_write_header(bs)) < 0)
            return err_set(err, -r, "Failed to update header");
        blk_flush(bs->file);
    }

    /* The L1 table lies inside the file (checked above), so its size is
     * bounded by the file. */
    s->l1 = malloc((size_t)qed_table_bytes(s));
    if (!s->l1)
        return err_set(err, ENOMEM, "Failed to read L1 table");
    if ((r = qed_read_l1(bs)) < 0) {
        err_set(err, -r, "Failed to read L1 table");
        goto fail;
    }

    /* An image not closed cleanly is checked (and repaired) before writing. */
    if (!(flags & BLK_O_CHECK) && (s->h.features & QED_F_NEED_CHECK) && s->writable) {
        struct blk_check_result res;
        memset(&res, 0, sizeof(res));
        if ((r = qed_check_image(bs, &res, true)) < 0) {
            err_set(err, -r, "Image corrupted");
            goto fail;
        }
    }
    /* qemu arms a timer that clears NEED_CHECK once writes settle, and the
     * first drain after open fires it: the bit is then gone from memory
     * (info shows a clean image) and, when writable, from the file. */
    if (s->h.features & QED_F_NEED_CHECK) {
        s->h.features &= ~(uint64_t)QED_F_NEED_CHECK;
        if (s->writable) {
            blk_flush(bs->file);
            qed_write_header(bs);
        }
    }
    bs->total_size = s->h.image_size;
    bs->request_alignment = 512;
    return 0;

fail:
    qed_free_state(s);
    return r;
}

static void qed_close(struct bds *bs)
{
    struct qed_state *s = qed_st(bs);

    if (s->writable) {
        blk_flush(bs->file);
        if (s->h.features & QED_F_NEED_CHECK) {
            s->h.features &= ~(uint64_t)QED_F_NEED_CHECK;
            qed_write_header(bs);
        }
    }
    qed_free_state(s);
}

/* A read-only node's reads run without the node lock
 * (BLK_THREAD_READS_UNLOCKED_RO): the lock is taken here only around the
 * cluster lookup (the L2 cache); data reads run on every worker at once. */
static int qed_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct qed_state *s = qed_st(bs);
    uint8_t *p = buf;

    while (len) {
        uint64_t n = len, host;
        blk_pread_lock(bs);
        int k = qed_find_cluster(bs, off, &n, &host);
        blk_pread_unlock(bs);
        int r;

        if (k < 0)
            return k;
        if (k == QED_FOUND)
            r = blk_pread(bs->file, host + qed_offset_into_cluster(s, off), n, p);
        else if (k == QED_ZERO)
            r = (memset(p, 0, (size_t)n), 0);
        else
            r = blk_read_backing(bs, off, n, p);
        if (r < 0)
            return r;
        off += n;
        len -= n;
        p += n;
    }
    return 0;
}

/* Fill [file_off, file_off + len) of a new cluster with the backing view of
 * guest [pos, pos + len): zeros when there is no backing file. */
static int copy_from_backing(struct bds *bs, uint64_t pos, uint64_t len, uint64_t file_off)
{
    uint8_t *tmp;
    int r;

    if (!len)
        return 0;
    tmp = malloc((size_t)len);
    if (!tmp)
        return -ENOMEM;
    r = blk_read_backing(bs, pos, len, tmp);
    if (r == 0)
        r = blk_pwrite(bs->file, file_off, len, tmp, 0);
    free(tmp);
    return r;
}

static int set_need_check(struct bds *bs)
{
    struct qed_state *s = qed_st(bs);

    /* With a backing file the flush before each L2 update keeps the image
     * consistent, so qemu does not mark it. */
    if (bs->backing || (s->h.features & QED_F_NEED_CHECK))
        return 0;
    s->h.features |= QED_F_NEED_CHECK;
    return qed_write_header(bs);
}

/* Point the L2 entries of [pos, pos + n clusters) at cluster (a file
 * offset, advancing per cluster, or the zero marker), allocating the L2
 * table when the L1 entry is empty. */
static int update_l2(struct bds *bs, int kind, uint64_t pos, uint32_t n, uint64_t cluster)
{
    struct qed_state *s = qed_st(bs);
    uint32_t l1i = qed_l1_index(s, pos), index = qed_l2_index(s, pos);
    uint64_t l2_off, *table;
    int r;

    if (kind == QED_NO_L1_ENTRY) {
        l2_off = s->file_size;
        s->file_size += qed_table_bytes(s);
        table = qed_new_l2(bs, l2_off);
        if (!table)
            return -ENOMEM;
    } else {
        l2_off = s->l1[l1i];
        table = qed_get_l2(bs, l2_off, &r);
        if (!table)
            return r;
    }
    for (uint32_t i = index; i < index + n && i < s->table_nelems; i++) {
        table[i] = cluster;
        if (cluster != QED_OFF_ZERO)
            cluster += s->h.cluster_size;
    }
    if (kind != QED_NO_L1_ENTRY)
        return qed_write_l2(bs, l2_off, table, index, n);
    if ((r = qed_write_l2(bs, l2_off, table, 0, s->table_nelems)) < 0)
        return r;
    s->l1[l1i] = l2_off;
    return qed_write_l1(bs, l1i, 1);
}

/* A write to clusters that are unallocated or zero: new clusters (or zero
 * markers when buf is NULL) and the L2 update. */
static int write_alloc(struct bds *bs, int kind, uint64_t pos, uint64_t len, const uint8_t *buf)
{
    struct qed_state *s = qed_st(bs);
    uint64_t oic = qed_offset_into_cluster(s, pos);
    uint64_t nclusters = div_round_up_u64(oic + len, s->h.cluster_size);
    uint64_t cluster = QED_OFF_ZERO;
    int r;

    if (!buf && kind == QED_ZERO)
        return 0;
    if (buf) {
        cluster = s->file_size;
        s->file_size += nclusters * s->h.cluster_size;
    }
    if ((r = set_need_check(bs)) < 0)
        return r;
    if (buf) {
        uint64_t start = qed_start_of_cluster(s, pos);
        uint64_t tail = pos + len;
        uint64_t tail_len = nclusters * s->h.cluster_size - oic - len;

        /* The spec fills a former zero cluster with zeros, not backing data. */
        if (kind == QED_ZERO) {
            uint8_t *z = calloc(1, (size_t)max_u64(oic, tail_len) + 1);
            if (!z)
                return -ENOMEM;
            r = oic ? blk_pwrite(bs->file, cluster, oic, z, 0) : 0;
            if (r == 0 && tail_len)
                r = blk_pwrite(bs->file, cluster + oic + len, tail_len, z, 0);
            free(z);
        } else {
            r = copy_from_backing(bs, start, oic, cluster);
            if (r == 0)
                r = copy_from_backing(bs, tail, tail_len, cluster + oic + len);
        }
        if (r == 0)
            r = blk_pwrite(bs->file, cluster + oic, len, buf, 0);
        if (r == 0 && bs->backing)
            r = blk_flush(bs->file);
        if (r < 0)
            return r;
    }
    return update_l2(bs, kind, pos, (uint32_t)nclusters, cluster);
}

static int qed_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct qed_state *s = qed_st(bs);
    const uint8_t *p = buf;

    (void)flags;
    while (len) {
        uint64_t n = len, host;
        int k = qed_find_cluster(bs, off, &n, &host);
        int r;

        if (k < 0)
            return k;
        if (k == QED_FOUND)
            r = blk_pwrite(bs->file, host + qed_offset_into_cluster(s, off), n, p, 0);
        else
            r = write_alloc(bs, k, off, n, p);
        if (r < 0)
            return r;
        off += n;
        len -= n;
        p += n;
    }
    return 0;
}

static int write_zero_buffer(struct bds *bs, uint64_t off, uint64_t len)
{
    uint64_t chunk = min_u64(len, 1 << 20);
    uint8_t *z = calloc(1, (size_t)chunk);
    int r = 0;

    if (!z)
        return -ENOMEM;
    while (len && r == 0) {
        uint64_t n = min_u64(len, chunk);
        r = qed_pwrite(bs, off, n, z, 0);
        off += n;
        len -= n;
    }
    free(z);
    return r;
}

/* Whole clusters become zero clusters (allocated ones are overwritten in
 * place); an unaligned head or tail is written as data, as qemu's generic
 * layer does around a driver that only zeroes whole clusters. */
static int qed_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    struct qed_state *s = qed_st(bs);
    uint64_t cs = s->h.cluster_size;
    uint64_t head = qed_offset_into_cluster(s, off);
    int r;

    (void)flags;
    if (head) {
        uint64_t n = min_u64(len, cs - head);
        if ((r = write_zero_buffer(bs, off, n)) < 0)
            return r;
        off += n;
        len -= n;
    }
    uint64_t mid = align_down_u64(len, cs);
    while (mid) {
        uint64_t n = mid, host;
        int k = qed_find_cluster(bs, off, &n, &host);
        if (k < 0)
            return k;
        if (k == QED_FOUND)
            r = write_zero_buffer(bs, off, n);
        else
            r = write_alloc(bs, k, off, n, NULL);
        if (r < 0)
            return r;
        off += n;
        len -= n;
        mid -= n;
    }
    return len ? write_zero_buffer(bs, off, len) : 0;
}

static int qed_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    struct qed_state *s = qed_st(bs);
    uint64_t n = len, host;
    int k = qed_find_cluster(bs, off, &n, &host);

    if (k < 0)
        return k;
    *pnum = n;
    switch (k) {
    case QED_FOUND:
        *map = host + qed_offset_into_cluster(s, off);
        *file = bs->file;
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID;
    case QED_ZERO:
        return BLK_STATUS_ZERO;
    default:
        return 0;
    }
}

static int qed_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                        struct err *err)
{
    struct qed_state *s = qed_st(bs);
    uint64_t old = s->h.image_size;
    int r;

    (void)exact;
    if (prealloc != BLK_PREALLOC_OFF)
        return err_set(err, ENOTSUP, "Unsupported preallocation mode '%s'",
                       blk_prealloc_name(prealloc));
    if (!image_size_valid(size, s->h.cluster_size, s->h.table_size))
        return err_set(err, EINVAL, "Invalid image size specified");
    if (size < s->h.image_size)
        return err_set(err, ENOTSUP, "Shrinking images is currently not supported");
    s->h.image_size = size;
    if ((r = qed_write_header(bs)) < 0) {
        s->h.image_size = old;
        return err_set_errno(err, -r, "Failed to update the image size");
    }
    bs->total_size = size;
    return 0;
}

static int qed_get_info(struct bds *bs, struct blk_info *bi)
{
    struct qed_state *s = qed_st(bs);
    bi->cluster_size = s->h.cluster_size;
    bi->is_dirty = (s->h.features & QED_F_NEED_CHECK) != 0;
    return 0;
}

static int qed_change_backing(struct bds *bs, const char *file, const char *fmt, struct err *err)
{
    struct qed_state *s = qed_st(bs);
    struct qed_header nh = s->h;
    size_t name_len = file ? strlen(file) : 0;
    uint8_t *buf;
    int r;

    /* With unknown compat features the bytes after the header may be in
     * use, so no new string is written there. */
    if (file && (s->h.compat_features & ~(uint64_t)QED_COMPAT_FEATURE_MASK))
        return err_set(err, ENOTSUP, "Could not change the backing file to '%s': %s", file,
                       strerror(ENOTSUP));
    nh.features &= ~(uint64_t)(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    if (file) {
        nh.features |= QED_F_BACKING_FILE;
        if (fmt && !strcmp(fmt, "raw"))
            nh.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    nh.backing_name_offset = QED_HEADER_LEN;
    nh.backing_name_size = (uint32_t)name_len;
    if (name_len > (uint64_t)nh.header_size * nh.cluster_size - QED_HEADER_LEN ||
        name_len > QED_MAX_BACKING_NAME)
        return err_set(err, ENOSPC, "Could not change the backing file to '%s': %s",
                       file ? file : "", strerror(ENOSPC));
    buf = malloc(QED_HEADER_LEN + name_len);
    if (!buf)
        return err_set(err, ENOMEM, "Could not change the backing file to '%s': %s",
                       file ? file : "", strerror(ENOMEM));
    qed_header_encode(&nh, buf);
    if (name_len)
        memcpy(buf + QED_HEADER_LEN, file, name_len);
    r = blk_pwrite(bs->file, 0, QED_HEADER_LEN + name_len, buf, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    free(buf);
    if (r < 0)
        return err_set(err, -r, "Could not change the backing file to '%s': %s",
                       file ? file : "", strerror(-r));
    s->h = nh;
    free(bs->backing_file);
    free(bs->backing_format);
    bs->backing_file = file && file[0] ? strdup(file) : NULL;
    bs->backing_format = NULL;
    if (bs->backing_file && fmt && fmt[0])
        bs->backing_format = strdup(fmt);
    return 0;
}

static int qed_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    (void)err;
    return qed_check_image(bs, res, fix != 0);
}

static bool qed_has_zero_init(struct bds *bs)
{
    (void)bs;
    return true;
}

static int qed_create(const char *filename, struct kvopts *opts, struct err *err)
{
    uint64_t size, cs, ts;
    const char *backing = kvopts_get(opts, "backing_file");
    const char *bfmt = kvopts_get(opts, "backing_fmt");
    struct qed_header h;
    uint8_t hdr[QED_HEADER_LEN];
    struct bds *proto = NULL;
    uint8_t *l1 = NULL;
    int r;

    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0 ||
        (r = kvopts_get_size(opts, "cluster_size", QED_DEFAULT_CLUSTER_SIZE, &cs, err)) < 0 ||
        (r = kvopts_get_size(opts, "table_size", QED_DEFAULT_TABLE_SIZE, &ts, err)) < 0)
        return r;
    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    if (bfmt && !blk_find_format(bfmt))
        return err_set(err, EINVAL, "Parameter 'backing-fmt' does not accept value '%s'", bfmt);
    if (size > UINT64_MAX - 511)
        return err_set(err, EINVAL, "Image size too large");
    size = align_up_u64(size, 512);
    if (!cluster_size_valid(cs))
        return err_set(err, EINVAL, "QED cluster size must be within range [%u, %u] and power of 2",
                       QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
    if (!table_size_valid(ts))
        return err_set(err, EINVAL, "QED table size must be within range [%u, %u] and power of 2",
                       QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
    if (!image_size_valid(size, (uint32_t)cs, (uint32_t)ts))
        return err_set(err, EINVAL, "QED image size must be a non-zero multiple of cluster size "
                       "and less than %llu bytes",
                       (unsigned long long)max_image_size((uint32_t)cs, (uint32_t)ts));

    memset(&h, 0, sizeof(h));
    h.magic = QED_MAGIC;
    h.cluster_size = (uint32_t)cs;
    h.table_size = (uint32_t)ts;
    h.header_size = 1;
    h.l1_table_offset = cs;
    h.image_size = size;
    if (backing) {
        h.features |= QED_F_BACKING_FILE;
        h.backing_name_offset = QED_HEADER_LEN;
        h.backing_name_size = (uint32_t)strlen(backing);
        if (bfmt && !strcmp(bfmt, "raw"))
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    qed_header_encode(&h, hdr);

    proto = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!proto)
        return -EIO;
    /* The file length says what is allocated: start from an empty file. */
    if ((r = blk_truncate(proto, 0, true, BLK_PREALLOC_OFF, err)) < 0)
        goto out;
    if ((r = blk_pwrite(proto, 0, sizeof(hdr), hdr, 0)) < 0)
        goto io_error;
    if (backing && (r = blk_pwrite(proto, QED_HEADER_LEN, h.backing_name_size, backing, 0)) < 0)
        goto io_error;
    l1 = calloc(1, (size_t)(cs * ts));
    if (!l1) {
        r = err_set(err, ENOMEM, "Could not allocate the L1 table");
        goto out;
    }
    if ((r = blk_pwrite(proto, h.l1_table_offset, cs * ts, l1, 0)) < 0)
        goto io_error;
    /* As qemu, which flushes at close and drops the error: a failing
     * flush does not fail the create. */
    blk_flush(proto);
    goto out;
io_error:
    err_set_errno(err, -r, "Could not write the QED image");
out:
    free(l1);
    blk_close(proto);
    return r;
}

static const struct opt_desc qed_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "backing_file", OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", OPT_STRING, "Image format of the base image", NULL },
    { "cluster_size", OPT_SIZE, "Cluster size (in bytes)", "65536" },
    { "table_size", OPT_SIZE, "L1/L2 table size (in clusters)", NULL },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver qed_driver = {
    .name = "qed",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct qed_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .supports_backing = true,
    .create_opts = qed_create_opts,
    .probe = qed_probe,
    .open = qed_open,
    .close = qed_close,
    .create = qed_create,
    .pread = qed_pread,
    .pwrite = qed_pwrite,
    .pwrite_zeroes = qed_pwrite_zeroes,
    .block_status = qed_block_status,
    .truncate = qed_truncate,
    .get_info = qed_get_info,
    .check = qed_check,
    .change_backing = qed_change_backing,
    .has_zero_init = qed_has_zero_init,
};
