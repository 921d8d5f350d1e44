/* Bochs growing redolog images, read-only, as qemu-img 7.2 reads them
 * (qemu's block/bochs.c is the only description of the layout qemu
 * accepts; bochs' own iodev/hdimage/hdimage.h names the fields).
 *
 * Layout (little-endian): a 512-byte header — magic[32] "Bochs Virtual HD
 * Image", type[16] "Redolog", subtype[16] "Growing", version u32 @64
 * (0x00020000, or 0x00010000 for the older header), header size u32 @68
 * (where the catalog starts), catalog entries u32 @72, bitmap size u32 @76,
 * extent size u32 @80, then the disk size u64 @88 (v2, after a reserved u32)
 * or @84 (v1). The catalog holds one u32 per extent, 0xffffffff = not
 * allocated, else the extent's slot; slots follow the catalog back to back,
 * each its bitmap blocks (one bit per sector, LSB first) then its data
 * blocks. A sector whose catalog entry or bitmap bit is clear reads zero.
 *
 * Invariants after open: 512 <= extent_size <= 8 MiB, a power of two;
 * catalog_size <= 1 Mi entries and covers every extent of the disk, so an
 * extent index derived from a guest offset always indexes the catalog.
 * Catalog slots are not checked at open (qemu does not): the host offset of
 * a slot is computed with qemu's wrapping 64-bit arithmetic, and reads past
 * the end of the file see zeros as in qemu's block layer. Like qemu the
 * driver has no block-status: every range reports as data. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"

#define BOCHS_HEADER_SIZE 512u
#define BOCHS_V2 0x00020000u
#define BOCHS_V1 0x00010000u
#define BOCHS_CATALOG_MAX 0x100000u
#define BOCHS_EXTENT_MAX 0x800000u
#define BOCHS_UNALLOCATED 0xffffffffu
#define SECTOR 512u

enum { H_MAGIC = 0, H_TYPE = 32, H_SUBTYPE = 48, H_VERSION = 64, H_HEADER = 68,
       H_CATALOG = 72, H_BITMAP = 76, H_EXTENT = 80, H_V1_DISK = 84, H_V2_DISK = 88 };

struct bochs_state {
    uint32_t *catalog;
    uint32_t catalog_size;
    uint32_t data_offset;       /* u32 as in qemu: header + 4 * entries, wrapping */
    uint32_t bitmap_blocks;
    uint32_t extent_blocks;
    uint32_t extent_size;
    uint64_t file_size;
};

/* A NUL-terminated field equal to s (qemu compares with strcmp). */
static bool field_is(const uint8_t *f, const char *s)
{
    size_t n = strlen(s);
    return !memcmp(f, s, n) && f[n] == 0;
}

static bool bochs_header_ok(const uint8_t *h)
{
    uint32_t v = get_le32(h + H_VERSION);
    return field_is(h + H_MAGIC, "Bochs Virtual HD Image") && field_is(h + H_TYPE, "Redolog") &&
           field_is(h + H_SUBTYPE, "Growing") && (v == BOCHS_V2 || v == BOCHS_V1);
}

static int bochs_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    /* qemu probes a zero-padded 2 KiB buffer: a short file still has its
     * first bytes compared, the missing ones reading as zero. */
    uint8_t h[BOCHS_HEADER_SIZE] = { 0 };
    memcpy(h, head, len < sizeof(h) ? len : sizeof(h));
    return bochs_header_ok(h) ? 100 : 0;
}

/* Read [off, off+len) of the file the way qemu's block layer does: EIO for
 * offsets beyond its maximum length, zeros past the end of the file. */
static int bochs_read_file(struct bochs_state *s, struct bds *bs, uint64_t off, uint64_t len,
                           void *buf)
{
    if (off > BLK_MAX_LENGTH || len > BLK_MAX_LENGTH - off)
        return -EIO;
    uint64_t in = off >= s->file_size ? 0 : min_u64(len, s->file_size - off);
    if (in) {
        int r = blk_pread(bs->file, off, in, buf);
        if (r < 0)
            return r;
    }
    memset((uint8_t *)buf + in, 0, (size_t)(len - in));
    return 0;
}

static int bochs_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct bochs_state *s = bs->opaque;
    uint8_t h[BOCHS_HEADER_SIZE];
    uint64_t disk, sectors, per_extent;
    int64_t flen;
    int r;

    (void)opts;
    if (flags & BLK_O_RDWR)
        return err_set(err, EACCES, "Image is read-only");
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    s->file_size = (uint64_t)flen;
    if ((r = bochs_read_file(s, bs, 0, sizeof(h), h)) < 0)
        return r;
    if (!bochs_header_ok(h))
        return err_set(err, EINVAL, "Image not in Bochs format");

    disk = get_le32(h + H_VERSION) == BOCHS_V1 ? get_le64(h + H_V1_DISK) : get_le64(h + H_V2_DISK);
    sectors = disk / SECTOR;

    s->catalog_size = get_le32(h + H_CATALOG);
    if (s->catalog_size > BOCHS_CATALOG_MAX)
        return err_set(err, EFBIG, "Catalog size is too large");
    /* At most 4 MiB (qemu's bound); entries past the end of the file read
     * as zero, i.e. slot 0, as in qemu. */
    s->catalog = calloc(s->catalog_size ? s->catalog_size : 1, sizeof(uint32_t));
    if (!s->catalog)
        return err_set(err, ENOMEM, "Could not allocate memory for catalog");
    uint32_t hdr = get_le32(h + H_HEADER);
    if (s->catalog_size) {
        uint8_t *raw = malloc((size_t)s->catalog_size * 4);
        if (!raw) {
            r = -ENOMEM;
            goto fail_catalog;
        }
        r = bochs_read_file(s, bs, hdr, (uint64_t)s->catalog_size * 4, raw);
        for (uint32_t i = 0; r == 0 && i < s->catalog_size; i++)
            s->catalog[i] = get_le32(raw + 4 * (size_t)i);
        free(raw);
        if (r < 0)
            goto fail_catalog;
    }
    s->data_offset = hdr + s->catalog_size * 4u;          /* wraps like qemu's u32 */
    s->bitmap_blocks = 1u + (get_le32(h + H_BITMAP) - 1u) / SECTOR;
    s->extent_blocks = 1u + (get_le32(h + H_EXTENT) - 1u) / SECTOR;
    s->extent_size = get_le32(h + H_EXTENT);
    if (s->extent_size < SECTOR) {
        r = err_set(err, EINVAL, "Extent size must be at least 512");
        goto fail_catalog;
    }
    if (!is_pow2_u64(s->extent_size)) {
        r = err_set(err, EINVAL, "Extent size %" PRIu32 " is not a power of two", s->extent_size);
        goto fail_catalog;
    }
    if (s->extent_size > BOCHS_EXTENT_MAX) {
        r = err_set(err, EINVAL, "Extent size %" PRIu32 " is too large", s->extent_size);
        goto fail_catalog;
    }
    per_extent = s->extent_size / SECTOR;
    if (s->catalog_size < div_round_up_u64(sectors, per_extent)) {
        r = err_set(err, EINVAL, "Catalog size is too small for this disk size");
        goto fail_catalog;
    }
    /* sectors <= 2^20 * 2^14 here: no overflow. */
    bs->total_size = sectors * SECTOR;
    bs->request_alignment = SECTOR;
    return 0;

fail_catalog:
    free(s->catalog);
    s->catalog = NULL;
    return r;
}

static void bochs_close(struct bds *bs)
{
    struct bochs_state *s = bs->opaque;
    free(s->catalog);
}

/* The bitmap bytes of one extent that cover its sectors [first, first + n):
 * exactly the bytes qemu reads one by one for those sectors. */
static int bochs_read_bits(struct bochs_state *s, struct bds *bs, uint64_t bitmap,
                           uint64_t first, uint64_t n, uint8_t *bits)
{
    uint64_t lo = first / 8, hi = (first + n - 1) / 8;
    return bochs_read_file(s, bs, bitmap + lo, hi - lo + 1, bits);
}

static int bochs_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct bochs_state *s = bs->opaque;
    uint8_t *p = buf;
    uint8_t bits[BOCHS_EXTENT_MAX / SECTOR / 8];
    int r;

    /* io.c aligns requests to request_alignment (512); work extent by
     * extent, in runs of sectors with equal bitmap bits. */
    while (len) {
        uint64_t idx = off / s->extent_size;
        uint64_t first = (off % s->extent_size) / SECTOR;
        uint64_t n = min_u64(len, s->extent_size - off % s->extent_size) / SECTOR;
        uint32_t slot = s->catalog[idx];

        if (slot == BOCHS_UNALLOCATED) {
            memset(p, 0, (size_t)(n * SECTOR));
        } else {
            /* qemu's arithmetic, modulo 2^64 on purpose: a hostile slot
             * lands where qemu would read. */
            uint64_t bitmap = (uint64_t)s->data_offset + (uint64_t)SECTOR * slot *
                              ((uint64_t)s->extent_blocks + s->bitmap_blocks);
            uint64_t data = bitmap + (uint64_t)SECTOR * s->bitmap_blocks;
            if ((r = bochs_read_bits(s, bs, bitmap, first, n, bits)) < 0)
                return r;
            for (uint64_t i = 0; i < n;) {
                uint64_t b = first + i - (first & ~7ull);
                bool set = (bits[b / 8] >> (b % 8)) & 1;
                uint64_t j = i + 1;
                while (j < n) {
                    uint64_t c = first + j - (first & ~7ull);
                    if ((bool)((bits[c / 8] >> (c % 8)) & 1) != set)
                        break;
                    j++;
                }
                uint8_t *dst = p + i * SECTOR;
                if (!set)
                    memset(dst, 0, (size_t)((j - i) * SECTOR));
                else if ((r = bochs_read_file(s, bs, data + SECTOR * (first + i),
                                              (j - i) * SECTOR, dst)) < 0)
                    return r;
                i = j;
            }
        }
        p += n * SECTOR;
        off += n * SECTOR;
        len -= n * SECTOR;
    }
    return 0;
}

const struct blk_driver bochs_driver = {
    .name = "bochs",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct bochs_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .probe = bochs_probe,
    .open = bochs_open,
    .close = bochs_close,
    .pread = bochs_pread,
    .get_info = blk_get_info_unsupported,   /* qemu's bochs has none */
};
