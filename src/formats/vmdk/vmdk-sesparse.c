/* VMware ESXi "seSparse" extents, read-only, as qemu 7.2 reads them. The
 * format has no public specification; the layout below is the one qemu's
 * reader documents by its checks:
 *
 *   sector 0: constant header, 64-bit little-endian fields: magic
 *     0xcafebabe, version 0x200000001, capacity (sectors), grain size (8
 *     sectors), grain table size (64 sectors), flags (0), four reserved
 *     (0), then offset/size pairs (sectors) of the volatile header,
 *     journal header, journal, grain directory, grain tables, free bitmap,
 *     backmap and grains; zero padding to 512 bytes.
 *   volatile header: magic 0xcafecafe, free GT number, next transaction
 *     number, replay-journal flag (must be 0), zero padding.
 *   grain directory: 64-bit entries, 0 = no table, else 0x1 in the top
 *     nibble (and nothing else in the top 32 bits) + grain table index.
 *   grain tables: 4096 64-bit entries each; top nibble 0 = unallocated
 *     (whole entry 0), 1 = unmapped and 2 = zero grain (both read as
 *     zeros), 3 = allocated: the grain number is bits 48-59 as its low 12
 *     bits and bits 0-47 as the rest.
 *
 * Every offset is checked against the file before a table is read, and
 * the grain number against overflow before it becomes an offset. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vmdk/vmdk.h"

#define SE_CONST_MAGIC 0xcafebabeULL
#define SE_VOLATILE_MAGIC 0xcafecafeULL
#define SE_VERSION 0x0000000200000001ULL

enum {
    SE_MAGIC = 0, SE_VERSION_F = 8, SE_CAPACITY = 16, SE_GRAIN = 24, SE_GT_SIZE = 32,
    SE_FLAGS = 40, SE_RESERVED = 48, SE_VOLATILE_OFF = 80, SE_GD_OFF = 128, SE_GD_SIZE = 136,
    SE_GT_OFF = 144, SE_GRAINS_OFF = 192, SE_PAD = 208,
};

static int check_const_header(const uint8_t *h, struct err *err)
{
    uint64_t v;

    if ((v = get_le64(h + SE_MAGIC)) != SE_CONST_MAGIC)
        return err_set(err, EINVAL, "Bad const header magic: 0x%016" PRIx64, v);
    if ((v = get_le64(h + SE_VERSION_F)) != SE_VERSION)
        return err_set(err, ENOTSUP, "Unsupported version: 0x%016" PRIx64, v);
    if ((v = get_le64(h + SE_GRAIN)) != 8)
        return err_set(err, ENOTSUP, "Unsupported grain size: %" PRIu64, v);
    if ((v = get_le64(h + SE_GT_SIZE)) != 64)
        return err_set(err, ENOTSUP, "Unsupported grain table size: %" PRIu64, v);
    if ((v = get_le64(h + SE_FLAGS)) != 0)
        return err_set(err, ENOTSUP, "Unsupported flags: 0x%016" PRIx64, v);
    if (get_le64(h + SE_RESERVED) || get_le64(h + SE_RESERVED + 8) ||
        get_le64(h + SE_RESERVED + 16) || get_le64(h + SE_RESERVED + 24))
        return err_set(err, ENOTSUP, "Unsupported reserved bits: 0x%016" PRIx64 " 0x%016" PRIx64
                       " 0x%016" PRIx64 " 0x%016" PRIx64, get_le64(h + SE_RESERVED),
                       get_le64(h + SE_RESERVED + 8), get_le64(h + SE_RESERVED + 16),
                       get_le64(h + SE_RESERVED + 24));
    if (!buffer_is_zero(h + SE_PAD, 512 - SE_PAD))
        return err_set(err, ENOTSUP, "Unsupported non-zero const header padding");
    return 0;
}

static int check_volatile_header(const uint8_t *h, struct err *err)
{
    uint64_t v;

    if ((v = get_le64(h)) != SE_VOLATILE_MAGIC)
        return err_set(err, EINVAL, "Bad volatile header magic: 0x%016" PRIx64, v);
    if (get_le64(h + 24))
        return err_set(err, ENOTSUP, "Image is dirty, Replaying journal not supported");
    if (!buffer_is_zero(h + 32, 512 - 32))
        return err_set(err, ENOTSUP, "Unsupported non-zero volatile header padding");
    return 0;
}

int vmdk_open_sesparse(struct bds *bs, struct bds *file, int flags, struct err *err)
{
    uint8_t h[512], vh[512];
    uint64_t vol_off, gd_off, gd_entries, bytes;
    struct vmdk_extent *e;
    uint8_t *raw;
    int64_t flen;
    int r;

    if (flags & BLK_O_RDWR)
        return err_set(err, EACCES, "No write support for seSparse images available");
    if ((r = blk_pread(file, 0, sizeof(h), h)) < 0)
        return err_set_errno(err, -r, "Could not read const header from file '%s'",
                             file->filename);
    if ((r = check_const_header(h, err)) < 0)
        return r;
    vol_off = get_le64(h + SE_VOLATILE_OFF);
    if (ckd_mul(&vol_off, vol_off, VMDK_SECTOR) ||
        (r = blk_pread(file, vol_off, sizeof(vh), vh)) < 0)
        return err_set_errno(err, r < 0 ? -r : EINVAL,
                             "Could not read volatile header from file '%s'", file->filename);
    if ((r = check_volatile_header(vh, err)) < 0)
        return r;

    /* qemu computes the entry count in 64 bits and passes it on as 32:
     * a count of 2^32 becomes an empty directory (every lookup fails). */
    gd_entries = (uint32_t)(get_le64(h + SE_GD_SIZE) * (VMDK_SECTOR / 8));
    if (ckd_mul(&gd_off, get_le64(h + SE_GD_OFF), VMDK_SECTOR))
        return err_set(err, EFBIG, "Invalid grain directory offset");
    r = vmdk_add_extent(bs, file, true, false, get_le64(h + SE_CAPACITY), gd_off, 0, gd_entries,
                        64 * VMDK_SECTOR / 8, 8, &e, err);
    if (r < 0)
        return r;
    /* From here a failure drops the extent again (the caller closes file). */
    e->sesparse = true;
    e->se_tables_offset = get_le64(h + SE_GT_OFF);
    e->se_grains_offset = get_le64(h + SE_GRAINS_OFF);

    /* Only the part of the directory inside the file is read (and
     * allocated); past the end of the file it reads as zeros, as in qemu. */
    flen = blk_getlength(file);
    if (flen < 0) {
        r = err_set_errno(err, (int)-flen, "Could not read l1 table from extent '%s'",
                          file->filename);
        goto fail;
    }
    e->se_l1_avail = 0;
    if (gd_off < (uint64_t)flen)
        e->se_l1_avail = (uint32_t)min_u64(e->l1_size, ((uint64_t)flen - gd_off) / 8);
    bytes = (uint64_t)e->se_l1_avail * 8;
    raw = malloc(bytes ? (size_t)bytes : 1);
    e->se_l1 = calloc(e->se_l1_avail ? e->se_l1_avail : 1, sizeof(uint64_t));
    e->se_l2 = malloc((size_t)e->l2_size * 8);
    if (!raw || !e->se_l1 || !e->se_l2) {
        free(raw);
        r = err_set(err, ENOMEM, "Could not allocate the l1 table");
        goto fail;
    }
    r = bytes ? blk_pread(file, gd_off, bytes, raw) : 0;
    for (uint32_t i = 0; r == 0 && i < e->se_l1_avail; i++)
        e->se_l1[i] = get_le64(raw + (size_t)i * 8);
    free(raw);
    if (r < 0) {
        r = err_set_errno(err, -r, "Could not read l1 table from extent '%s'", file->filename);
        goto fail;
    }
    e->se_l2_offset = UINT64_MAX;
    return 0;

fail:
    e->own_file = false;
    vmdk_extent_release(e);
    ((struct vmdk_state *)bs->opaque)->num_extents--;
    return r;
}

int vmdk_sesparse_get_cluster(struct vmdk_extent *e, uint64_t offset, uint64_t *cluster_offset)
{
    uint64_t rel = offset - (e->end_sector - e->sectors) * VMDK_SECTOR;
    uint64_t l1_index = (rel >> 9) / e->l1_entry_sectors, gde = 0, l2_sector, gte, grain;
    uint64_t l2_bytes = (uint64_t)e->l2_size * 8;

    if (l1_index >= e->l1_size)
        return VMDK_ERROR;
    if (l1_index < e->se_l1_avail)
        gde = e->se_l1[l1_index];
    if (!gde)
        return VMDK_UNALLOC;
    if ((gde & 0xffffffff00000000ULL) != 0x1000000000000000ULL)
        return VMDK_ERROR;
    if (ckd_mul(&l2_sector, gde & 0xffffffffULL, l2_bytes / VMDK_SECTOR) ||
        ckd_add(&l2_sector, l2_sector, e->se_tables_offset) || l2_sector > 0xffffffffULL)
        return VMDK_ERROR;
    if (e->se_l2_offset != l2_sector) {
        uint8_t *raw = malloc((size_t)l2_bytes);
        int r = raw ? blk_pread(e->file, l2_sector * VMDK_SECTOR, l2_bytes, raw) : -ENOMEM;
        e->se_l2_offset = UINT64_MAX;
        for (uint32_t i = 0; r == 0 && i < e->l2_size; i++)
            e->se_l2[i] = get_le64(raw + (size_t)i * 8);
        free(raw);
        if (r < 0)
            return VMDK_ERROR;
        e->se_l2_offset = l2_sector;
    }
    gte = e->se_l2[((rel >> 9) / e->cluster_sectors) % e->l2_size];
    switch (gte >> 60) {
    case 0:
        return gte ? VMDK_ERROR : VMDK_UNALLOC;
    case 1:     /* unmapped */
    case 2:     /* zero */
        return VMDK_ZEROED;
    case 3:
        grain = ((gte & 0x0fff000000000000ULL) >> 48) | ((gte & 0x0000ffffffffffffULL) << 12);
        if (ckd_mul(&grain, grain, e->cluster_sectors) ||
            ckd_add(&grain, grain, e->se_grains_offset) ||
            ckd_mul(cluster_offset, grain, VMDK_SECTOR))
            return VMDK_ERROR;
        return VMDK_OK;
    default:
        return VMDK_ERROR;
    }
}
