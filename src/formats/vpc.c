/* Virtual PC / VHD images (Microsoft "Virtual Hard Disk Image Format
 * Specification": "Hard Disk Footer Format", "Dynamic Disk Header Format",
 * "Block Allocation Table and Data Blocks", Appendix "CHS Calculation"),
 * with qemu 7.2's interpretation of the size fields.
 *
 * Fixed disks are the guest bytes followed by a 512-byte footer; dynamic
 * and differencing disks start with a footer copy, then the dynamic
 * header, the BAT (big-endian u32 sector numbers, 0xffffffff =
 * unallocated) and blocks, each a sector bitmap followed by block_size
 * bytes of data; the footer ends the file.
 *
 * Differencing disks ("Dynamic Disk Header Format": parent name and
 * locator entries) go beyond qemu 7.2, which reads them as plain dynamic
 * disks and so shows zeros where the parent's data belongs: here the
 * parent named by the locators (W2ru relative, then W2ku absolute, then
 * MacX URL, then the parent's unicode name) becomes the backing file, and
 * a sector reads from this file only when its bitmap bit is set.
 *
 * Invariants after open: total_size <= 2040 GiB; for dynamic disks
 * block_size is a power of two >= 512, the whole BAT is in memory and
 * lies inside the file, and free_data_block_offset (where the next block
 * and then the footer go) is at or past the end of every block. As in
 * qemu, reads ignore the sector bitmaps (an allocated block reads whole),
 * and writes set every bit of the bitmap of a block they touch. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "block/driver.h"
#include "util/utf16.h"

#define VHD_FOOTER_SIZE 512u
#define VHD_DYN_SIZE 1024u
#define VHD_FIXED 2u
#define VHD_DYNAMIC 3u
#define VHD_DIFF 4u
#define VHD_LOCATORS 8
#define VHD_LOCATOR_SIZE 24u
#define VHD_LOCATOR_MAX 8192u             /* bytes of one parent path */
#define VHD_TIMESTAMP_BASE 946684800LL   /* 2000-01-01 00:00:00 UTC */
#define VHD_CHS_MAX_C 65535LL
#define VHD_CHS_MAX_H 16
#define VHD_CHS_MAX_S 255
#define VHD_MAX_SECTORS 0xff000000LL      /* 2040 GiB */
#define VHD_MAX_GEOMETRY (VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S)
#define VHD_BAT_FREE 0xffffffffu
#define VHD_DEFAULT_BLOCK (2u << 20)

/* Footer field offsets. */
enum {
    F_COOKIE = 0, F_FEATURES = 8, F_VERSION = 12, F_DATA_OFFSET = 16, F_TIMESTAMP = 24,
    F_CREATOR_APP = 28, F_CREATOR_VER = 32, F_CREATOR_OS = 36, F_ORIG_SIZE = 40,
    F_CUR_SIZE = 48, F_CYLS = 56, F_HEADS = 58, F_SPT = 59, F_TYPE = 60, F_CHECKSUM = 64,
    F_UUID = 68,
};
/* Dynamic header field offsets. */
enum {
    D_COOKIE = 0, D_DATA_OFFSET = 8, D_TABLE_OFFSET = 16, D_VERSION = 24,
    D_MAX_ENTRIES = 28, D_BLOCK_SIZE = 32, D_CHECKSUM = 36, D_PARENT_NAME = 64,
    D_LOCATOR = 576,
};
/* Parent locator entry field offsets. */
enum { L_CODE = 0, L_SPACE = 4, L_LEN = 8, L_OFFSET = 16 };

struct vpc_state {
    uint8_t footer[VHD_FOOTER_SIZE];   /* as read; rewritten at the file end */
    uint32_t type;                     /* footer type field */
    bool dynamic;                      /* found at offset 0: BAT-based */
    uint32_t *bat;                     /* host order */
    uint32_t max_table_entries;
    uint64_t bat_offset;
    uint32_t block_size, bitmap_size;
    uint64_t free_data_block_offset;
    uint64_t last_bitmap_offset;       /* UINT64_MAX: none written yet */
    bool diff;                         /* differencing: per-sector bitmaps count */
    uint8_t *bm;                       /* differencing: bitmap of block bm_offset */
    uint64_t bm_offset;                /* UINT64_MAX: bm holds nothing */
};

/* One's complement of the byte sum (both structures use it). */
static uint32_t vpc_checksum(const uint8_t *p, size_t n)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return ~sum;
}

static int vpc_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    /* Like qemu: only the footer copy at offset 0 is recognised; fixed
     * disks (footer at the end only) need -f vpc. */
    return len >= 8 && !memcmp(head, "conectix", 8) ? 100 : 0;
}

/* Which creators store the true size in current_size rather than in the
 * CHS geometry (qemu's table: Hyper-V, qemu with force_size, Disk2vhd,
 * XenConverter, XenServer). */
static bool vpc_creator_uses_current_size(const uint8_t *app)
{
    static const char *const apps[] = { "win ", "qem2", "d2v ", "CTXS" };
    for (size_t i = 0; i < sizeof(apps) / sizeof(apps[0]); i++)
        if (!memcmp(app, apps[i], 4))
            return true;
    return !memcmp(app, "tap\0", 4);
}

/* Decode one locator's path; NULL when unusable. */
static char *vpc_locator_path(struct bds *bs, const uint8_t *loc, uint64_t flen)
{
    uint32_t len = get_be32(loc + L_LEN);
    uint64_t off = get_be64(loc + L_OFFSET), end;
    uint8_t *raw;
    char *path = NULL;

    if (!len || len > VHD_LOCATOR_MAX || ckd_add(&end, off, (uint64_t)len) || end > flen)
        return NULL;
    raw = malloc(len);
    if (!raw)
        return NULL;
    if (blk_pread(bs->file, off, len, raw) == 0) {
        if (!memcmp(loc + L_CODE, "MacX", 4)) {
            /* A file:// URL in UTF-8, %-escaped. */
            size_t n = strnlen((char *)raw, len), o = 0, i = 0;
            if (n >= 7 && !memcmp(raw, "file://", 7))
                i = 7;
            path = malloc(n + 1);
            for (; path && i < n; i++) {
                unsigned v;
                if (raw[i] == '%' && i + 2 < n && sscanf((char *)raw + i + 1, "%2x", &v) == 1) {
                    path[o++] = (char)v;
                    i += 2;
                } else {
                    path[o++] = (char)raw[i];
                }
            }
            if (path)
                path[o] = '\0';
        } else {
            path = utf16_to_utf8(raw, len, false);
        }
    }
    free(raw);
    if (path) {
        /* Windows separators; a relative path starts with ".\". */
        for (char *c = path; *c; c++)
            if (*c == '\\')
                *c = '/';
        if (!strncmp(path, "./", 2))
            memmove(path, path + 2, strlen(path + 2) + 1);
        if (!path[0]) {
            free(path);
            path = NULL;
        }
    }
    return path;
}

/* A differencing disk's parent: the best locator, else its unicode name. */
static int vpc_open_parent(struct bds *bs, const uint8_t *dyn, uint64_t flen, struct err *err)
{
    static const char codes[][5] = { "W2ru", "W2ku", "MacX" };
    struct vpc_state *s = bs->opaque;
    char *path = NULL;

    for (size_t c = 0; !path && c < sizeof(codes) / sizeof(codes[0]); c++)
        for (int i = 0; !path && i < VHD_LOCATORS; i++) {
            const uint8_t *loc = dyn + D_LOCATOR + i * VHD_LOCATOR_SIZE;
            if (!memcmp(loc + L_CODE, codes[c], 4))
                path = vpc_locator_path(bs, loc, flen);
        }
    if (!path) {
        path = utf16_to_utf8(dyn + D_PARENT_NAME, 512, true);
        if (path && !path[0]) {
            free(path);
            path = NULL;
        }
    }
    if (!path)
        return err_set(err, EINVAL, "Differencing VHD image names no usable parent");
    s->diff = true;
    s->bm = malloc(s->bitmap_size);
    if (!s->bm) {
        free(path);
        return err_set(err, ENOMEM, "Unable to allocate memory for the sector bitmap");
    }
    s->bm_offset = UINT64_MAX;
    bs->backing_file = path;
    bs->backing_format = strdup("vpc");
    /* Partial sectors must be merged with the parent's: io.c does the
     * read-modify-write when requests are sector aligned. */
    bs->request_alignment = 512;
    return bs->backing_format ? 0 : err_set(err, ENOMEM, "Out of memory");
}

static int vpc_open_dynamic(struct bds *bs, uint64_t total_sectors, struct err *err)
{
    struct vpc_state *s = bs->opaque;
    uint8_t dyn[VHD_DYN_SIZE];
    uint8_t *raw = NULL;
    uint64_t hdr_off = get_be64(s->footer + F_DATA_OFFSET), end;
    int64_t flen;
    int r;

    if (ckd_add(&end, hdr_off, (uint64_t)VHD_DYN_SIZE) || end > (1ULL << 62) ||
        (r = blk_pread(bs->file, hdr_off, VHD_DYN_SIZE, dyn)) < 0)
        return err_set(err, EIO, "Error reading dynamic VHD header");
    if (memcmp(dyn + D_COOKIE, "cxsparse", 8))
        return err_set(err, EINVAL, "Invalid header magic");
    s->block_size = get_be32(dyn + D_BLOCK_SIZE);
    if (!is_pow2_u64(s->block_size) || s->block_size < 512)
        return err_set(err, EINVAL, "Invalid block size %" PRIu32, s->block_size);
    s->bitmap_size = ((s->block_size / (8 * 512)) + 511) & ~511u;

    /* qemu holds the entry count in an int: a value >= 2^31 is negative. */
    int32_t mte = (int32_t)get_be32(dyn + D_MAX_ENTRIES);
    if ((total_sectors * 512) / s->block_size > 0xffffffffu)
        return err_set(err, EINVAL, "Too many blocks");
    uint64_t computed = (uint64_t)(int64_t)mte * s->block_size;   /* wraps like qemu */
    if (computed < total_sectors * 512)
        return err_set(err, EINVAL, "Page table too small");
    if (mte < 0 || mte > INT_MAX / 4)
        return err_set(err, EINVAL, "Max Table Entries too large (%" PRId32 ")", mte);
    s->max_table_entries = (uint32_t)mte;

    uint64_t bat_bytes = (uint64_t)s->max_table_entries * 4;
    s->bat_offset = get_be64(dyn + D_TABLE_OFFSET);
    if (ckd_add(&end, s->bat_offset, bat_bytes) || end > (1ULL << 62) - 511)
        return err_set(err, EIO, "Error reading pagetable");
    s->free_data_block_offset = align_up_u64(end, 512);
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Unable to learn image size");
    /* The BAT must lie inside the file (qemu reads it first and then finds
     * the same truncation; checking first avoids a forged huge allocation). */
    if (s->free_data_block_offset > (uint64_t)flen)
        goto truncated;

    raw = malloc((size_t)bat_bytes + 1);
    s->bat = calloc((size_t)s->max_table_entries + 1, sizeof(uint32_t));
    if (!raw || !s->bat) {
        r = err_set(err, ENOMEM, "Unable to allocate memory for page table");
        goto fail;
    }
    if (bat_bytes && (r = blk_pread(bs->file, s->bat_offset, bat_bytes, raw)) < 0) {
        r = err_set(err, -r, "Error reading pagetable");
        goto fail;
    }
    for (uint32_t i = 0; i < s->max_table_entries; i++) {
        uint32_t e = get_be32(raw + (uint64_t)i * 4);
        s->bat[i] = e;
        if (e != VHD_BAT_FREE) {
            uint64_t next = 512 * (uint64_t)e + s->bitmap_size + s->block_size;
            if (next > s->free_data_block_offset)
                s->free_data_block_offset = next;
        }
    }
    free(raw);
    raw = NULL;
    if (s->free_data_block_offset > (uint64_t)flen)
        goto truncated;
    s->last_bitmap_offset = UINT64_MAX;
    if (s->type == VHD_DIFF && (r = vpc_open_parent(bs, dyn, (uint64_t)flen, err)) < 0)
        goto fail;
    return 0;

truncated:
    r = err_set(err, EINVAL, "block-vpc: free_data_block_offset points after the end of "
                "file. The image has been truncated.");
fail:
    free(raw);
    free(s->bat);
    s->bat = NULL;
    free(s->bm);
    s->bm = NULL;
    return r;
}

static int vpc_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct vpc_state *s = bs->opaque;
    bool force_chs = false, force_sz = false;
    const char *calc = opts ? kvopts_get(opts, "force_size_calc") : NULL;
    int r;

    (void)flags;
    if (calc) {
        if (!strcmp(calc, "current_size"))
            force_sz = true;
        else if (!strcmp(calc, "chs"))
            force_chs = true;
        else
            return err_set(err, EINVAL, "Invalid size calculation mode: '%s'", calc);
    }
    if ((r = blk_pread(bs->file, 0, VHD_FOOTER_SIZE, s->footer)) < 0)
        return err_set(err, -r, "Unable to read VHD header");
    s->dynamic = true;
    if (memcmp(s->footer + F_COOKIE, "conectix", 8)) {
        int64_t flen = blk_getlength(bs->file);
        if (flen < 0)
            return err_set(err, (int)-flen, "Invalid file size");
        if (flen < (int64_t)VHD_FOOTER_SIZE)
            return err_set(err, EINVAL, "File too small for a VHD header");
        if ((r = blk_pread(bs->file, (uint64_t)flen - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE,
                           s->footer)) < 0)
            return r;
        if (memcmp(s->footer + F_COOKIE, "conectix", 8) ||
            get_be32(s->footer + F_TYPE) != VHD_FIXED)
            return err_set(err, EINVAL, "invalid VPC image");
        s->dynamic = false;
    }
    uint8_t tmp[VHD_FOOTER_SIZE];
    memcpy(tmp, s->footer, sizeof(tmp));
    memset(tmp + F_CHECKSUM, 0, 4);
    if (vpc_checksum(tmp, sizeof(tmp)) != get_be32(s->footer + F_CHECKSUM))
        return err_set(err, EINVAL, "Incorrect header checksum");
    s->type = get_be32(s->footer + F_TYPE);

    /* Virtual PC sizes the disk by its geometry; other creators by
     * current_size. The maximum geometry means "see current_size". */
    uint64_t total_sectors = (uint64_t)get_be16(s->footer + F_CYLS) * s->footer[F_HEADS] *
                             s->footer[F_SPT];
    bool use_chs = !vpc_creator_uses_current_size(s->footer + F_CREATOR_APP) || force_chs;
    if (!use_chs || total_sectors == (uint64_t)VHD_MAX_GEOMETRY || force_sz)
        total_sectors = get_be64(s->footer + F_CUR_SIZE) / 512;
    if (total_sectors > (uint64_t)VHD_MAX_SECTORS)
        return -EFBIG;

    if (s->dynamic && (r = vpc_open_dynamic(bs, total_sectors, err)) < 0)
        return r;
    bs->total_size = total_sectors * 512;
    return 0;
}

static void vpc_close(struct bds *bs)
{
    struct vpc_state *s = bs->opaque;
    free(s->bat);
    s->bat = NULL;
    free(s->bm);
    s->bm = NULL;
}

static bool vpc_passthrough(const struct vpc_state *s)
{
    return s->type == VHD_FIXED;
}

/* Host offset of a guest offset, or UINT64_MAX when its block is not
 * allocated. Entries near 2^32 sectors still fit in 64 bits. */
static uint64_t vpc_host_offset(const struct vpc_state *s, uint64_t off)
{
    uint64_t idx = off / s->block_size;
    if (idx >= s->max_table_entries || s->bat[idx] == VHD_BAT_FREE)
        return UINT64_MAX;
    return 512 * (uint64_t)s->bat[idx] + s->bitmap_size + off % s->block_size;
}

/* Differencing disks: load the sector bitmap of the block at host offset
 * bm_off (cached, one block). */
static int vpc_load_bitmap(struct bds *bs, uint64_t bm_off)
{
    struct vpc_state *s = bs->opaque;
    int r;

    if (s->bm_offset == bm_off)
        return 0;
    s->bm_offset = UINT64_MAX;
    if ((r = blk_pread(bs->file, bm_off, s->bitmap_size, s->bm)) < 0)
        return r;
    s->bm_offset = bm_off;
    return 0;
}

static bool vpc_bit(const struct vpc_state *s, uint64_t sector)
{
    return s->bm[sector / 8] & (0x80 >> (sector % 8));
}

/* Length of the run of sectors at off (inside an allocated block whose
 * bitmap is loaded) that share off's bit, capped at len; *present = bit. */
static uint64_t vpc_bit_run(const struct vpc_state *s, uint64_t off, uint64_t len, bool *present)
{
    uint64_t first = (off % s->block_size) / 512;
    uint64_t last = min_u64((off % s->block_size + len + 511) / 512, s->block_size / 512);
    uint64_t i = first + 1;

    *present = vpc_bit(s, first);
    while (i < last && vpc_bit(s, i) == *present)
        i++;
    return min_u64(len, i * 512 - off % s->block_size);
}

static uint64_t vpc_bitmap_offset(const struct vpc_state *s, uint64_t off)
{
    return 512 * (uint64_t)s->bat[off / s->block_size];
}

/* A read-only node's reads run without the node lock
 * (BLK_THREAD_READS_UNLOCKED_RO): the BAT does not change, and the lock is
 * taken here only around the one-block bitmap cache of differencing disks. */
static int vpc_pread_diff(struct bds *bs, uint64_t off, uint64_t len, uint8_t *p)
{
    struct vpc_state *s = bs->opaque;
    int r;

    while (len) {
        uint64_t n = min_u64(len, s->block_size - off % s->block_size);
        uint64_t host = vpc_host_offset(s, off);
        bool present = false;
        if (host != UINT64_MAX) {
            blk_pread_lock(bs);
            r = vpc_load_bitmap(bs, vpc_bitmap_offset(s, off));
            if (r == 0)
                n = vpc_bit_run(s, off, n, &present);
            blk_pread_unlock(bs);
            if (r < 0)
                return r;
        }
        r = present ? blk_pread(bs->file, host, n, p) : blk_read_backing(bs, off, n, p);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vpc_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct vpc_state *s = bs->opaque;
    uint8_t *p = buf;

    if (vpc_passthrough(s))
        return blk_pread(bs->file, off, len, buf);
    if (s->diff)
        return vpc_pread_diff(bs, off, len, p);
    while (len) {
        uint64_t n = min_u64(len, s->block_size - off % s->block_size);
        uint64_t host = vpc_host_offset(s, off);
        if (host == UINT64_MAX) {
            memset(p, 0, (size_t)n);
        } else {
            int r = blk_pread(bs->file, host, n, p);
            if (r < 0)
                return r;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vpc_write_bitmap(struct bds *bs, uint64_t at)
{
    struct vpc_state *s = bs->opaque;
    uint8_t *bm;
    int r;

    if (!s->bitmap_size)
        return 0;
    bm = malloc(s->bitmap_size);
    if (!bm)
        return -ENOMEM;
    /* A differencing disk's new block holds no sector yet. */
    memset(bm, s->diff ? 0 : 0xff, s->bitmap_size);
    r = blk_pwrite(bs->file, at, s->bitmap_size, bm, 0);
    free(bm);
    if (r == 0)
        r = blk_flush(bs->file);
    return r;
}

/* A new block goes where the footer is; the footer moves behind it, then
 * the BAT entry is written (qemu's order, each step synced). */
static int vpc_alloc_block(struct bds *bs, uint64_t off)
{
    struct vpc_state *s = bs->opaque;
    uint64_t idx = off / s->block_size, at = s->free_data_block_offset, next;
    uint8_t be[4];
    int r;

    if (idx >= s->max_table_entries || at % 512 || at / 512 >= VHD_BAT_FREE ||
        ckd_add(&next, at, (uint64_t)s->bitmap_size + s->block_size) || next > (1ULL << 62))
        return -EIO;
    if ((r = vpc_write_bitmap(bs, at)) < 0)
        return r;
    s->last_bitmap_offset = at;
    if ((r = blk_pwrite(bs->file, next, VHD_FOOTER_SIZE, s->footer, 0)) < 0 ||
        (r = blk_flush(bs->file)) < 0)
        return r;
    s->bat[idx] = (uint32_t)(at / 512);
    put_be32(be, s->bat[idx]);
    if ((r = blk_pwrite(bs->file, s->bat_offset + idx * 4, 4, be, 0)) < 0 ||
        (r = blk_flush(bs->file)) < 0) {
        s->bat[idx] = VHD_BAT_FREE;
        return r;
    }
    s->free_data_block_offset = next;
    return 0;
}

/* Differencing disks: after the data, set the bits of the sectors
 * [off, off+n) of one block (requests are sector aligned). */
static int vpc_mark_present(struct bds *bs, uint64_t off, uint64_t n)
{
    struct vpc_state *s = bs->opaque;
    uint64_t bm_off = vpc_bitmap_offset(s, off);
    uint64_t first = (off % s->block_size) / 512, end = first + n / 512;
    bool changed = false;
    int r;

    if ((r = vpc_load_bitmap(bs, bm_off)) < 0)
        return r;
    for (uint64_t i = first; i < end; i++) {
        if (!vpc_bit(s, i)) {
            s->bm[i / 8] |= (uint8_t)(0x80 >> (i % 8));
            changed = true;
        }
    }
    if (!changed)
        return 0;
    r = blk_pwrite(bs->file, bm_off, s->bitmap_size, s->bm, 0);
    if (r < 0)
        s->bm_offset = UINT64_MAX;
    return r;
}

static int vpc_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct vpc_state *s = bs->opaque;
    const uint8_t *p = buf;
    int r;

    (void)flags;
    if (vpc_passthrough(s))
        return blk_pwrite(bs->file, off, len, buf, 0);
    while (len) {
        uint64_t n = min_u64(len, s->block_size - off % s->block_size);
        uint64_t host = vpc_host_offset(s, off);
        if (host == UINT64_MAX) {
            if ((r = vpc_alloc_block(bs, off)) < 0)
                return r;
            host = vpc_host_offset(s, off);
        } else if (!s->diff) {
            uint64_t bm = host - s->bitmap_size - off % s->block_size;
            if (bm != s->last_bitmap_offset) {
                s->last_bitmap_offset = bm;
                if ((r = vpc_write_bitmap(bs, bm)) < 0)
                    return r;
            }
        }
        if ((r = blk_pwrite(bs->file, host, n, p, 0)) < 0)
            return r;
        if (s->diff && (r = vpc_mark_present(bs, off, n)) < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vpc_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    struct vpc_state *s = bs->opaque;

    if (vpc_passthrough(s)) {
        *pnum = len;
        *map = off;
        *file = bs->file;
        /* Fixed images: qemu looks for holes in the host file. */
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_RECURSE;
    }
    uint64_t host = vpc_host_offset(s, off);
    *pnum = min_u64(len, s->block_size - off % s->block_size);
    if (host != UINT64_MAX && s->diff) {
        bool present;
        int r = vpc_load_bitmap(bs, vpc_bitmap_offset(s, off));
        if (r < 0)
            return r;
        *pnum = vpc_bit_run(s, off, *pnum, &present);
        if (!present)
            return 0;   /* the parent answers */
    }
    if (host != UINT64_MAX) {
        /* One block at most: a bitmap separates consecutive blocks. */
        *map = host;
        *file = bs->file;
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID;
    }
    while (*pnum < len && vpc_host_offset(s, off + *pnum) == UINT64_MAX)
        *pnum = min_u64(len, *pnum + s->block_size);
    return s->diff ? 0 : BLK_STATUS_ZERO;
}

static int vpc_get_info(struct bds *bs, struct blk_info *bi)
{
    struct vpc_state *s = bs->opaque;
    if (s->type != VHD_FIXED)
        bi->cluster_size = s->block_size;
    return 0;
}

static bool vpc_has_zero_init(struct bds *bs)
{
    struct vpc_state *s = bs->opaque;
    if (s->type == VHD_FIXED)
        return blk_has_zero_init(bs->file);
    return true;
}

/* --- creation ---------------------------------------------------------- */

/* The spec's CHS algorithm, with qemu's choice of up to 255 sectors per
 * track and 16 heads beyond the ATA limit. May round down. */
static void vpc_geometry(int64_t total, uint16_t *cyls, uint8_t *heads, uint8_t *spt)
{
    uint32_t cth;

    if (total > VHD_MAX_GEOMETRY)
        total = VHD_MAX_GEOMETRY;
    if (total >= 65535LL * 16 * 63) {
        *spt = 255;
        *heads = 16;
        cth = (uint32_t)(total / *spt);
    } else {
        *spt = 17;
        cth = (uint32_t)(total / *spt);
        uint32_t h = (cth + 1023) / 1024;
        *heads = (uint8_t)(h < 4 ? 4 : h > 255 ? 255 : h);
        if (cth >= (uint32_t)*heads * 1024 || h > 16) {
            *spt = 31;
            *heads = 16;
            cth = (uint32_t)(total / *spt);
        }
        if (cth >= (uint32_t)*heads * 1024) {
            *spt = 63;
            *heads = 16;
            cth = (uint32_t)(total / *spt);
        }
    }
    *cyls = (uint16_t)(cth / *heads);
}

/* Round the size up to what a geometry can express (or keep it exactly with
 * force_size / at the maximum geometry). -EFBIG past 2040 GiB. */
static int vpc_rounded_size(uint64_t size, bool force, uint16_t *c, uint8_t *h, uint8_t *spt,
                            int64_t *total_sectors)
{
    *c = 0; *h = 0; *spt = 0;
    if (force) {
        *c = VHD_CHS_MAX_C;
        *h = VHD_CHS_MAX_H;
        *spt = VHD_CHS_MAX_S;
    } else {
        int64_t want = (int64_t)min_u64((uint64_t)VHD_MAX_GEOMETRY, size / 512);
        for (int64_t i = 0; want > (int64_t)*c * *h * *spt; i++)
            vpc_geometry(want + i, c, h, spt);
    }
    if ((int64_t)*c * *h * *spt == VHD_MAX_GEOMETRY) {
        *total_sectors = (int64_t)(size / 512);
        if (*total_sectors > VHD_MAX_SECTORS)
            return -EFBIG;
    } else {
        *total_sectors = (int64_t)*c * *h * *spt;
    }
    return 0;
}

static void vpc_uuid_generate(uint8_t *u)
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(u + got, 16 - got, 0);
        if (n <= 0) {
            srand((unsigned)time(NULL) ^ (unsigned)got);
            for (; got < 16; got++)
                u[got] = (uint8_t)rand();
            break;
        }
        got += (size_t)n;
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
}

static int vpc_create_dynamic(struct bds *f, const uint8_t *footer, int64_t total_sectors)
{
    uint8_t dyn[VHD_DYN_SIZE];
    uint64_t entries = div_round_up_u64((uint64_t)total_sectors, VHD_DEFAULT_BLOCK / 512);
    uint64_t bat_bytes = align_up_u64(entries * 4, 512);
    uint8_t *bat = NULL;
    int r;

    if ((r = blk_pwrite(f, 0, VHD_FOOTER_SIZE, footer, 0)) < 0)
        return r;
    if ((r = blk_pwrite(f, 1536 + bat_bytes, VHD_FOOTER_SIZE, footer, 0)) < 0)
        return r;
    if (bat_bytes) {
        bat = malloc((size_t)bat_bytes);
        if (!bat)
            return -ENOMEM;
        memset(bat, 0xff, (size_t)bat_bytes);
        r = blk_pwrite(f, 1536, bat_bytes, bat, 0);
        free(bat);
        if (r < 0)
            return r;
    }
    memset(dyn, 0, sizeof(dyn));
    memcpy(dyn + D_COOKIE, "cxsparse", 8);
    /* All 64 bits set: the spec says 0xFFFFFFFF, Microsoft's tools want this. */
    put_be64(dyn + D_DATA_OFFSET, UINT64_MAX);
    put_be64(dyn + D_TABLE_OFFSET, 1536);
    put_be32(dyn + D_VERSION, 0x00010000);
    put_be32(dyn + D_BLOCK_SIZE, VHD_DEFAULT_BLOCK);
    put_be32(dyn + D_MAX_ENTRIES, (uint32_t)entries);
    put_be32(dyn + D_CHECKSUM, vpc_checksum(dyn, sizeof(dyn)));
    return blk_pwrite(f, 512, VHD_DYN_SIZE, dyn, 0);
}

/* "preallocation" is not ours: qemu hands it to the file protocol's create
 * (for a file of size 0), which only validates it. */
static int vpc_check_file_prealloc(const struct kvopts *opts, struct err *err)
{
    const char *v = kvopts_get(opts, "preallocation");
    enum blk_prealloc p;
    if (!v)
        return 0;
    return blk_parse_prealloc(v, 1u << BLK_PREALLOC_OFF | 1u << BLK_PREALLOC_FALLOC |
                              1u << BLK_PREALLOC_FULL, &p, err);
}

static int vpc_create(const char *filename, struct kvopts *opts, struct err *err)
{
    struct bds *f = NULL;
    uint8_t footer[VHD_FOOTER_SIZE];
    uint64_t size = 0;
    bool force = false, fixed = false;
    uint16_t cyls;
    uint8_t heads, spt;
    int64_t total_sectors;
    int r;

    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    if (opts->help)
        return 0;
    if ((r = vpc_check_file_prealloc(opts, err)) < 0)
        return r;
    f = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!f)
        return -EIO;
    /* QAPI order of BlockdevCreateOptionsVpc: size, subformat, force-size. */
    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0)
        goto out;
    const char *sub = kvopts_get(opts, "subformat");
    if (sub && !strcmp(sub, "fixed")) {
        fixed = true;
    } else if (sub && strcmp(sub, "dynamic")) {
        r = err_set(err, EINVAL, "Parameter 'subformat' does not accept value '%s'", sub);
        goto out;
    }
    if ((r = kvopts_get_bool(opts, "force_size", false, &force, err)) < 0)
        goto out;
    if (size > INT64_MAX - 511) {
        r = err_set(err, EFBIG, "The image size is too large for file format 'vpc'");
        goto out;
    }
    size = align_up_u64(size, 512);
    r = vpc_rounded_size(size, force, &cyls, &heads, &spt, &total_sectors);
    if (r < 0) {
        /* qemu-img replaces the driver's message for -EFBIG. */
        err_set(err, EFBIG, "The image size is too large for file format 'vpc'");
        goto out;
    }
    if (!force)
        size = (uint64_t)total_sectors * 512;

    memset(footer, 0, sizeof(footer));
    memcpy(footer + F_COOKIE, "conectix", 8);
    memcpy(footer + F_CREATOR_APP, force ? "qem2" : "qemu", 4);
    memcpy(footer + F_CREATOR_OS, "Wi2k", 4);
    put_be32(footer + F_FEATURES, 2);
    put_be32(footer + F_VERSION, 0x00010000);
    put_be64(footer + F_DATA_OFFSET, fixed ? UINT64_MAX : VHD_FOOTER_SIZE);
    put_be32(footer + F_TIMESTAMP, (uint32_t)((int64_t)time(NULL) - VHD_TIMESTAMP_BASE));
    put_be16(footer + F_CREATOR_VER, 5);         /* Virtual PC 2007: 5.3 */
    put_be16(footer + F_CREATOR_VER + 2, 3);
    put_be64(footer + F_ORIG_SIZE, size);
    put_be64(footer + F_CUR_SIZE, size);
    put_be16(footer + F_CYLS, cyls);
    footer[F_HEADS] = heads;
    footer[F_SPT] = spt;
    put_be32(footer + F_TYPE, fixed ? VHD_FIXED : VHD_DYNAMIC);
    vpc_uuid_generate(footer + F_UUID);
    put_be32(footer + F_CHECKSUM, vpc_checksum(footer, sizeof(footer)));

    if (!fixed) {
        r = vpc_create_dynamic(f, footer, total_sectors);
        if (r < 0) {
            err_set(err, -r, "Unable to create or write VHD header");
            goto out;
        }
    } else {
        struct err e2;
        err_init(&e2);
        if ((r = blk_truncate(f, size + VHD_FOOTER_SIZE, false, BLK_PREALLOC_OFF, &e2)) < 0) {
            err_propagate(err, &e2);
            goto out;
        }
        if ((r = blk_pwrite(f, size, VHD_FOOTER_SIZE, footer, 0)) < 0) {
            err_set_errno(err, -r, "Unable to write VHD header");
            goto out;
        }
    }
    /* As qemu, which flushes at close and drops the error: a failing
     * flush does not fail the create. */
    blk_flush(f);
out:
    blk_close(f);
    return r;
}

static const struct opt_desc vpc_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "subformat", OPT_STRING, "Type of virtual hard disk format. Supported formats are "
      "{dynamic (default) | fixed} ", NULL },
    { "force_size", OPT_BOOL, "Force disk size calculation to use the actual size specified, "
      "rather than using the nearest CHS-based calculation", NULL },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver vpc_driver = {
    .name = "vpc",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct vpc_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .create_opts = vpc_create_opts,
    .probe = vpc_probe,
    .open = vpc_open,
    .close = vpc_close,
    .create = vpc_create,
    .pread = vpc_pread,
    .pwrite = vpc_pwrite,
    .block_status = vpc_block_status,
    .get_info = vpc_get_info,
    .has_zero_init = vpc_has_zero_init,
};
