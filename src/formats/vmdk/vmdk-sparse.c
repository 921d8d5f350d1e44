/* VMDK hosted sparse extents — VMware "Virtual Disk Format 1.1", "Hosted
 * Sparse Extents" (header, grain directory, grain tables, redundant grain
 * directory, zeroed-grain GTEs), the footer of stream-optimized extents
 * ("Stream-Optimized Compressed Sparse Extents": the footer overrides the
 * header when gdOffset is GD_AT_END), and the legacy ESX "COWD" sparse
 * header, which shares the two-level lookup.
 *
 * Invariants: every header field is decoded from bytes and checked before it
 * sizes anything; the grain directory (and its redundant copy) is read whole
 * at open (at most 128 MiB, qemu's limit, and no larger than the file);
 * grain tables are read on demand into a 16-slot cache in host order. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vmdk/vmdk.h"

/* VMDK4 header fields, offsets from the start of the extent file. */
#define H4_VERSION      4
#define H4_FLAGS        8
#define H4_CAPACITY     12
#define H4_GRANULARITY  20
#define H4_DESC_OFFSET  28
#define H4_DESC_SIZE    36
#define H4_NUM_GTES     44
#define H4_RGD_OFFSET   48
#define H4_GD_OFFSET    56
#define H4_GRAIN_OFFSET 64
#define H4_COMPRESS     77

/* VMDK3 ("COWD") header fields. */
#define H3_DISK_SECTORS 12
#define H3_GRANULARITY  16
#define H3_L1DIR_OFFSET 20
#define H3_L1DIR_SIZE   24

static uint64_t file_sectors(struct bds *file)
{
    int64_t len = blk_getlength(file);
    if (len < 0)
        return 0;
    return div_round_up_u64((uint64_t)len, VMDK_SECTOR);
}

void vmdk_extent_release(struct vmdk_extent *e)
{
    free(e->l1_table);
    free(e->l1_backup_table);
    free(e->l2_cache);
    free(e->se_l1);
    free(e->se_l2);
    free(e->type);
    if (e->own_file && e->file)
        blk_close(e->file);
    memset(e, 0, sizeof(*e));
}

int vmdk_add_extent(struct bds *bs, struct bds *file, bool own, bool flat, uint64_t sectors,
                    uint64_t l1_offset, uint64_t l1_backup_offset, uint64_t l1_size,
                    uint64_t l2_size, uint64_t cluster_sectors, struct vmdk_extent **out,
                    struct err *err)
{
    struct vmdk_state *s = bs->opaque;
    struct vmdk_extent *e, *n;
    uint64_t start, end, bytes;

    if (cluster_sectors > VMDK_MAX_GRAIN_SECTORS)
        return err_set(err, EFBIG, "Invalid granularity, image may be corrupt");
    if (l1_size > VMDK_MAX_L1_SIZE)
        return err_set(err, EFBIG, "L1 size too big");
    if (l2_size > 4096)
        return err_set(err, EINVAL, "L2 table size too big");
    if (s->num_extents >= VMDK_MAX_EXTENTS)
        return err_set(err, EINVAL, "Too many extents (more than %d)", VMDK_MAX_EXTENTS);
    start = s->num_extents ? s->extents[s->num_extents - 1].end_sector : 0;
    if (ckd_add(&end, start, sectors) || ckd_mul(&bytes, end, VMDK_SECTOR) ||
        bytes > (uint64_t)INT64_MAX - VMDK_SECTOR)
        return err_set_errno(err, EFBIG, "Could not refresh total sector count");

    n = realloc(s->extents, (size_t)(s->num_extents + 1) * sizeof(*n));
    if (!n)
        return err_set(err, ENOMEM, "Could not allocate the extent table");
    s->extents = n;
    e = &s->extents[s->num_extents++];
    memset(e, 0, sizeof(*e));
    e->file = file;
    e->own_file = own;
    e->flat = flat;
    e->sectors = sectors;
    e->end_sector = end;
    e->l1_table_offset = l1_offset;
    e->l1_backup_table_offset = l1_backup_offset;
    e->l1_size = (uint32_t)l1_size;
    e->l1_entry_sectors = l2_size * cluster_sectors;
    e->l2_size = (uint32_t)l2_size;
    e->cluster_sectors = flat ? sectors : cluster_sectors;
    if (!flat && cluster_sectors)
        e->next_cluster_sector = div_round_up_u64(file_sectors(file), cluster_sectors) *
                                 cluster_sectors;
    bs->total_size = bytes;
    if (out)
        *out = e;
    return 0;
}

/* Drop the last extent without closing its file (the caller owns it still). */
static void drop_last_extent(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    struct vmdk_extent *e = &s->extents[s->num_extents - 1];
    e->own_file = false;
    vmdk_extent_release(e);
    s->num_extents--;
}

static int read_dir(struct vmdk_extent *e, uint64_t offset, uint32_t **out, const char *what,
                    struct err *err)
{
    uint64_t bytes = (uint64_t)e->l1_size * 4;
    int64_t flen = blk_getlength(e->file);
    uint8_t *raw;
    uint32_t *t;
    int r;

    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Could not read %s from extent '%s'", what,
                             e->file->filename);
    /* qemu reads a table past the end of the file as zeros; only one
     * larger than the file (plus slack) is refused, so that a tiny hostile
     * file cannot make us allocate qemu's up to 128 MiB. An offset past
     * qemu's request limit fails in blk_pread with EIO as in qemu. */
    if (bytes > (uint64_t)flen + VMDK_SECTOR * 4096)
        return err_set(err, EINVAL, "Could not read %s from extent '%s': "
                       "table lies beyond the end of the file", what, e->file->filename);
    raw = malloc(bytes ? bytes : 1);
    t = calloc(e->l1_size ? e->l1_size : 1, sizeof(*t));
    if (!raw || !t) {
        free(raw);
        free(t);
        return err_set(err, ENOMEM, "Could not allocate the %s", what);
    }
    r = bytes ? blk_pread(e->file, offset, bytes, raw) : 0;
    if (r < 0) {
        free(raw);
        free(t);
        return err_set_errno(err, -r, "Could not read %s from extent '%s'", what,
                             e->file->filename);
    }
    for (uint32_t i = 0; i < e->l1_size; i++)
        t[i] = get_le32(raw + (size_t)i * 4);
    free(raw);
    *out = t;
    return 0;
}

static int init_tables(struct vmdk_extent *e, struct err *err)
{
    int r = read_dir(e, e->l1_table_offset, &e->l1_table, "l1 table", err);
    if (r < 0)
        return r;
    if (e->l1_backup_table_offset) {
        r = read_dir(e, e->l1_backup_table_offset, &e->l1_backup_table, "l1 backup table", err);
        if (r < 0)
            goto fail_l1;
    }
    e->l2_cache = calloc((size_t)e->l2_size * VMDK_L2_CACHE_SIZE + 1, sizeof(uint32_t));
    if (!e->l2_cache) {
        r = err_set(err, ENOMEM, "Could not allocate the grain table cache");
        goto fail_l1b;
    }
    return 0;
fail_l1b:
    free(e->l1_backup_table);
    e->l1_backup_table = NULL;
fail_l1:
    free(e->l1_table);
    e->l1_table = NULL;
    return r;
}

static int open_vmdk3(struct bds *bs, struct bds *file, bool own, struct err *err)
{
    uint8_t h[512];
    struct vmdk_extent *e;
    int r = blk_pread(file, 0, sizeof(h), h);
    if (r < 0)
        return err_set_errno(err, -r, "Could not read header from file '%s'", file->filename);
    uint64_t granularity = get_le32(h + H3_GRANULARITY);
    uint64_t l1_size = get_le32(h + H3_L1DIR_SIZE);
    r = vmdk_add_extent(bs, file, own, false, get_le32(h + H3_DISK_SECTORS),
                        (uint64_t)get_le32(h + H3_L1DIR_OFFSET) << 9, 0, l1_size, 4096,
                        granularity, &e, err);
    if (r < 0)
        return r;
    if (!e->l1_entry_sectors) {
        drop_last_extent(bs);
        return err_set(err, EINVAL, "L1 entry size is invalid");
    }
    r = init_tables(e, err);
    if (r < 0)
        drop_last_extent(bs);
    return r;
}

static int open_vmdk4(struct bds *bs, struct bds *file, bool own, int flags, int depth,
                      struct err *err)
{
    struct vmdk_state *s = bs->opaque;
    uint8_t h[512];
    struct vmdk_extent *e;
    int r = blk_pread(file, 0, sizeof(h), h);

    if (r < 0) {
        err_set_errno(err, -r, "Could not read header from file '%s'", file->filename);
        return -EINVAL;
    }
    if (get_le64(h + H4_CAPACITY) == 0) {
        uint64_t desc_offset = get_le64(h + H4_DESC_OFFSET);
        if (desc_offset) {
            if (depth > 0 || desc_offset > (UINT64_MAX >> 9))
                return err_set(err, EINVAL, "invalid VMDK image descriptor");
            char *buf = vmdk_read_desc(file, desc_offset << 9, err);
            if (!buf)
                return -EINVAL;
            r = vmdk_open_desc_file(bs, flags, buf, depth + 1, err);
            free(buf);
            return r;
        }
    }
    if (!s->create_type && !(s->create_type = strdup("monolithicSparse")))
        return -ENOMEM;

    if (get_le64(h + H4_GD_OFFSET) == VMDK4_GD_AT_END) {
        r = vmdk_read_footer(file, h, err);
        if (r < 0)
            return r;
    }
    uint32_t version = get_le32(h + H4_VERSION);
    uint32_t hflags = get_le32(h + H4_FLAGS);
    uint64_t capacity = get_le64(h + H4_CAPACITY);
    uint64_t granularity = get_le64(h + H4_GRANULARITY);
    uint32_t num_gtes = get_le32(h + H4_NUM_GTES);
    uint64_t rgd_offset = get_le64(h + H4_RGD_OFFSET);
    uint64_t gd_offset = get_le64(h + H4_GD_OFFSET);
    uint64_t grain_offset = get_le64(h + H4_GRAIN_OFFSET);
    bool compressed = get_le16(h + H4_COMPRESS) == VMDK4_COMPRESSION_DEFLATE;
    uint64_t l1_size, l1_backup = 0;
    uint32_t l1_entry_sectors;

    if (version > 3)
        return err_set(err, ENOTSUP, "Unsupported VMDK version %u", version);
    if (version == 3 && (flags & BLK_O_RDWR) && !compressed)
        return err_set(err, EINVAL, "VMDK version 3 must be read only");
    if (num_gtes > 512)
        return err_set(err, EINVAL, "L2 table size too big");
    /* qemu's arithmetic: the sectors per L1 entry in 32 bits, the L1 size a
     * wrapping sum truncated to 32 bits, the directory offsets shifted in 64
     * bits (one past qemu's request limit then fails its read with EIO).
     * The granularity is checked when the extent is added, as qemu does. */
    l1_entry_sectors = (uint32_t)((uint64_t)num_gtes * granularity);
    if (l1_entry_sectors == 0)
        return err_set(err, EINVAL, "L1 entry size is invalid");
    l1_size = (uint32_t)((capacity + l1_entry_sectors - 1) / l1_entry_sectors);
    if (hflags & VMDK4_FLAG_RGD)
        l1_backup = rgd_offset << 9;
    if (file_sectors(file) < grain_offset)
        return err_set(err, EINVAL, "File truncated, expecting at least %lld bytes",
                       (long long)(grain_offset * VMDK_SECTOR));
    if (granularity > VMDK_MAX_GRAIN_SECTORS)
        return err_set(err, EFBIG, "Invalid granularity, image may be corrupt");
    if (compressed && granularity * VMDK_SECTOR > VMDK_MAX_COMPRESSED_GRAIN)
        return err_set(err, EFBIG, "Invalid granularity, image may be corrupt");
    r = vmdk_add_extent(bs, file, own, false, capacity, gd_offset << 9, l1_backup, l1_size,
                        num_gtes, granularity, &e, err);
    if (r < 0)
        return r;
    e->compressed = compressed;
    if (compressed) {
        char *ct = strdup("streamOptimized");
        if (!ct) {
            drop_last_extent(bs);
            return -ENOMEM;
        }
        free(s->create_type);
        s->create_type = ct;
    }
    e->has_marker = hflags & VMDK4_FLAG_MARKER;
    e->version = (int)version;
    e->has_zero_grain = hflags & VMDK4_FLAG_ZERO_GRAIN;
    r = init_tables(e, err);
    if (r < 0)
        drop_last_extent(bs);
    return r;
}

int vmdk_open_sparse(struct bds *bs, struct bds *file, bool own, int flags, const char *buf,
                     int depth, struct err *err)
{
    switch (get_be32(buf)) {
    case VMDK3_MAGIC:
        return open_vmdk3(bs, file, own, err);
    case VMDK4_MAGIC:
        return open_vmdk4(bs, file, own, flags, depth, err);
    default:
        return err_set(err, EINVAL, "Image not in VMDK format");
    }
}

/* Write [skip_end, cluster) and [0, skip_start) of a new grain: data of the
 * backing file, or zeros. */
static int fill_new_grain(struct bds *bs, struct vmdk_extent *e, uint64_t host,
                          uint64_t guest, uint64_t skip_start, uint64_t skip_end, bool zeroed)
{
    uint64_t cluster_bytes = e->cluster_sectors * VMDK_SECTOR;
    bool from_backing = bs->backing && !zeroed;
    uint64_t ranges[2][2] = { { 0, skip_start }, { skip_end, cluster_bytes } };
    uint8_t *buf = NULL;
    int r = 0;

    guest = align_down_u64(guest, cluster_bytes);
    if (bs->backing && !vmdk_cid_valid(bs))
        return -EINVAL;
    /* Real zero bytes, as qemu writes them: the grain is allocated on the
     * host like qemu's (same disk size), not left as a hole. */
    for (int i = 0; i < 2 && r == 0; i++) {
        uint64_t off = ranges[i][0], end = ranges[i][1];
        if (off >= end)
            continue;
        if (!buf && !(buf = calloc(1, 1 << 20)))
            return -ENOMEM;
        while (off < end && r == 0) {
            uint64_t n = min_u64(end - off, 1 << 20);
            if (from_backing)
                r = blk_read_backing(bs, guest + off, n, buf);
            if (r == 0)
                r = blk_pwrite(e->file, host + off, n, buf, 0);
            off += n;
        }
    }
    free(buf);
    return r < 0 ? r : 0;
}

static uint32_t *load_l2(struct vmdk_extent *e, uint32_t l2_offset, int *res)
{
    size_t l2_bytes = (size_t)e->l2_size * 4;
    int min_index = 0;
    uint32_t min_count = UINT32_MAX;

    for (int i = 0; i < VMDK_L2_CACHE_SIZE; i++) {
        if (e->l2_cache_offsets[i] == l2_offset) {
            if (++e->l2_cache_counts[i] == UINT32_MAX)
                for (int j = 0; j < VMDK_L2_CACHE_SIZE; j++)
                    e->l2_cache_counts[j] >>= 1;
            *res = 0;
            return e->l2_cache + (size_t)i * e->l2_size;
        }
    }
    for (int i = 0; i < VMDK_L2_CACHE_SIZE; i++) {
        if (e->l2_cache_counts[i] < min_count) {
            min_count = e->l2_cache_counts[i];
            min_index = i;
        }
    }
    uint32_t *t = e->l2_cache + (size_t)min_index * e->l2_size;
    uint8_t raw[4096 * 4];
    int r = blk_pread(e->file, (uint64_t)l2_offset * VMDK_SECTOR, l2_bytes, raw);
    if (r < 0) {
        e->l2_cache_offsets[min_index] = 0;
        e->l2_cache_counts[min_index] = 0;
        *res = r;
        return NULL;
    }
    for (uint32_t i = 0; i < e->l2_size; i++)
        t[i] = get_le32(raw + (size_t)i * 4);
    e->l2_cache_offsets[min_index] = l2_offset;
    e->l2_cache_counts[min_index] = 1;
    *res = 0;
    return t;
}

int vmdk_get_cluster(struct bds *bs, struct vmdk_extent *e, struct vmdk_meta *m, uint64_t offset,
                     bool allocate, uint64_t *cluster_offset, uint64_t skip_start,
                     uint64_t skip_end)
{
    uint64_t rel, l1_index, cluster_sector;
    uint32_t l2_offset, l2_index, *l2;
    bool zeroed = false;
    int r;

    if (m)
        m->new_allocation = false;
    if (e->flat) {
        *cluster_offset = e->flat_start_offset;
        return VMDK_OK;
    }
    if (e->sesparse)
        return allocate ? VMDK_ERROR : vmdk_sesparse_get_cluster(e, offset, cluster_offset);
    rel = offset - (e->end_sector - e->sectors) * VMDK_SECTOR;
    l1_index = (rel >> 9) / e->l1_entry_sectors;
    if (l1_index >= e->l1_size)
        return VMDK_ERROR;
    l2_offset = e->l1_table[l1_index];
    if (!l2_offset)
        return allocate ? VMDK_ERROR : VMDK_UNALLOC;
    l2 = load_l2(e, l2_offset, &r);
    if (!l2)
        return VMDK_ERROR;
    l2_index = (uint32_t)(((rel >> 9) / e->cluster_sectors) % e->l2_size);
    if (m) {
        m->l1_index = (uint32_t)l1_index;
        m->l2_index = l2_index;
        m->l2_offset = l2_offset;
        m->l2_cache_entry = l2 + l2_index;
    }
    cluster_sector = l2[l2_index];
    if (e->has_zero_grain && cluster_sector == VMDK_GTE_ZEROED)
        zeroed = true;
    if (!cluster_sector || zeroed) {
        if (!allocate)
            return zeroed ? VMDK_ZEROED : VMDK_UNALLOC;
        if (e->next_cluster_sector >= VMDK_EXTENT_MAX_SECTORS)
            return VMDK_ERROR;
        cluster_sector = e->next_cluster_sector;
        e->next_cluster_sector += e->cluster_sectors;
        /* The grain is written before its GTE so a crash cannot expose
         * stale data. A compressed grain is first laid out whole like
         * qemu's (then overwritten by the caller), so files match qemu's. */
        r = fill_new_grain(bs, e, cluster_sector * VMDK_SECTOR, offset, skip_start,
                           skip_end, zeroed);
        if (r < 0)
            return VMDK_ERROR;
        if (m)
            m->new_allocation = true;
    }
    *cluster_offset = cluster_sector * VMDK_SECTOR;
    return VMDK_OK;
}

int vmdk_l2_update(struct vmdk_extent *e, struct vmdk_meta *m, uint32_t value)
{
    uint8_t le[4];
    int r;

    put_le32(le, value);
    r = blk_pwrite(e->file, (uint64_t)m->l2_offset * VMDK_SECTOR + (uint64_t)m->l2_index * 4,
                   4, le, 0);
    if (r < 0)
        return r;
    if (e->l1_backup_table_offset && e->l1_backup_table[m->l1_index]) {
        uint32_t b = e->l1_backup_table[m->l1_index];
        r = blk_pwrite(e->file, (uint64_t)b * VMDK_SECTOR + (uint64_t)m->l2_index * 4, 4, le, 0);
        if (r < 0)
            return r;
    }
    if (m->l2_cache_entry)
        *m->l2_cache_entry = value;
    return 0;
}
