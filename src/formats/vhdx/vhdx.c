/* The vhdx format driver: MS-VHDX v1.00 §2.1 (file identifier), §2.2
 * (headers and region table), §2.5 (BAT), §2.6 (metadata), with the
 * behaviour of qemu 7.2's block/vhdx.c: probe, open (log replay in
 * vhdx-log.c), read, write of dynamic and fixed images, create and check.
 *
 * Writes: a new payload block is placed at the 1 MiB-aligned end of the
 * file; its data is written and flushed, and only then is its BAT entry
 * updated — as qemu does, through the metadata log (vhdx-log.c writes one
 * entry and replays it at once), so the log region, headers and BAT end up
 * with the same bytes and the same allocation as qemu's (info's "disk
 * size" matches). Like qemu, the first guest-visible write updates both
 * headers with a new data write GUID.
 *
 * block_status answers as qemu 7.2's vhdx, which has none: every range is
 * data without a host offset (map --output json says "data": true
 * everywhere, human map refuses). Only differencing images, which qemu
 * cannot open at all, report ranges that fall through to the parent.
 *
 * Differencing images (§2.6.2.6 parent locator, §2.5.1 sector bitmap
 * blocks) are read-only here: the parent named by relative_path, else
 * volume_path, else absolute_win32_path becomes the backing file; a
 * partially present block reads each sector from this file or the parent
 * as its bit in the chunk's sector bitmap says.
 *
 * Invariants after open: block_size is a power of two in [1, 256] MiB, the
 * logical sector size is 512, the BAT has bat_entries entries (bat[] holds
 * the first bat_loaded of them, the rest read as zero: bat_get) and every
 * payload block of the virtual disk has an index below bat_entries. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "block/driver.h"
#include "formats/vhdx/vhdx.h"
#include "util/utf16.h"

#define VHDX_CREATOR "QEMU v7.2.22"

/* qemu's largest single request (INT_MAX rounded down to 512). */
#define VHDX_MAX_REQUEST 0x7ffffe00u

enum vhdx_type { VHDX_TYPE_DYNAMIC, VHDX_TYPE_FIXED };

int64_t vhdx_file_length(struct bds *bs)
{
    int64_t len = blk_getlength(bs->file);
    if (len < 0)
        return len;
    /* qemu sees file sizes in whole 512-byte sectors. */
    return (int64_t)align_up_u64((uint64_t)len, 512);
}

static int vhdx_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && !memcmp(head, "vhdxfile", 8) ? 100 : 0;
}

/* ------------------------------------------------------------ headers */

static int write_header(struct bds *file, const struct vhdx_header *h, uint64_t off, bool merge)
{
    uint8_t *buf = calloc(1, VHDX_HEADER_SIZE);
    int r;

    if (!buf)
        return -ENOMEM;
    /* The checksum covers the whole 4 KiB; keep what lies past the fields. */
    if (merge && (r = blk_pread(file, off, VHDX_HEADER_SIZE, buf)) < 0)
        goto out;
    vhdx_header_encode(buf, h);
    vhdx_checksum_set(buf, VHDX_HEADER_SIZE, 4);
    r = blk_pwrite(file, off, VHDX_HEADER_SIZE, buf, 0);
    if (r == 0)
        r = blk_flush(file);
out:
    free(buf);
    return r;
}

static int update_header(struct bds *bs, struct vhdx_state *s, bool new_data_guid,
                         const struct vhdx_guid *log_guid)
{
    int idx = !s->curr_header;
    uint64_t off = idx ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
    struct vhdx_header h = s->headers[s->curr_header];
    int r;

    /* The inactive slot may have been garbage: start from the active one. */
    h.sequence_number = s->headers[s->curr_header].sequence_number + 1;
    h.file_write_guid = s->session_guid;
    if (new_data_guid && (r = vhdx_guid_generate(&h.data_write_guid)) < 0)
        return r;
    if (log_guid)
        h.log_guid = *log_guid;
    if ((r = write_header(bs->file, &h, off, true)) < 0)
        return r;
    s->headers[idx] = h;
    s->curr_header = idx;
    return 0;
}

int vhdx_update_headers(struct bds *bs, struct vhdx_state *s, bool new_data_guid,
                        const struct vhdx_guid *log_guid)
{
    int r = update_header(bs, s, new_data_guid, log_guid);
    if (r < 0)
        return r;
    return update_header(bs, s, new_data_guid, log_guid);
}

int vhdx_user_visible_write(struct bds *bs, struct vhdx_state *s)
{
    if (!s->first_visible_write)
        return 0;
    s->first_visible_write = false;
    return vhdx_update_headers(bs, s, true, NULL);
}

static int parse_headers(struct bds *bs, struct vhdx_state *s, struct err *err)
{
    uint8_t *buf = malloc(VHDX_HEADER_SIZE);
    bool valid[2] = { false, false };
    int r = 0;

    if (!buf)
        return -ENOMEM;
    for (int i = 0; i < 2; i++) {
        uint64_t off = i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
        if ((r = blk_pread(bs->file, off, VHDX_HEADER_SIZE, buf)) < 0)
            goto out;
        vhdx_header_decode(buf, &s->headers[i]);
        valid[i] = vhdx_checksum_ok(buf, VHDX_HEADER_SIZE, 4) &&
                   s->headers[i].signature == VHDX_HEADER_SIGNATURE &&
                   s->headers[i].version == 1;
    }
    if (valid[0] && !valid[1]) {
        s->curr_header = 0;
    } else if (!valid[0] && valid[1]) {
        s->curr_header = 1;
    } else if (valid[0] && valid[1]) {
        uint64_t s1 = s->headers[0].sequence_number, s2 = s->headers[1].sequence_number;
        if (s1 > s2)
            s->curr_header = 0;
        else if (s2 > s1)
            s->curr_header = 1;
        else if (!memcmp(&s->headers[0], &s->headers[1], sizeof(s->headers[0])))
            s->curr_header = 0;     /* identical twins (Disk2VHD writes these) */
        else
            valid[0] = valid[1] = false;
    }
    if (!valid[0] && !valid[1])
        r = err_set(err, EINVAL, "No valid VHDX header found");
out:
    free(buf);
    return r;
}

/* ------------------------------------------------------------ regions */

/* qemu computes a region's end modulo 2^64 (unsigned, so defined) and
 * compares the wrapped value; so do we, to refuse the same tables. */
static uint64_t region_end(uint64_t start, uint64_t length)
{
    return start + length;
}

static int region_check(struct vhdx_state *s, uint64_t start, uint64_t length, struct err *err)
{
    uint64_t end = region_end(start, length);

    /* Most recently registered first, as qemu walks its list. */
    for (size_t i = s->n_regions; i-- > 0;) {
        const struct vhdx_range *g = &s->regions[i];
        if (!(start >= g->end || end <= g->start)) {
            char tail[24] = "";
            if (g->end)
                snprintf(tail, sizeof(tail), "%" PRIu64, g->end);
            return err_set(err, EINVAL, "VHDX region %" PRIu64 "-%" PRIu64
                           " overlaps with region %" PRIu64 "-%s", start, end, g->start, tail);
        }
    }
    return 0;
}

static void region_register(struct vhdx_state *s, uint64_t start, uint64_t length)
{
    s->regions[s->n_regions].start = start;
    s->regions[s->n_regions].end = region_end(start, length);
    s->n_regions++;
}

static int open_region_table(struct bds *bs, struct vhdx_state *s)
{
    uint8_t *buf = malloc(VHDX_HEADER_BLOCK_SIZE);
    bool have_bat = false, have_meta = false;
    uint32_t count;
    int r;

    if (!buf)
        return -ENOMEM;
    if ((r = blk_pread(bs->file, VHDX_REGION_TABLE1_OFFSET, VHDX_HEADER_BLOCK_SIZE, buf)) < 0)
        goto out;
    r = -EINVAL;
    if (!vhdx_checksum_ok(buf, VHDX_HEADER_BLOCK_SIZE, 4))
        goto out;
    if (get_le32(buf) != VHDX_REGION_SIGNATURE)
        goto out;
    count = get_le32(buf + 8);
    if (count > VHDX_REGION_MAX_ENTRIES)
        goto out;
    for (uint32_t i = 0; i < count; i++) {
        struct vhdx_region_entry e;
        vhdx_region_entry_decode(buf + VHDX_REGION_HDR_SIZE + (size_t)i * VHDX_REGION_ENTRY_SIZE, &e);
        struct err ov;
        err_init(&ov);
        if ((r = region_check(s, e.file_offset, e.length, &ov)) < 0) {
            /* qemu reports an overlap here itself (error_report) and fails
             * the open without a message of its own */
            blk_message("%s: %s", blk_prog_name(), ov.msg);
            goto out;
        }
        region_register(s, e.file_offset, e.length);
        r = -EINVAL;
        if (vhdx_guid_eq(&e.guid, &vhdx_bat_guid)) {
            if (have_bat)
                goto out;
            have_bat = true;
            s->bat_rt = e;
        } else if (vhdx_guid_eq(&e.guid, &vhdx_metadata_guid)) {
            if (have_meta)
                goto out;
            have_meta = true;
            s->metadata_rt = e;
        } else if (e.data_bits & VHDX_REGION_ENTRY_REQUIRED) {
            r = -ENOTSUP;           /* a required region we do not know */
            goto out;
        }
    }
    r = have_bat && have_meta ? 0 : -EINVAL;
out:
    free(buf);
    return r;
}

/* ------------------------------------------------------------ metadata */

enum {
    META_FILE_PARAMS = 1 << 0,
    META_VIRTUAL_SIZE = 1 << 1,
    META_PAGE83 = 1 << 2,
    META_LOGICAL_SECTOR = 1 << 3,
    META_PHYS_SECTOR = 1 << 4,
    META_PARENT_LOCATOR = 1 << 5,
    META_ALL = META_FILE_PARAMS | META_VIRTUAL_SIZE | META_PAGE83 | META_LOGICAL_SECTOR |
               META_PHYS_SECTOR,
};

static const struct {
    const struct vhdx_guid *guid;
    unsigned bit;
} meta_items[] = {
    { &vhdx_file_param_guid, META_FILE_PARAMS },
    { &vhdx_virtual_size_guid, META_VIRTUAL_SIZE },
    { &vhdx_page83_guid, META_PAGE83 },
    { &vhdx_logical_sector_guid, META_LOGICAL_SECTOR },
    { &vhdx_phys_sector_guid, META_PHYS_SECTOR },
    { &vhdx_parent_locator_guid, META_PARENT_LOCATOR },
};

/* Read a metadata item of len bytes; it must lie inside the region. */
static int read_meta_item(struct bds *bs, const struct vhdx_state *s,
                          const struct vhdx_metadata_entry *e, uint32_t len, uint8_t *out)
{
    uint64_t end, off;
    if (ckd_add(&end, (uint64_t)e->offset, len) || end > s->metadata_rt.length ||
        ckd_add(&off, s->metadata_rt.file_offset, (uint64_t)e->offset))
        return -EINVAL;
    return blk_pread(bs->file, off, len, out);
}

#define VHDX_LOCATOR_MAX (64 * VHDX_KiB)
#define VHDX_LOCATOR_ENTRIES_MAX 256

/* The parent path from a parent locator item (§2.6.2.6): a 20-byte header
 * (locator type GUID, reserved, key-value count) then 12-byte entries of
 * key/value offsets (from the item start) and lengths, UTF-16LE text. */
static char *parse_parent_locator(const uint8_t *loc, uint32_t len)
{
    static const char *const keys[] = { "relative_path", "volume_path", "absolute_win32_path" };
    char *found[3] = { NULL, NULL, NULL }, *path = NULL;
    struct vhdx_guid type;
    uint32_t count;

    if (len < 20)
        return NULL;
    vhdx_guid_decode(loc, &type);
    if (!vhdx_guid_eq(&type, &vhdx_parent_vhdx_guid))
        return NULL;
    count = get_le16(loc + 18);
    if (count > VHDX_LOCATOR_ENTRIES_MAX || 20 + (uint64_t)count * 12 > len)
        return NULL;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = loc + 20 + i * 12;
        uint64_t ko = get_le32(e), vo = get_le32(e + 4), kl = get_le16(e + 8), vl = get_le16(e + 10);
        if (ko + kl > len || vo + vl > len)
            continue;
        char *key = utf16_to_utf8(loc + ko, (size_t)kl, false);
        for (size_t k = 0; key && k < 3; k++)
            if (!strcmp(key, keys[k]) && !found[k])
                found[k] = utf16_to_utf8(loc + vo, (size_t)vl, false);
        free(key);
    }
    for (size_t k = 0; k < 3; k++) {
        if (!path && found[k] && found[k][0])
            path = found[k];
        else
            free(found[k]);
    }
    if (path) {
        for (char *c = path; *c; c++)
            if (*c == '\\')
                *c = '/';
        if (!strncmp(path, "./", 2))
            memmove(path, path + 2, strlen(path + 2) + 1);
    }
    return path;
}

static int open_parent(struct bds *bs, struct vhdx_state *s, const struct vhdx_metadata_entry *e)
{
    uint8_t *loc;
    char *path;
    int r;

    if (e->length > VHDX_LOCATOR_MAX)
        return -EINVAL;
    loc = malloc(e->length ? e->length : 1);
    if (!loc)
        return -ENOMEM;
    r = read_meta_item(bs, s, e, e->length, loc);
    path = r < 0 ? NULL : parse_parent_locator(loc, e->length);
    free(loc);
    if (r < 0)
        return r;
    if (!path)
        return -EINVAL;
    bs->backing_file = path;
    bs->backing_format = strdup("vhdx");
    s->diff = true;
    s->sb_offset = UINT64_MAX;
    return bs->backing_format ? 0 : -ENOMEM;
}

static int parse_metadata(struct bds *bs, struct vhdx_state *s)
{
    struct vhdx_metadata_entry ent[6];
    uint8_t *buf = malloc(VHDX_METADATA_TABLE_SIZE);
    uint8_t item[16];
    unsigned present = 0;
    uint32_t count;
    int r;

    if (!buf)
        return -ENOMEM;
    if ((r = blk_pread(bs->file, s->metadata_rt.file_offset, VHDX_METADATA_TABLE_SIZE, buf)) < 0)
        goto out;
    r = -EINVAL;
    if (get_le64(buf) != VHDX_METADATA_SIGNATURE)
        goto out;
    count = get_le16(buf + 10);
    if ((uint64_t)count * VHDX_METADATA_ENTRY_SIZE > VHDX_METADATA_TABLE_SIZE - VHDX_METADATA_HDR_SIZE)
        goto out;
    for (uint32_t i = 0; i < count; i++) {
        struct vhdx_metadata_entry e;
        size_t k;
        vhdx_metadata_entry_decode(buf + VHDX_METADATA_HDR_SIZE + (size_t)i * VHDX_METADATA_ENTRY_SIZE, &e);
        for (k = 0; k < sizeof(meta_items) / sizeof(meta_items[0]); k++)
            if (vhdx_guid_eq(&e.item_id, meta_items[k].guid))
                break;
        if (k < sizeof(meta_items) / sizeof(meta_items[0])) {
            if (present & meta_items[k].bit)
                goto out;           /* duplicate item */
            present |= meta_items[k].bit;
            ent[k] = e;
        } else if (e.data_bits & VHDX_META_IS_REQUIRED) {
            r = -ENOTSUP;
            goto out;
        }
    }
    if ((present & META_ALL) != META_ALL) {
        r = -ENOTSUP;
        goto out;
    }
    if ((r = read_meta_item(bs, s, &ent[0], 8, item)) < 0)
        goto out;
    s->block_size = get_le32(item);
    s->file_param_bits = get_le32(item + 4);
    if (s->file_param_bits & VHDX_PARAMS_HAS_PARENT) {
        /* The parent locator is required (§2.6.2.6). */
        r = -EINVAL;
        if (!(present & META_PARENT_LOCATOR) || (r = open_parent(bs, s, &ent[5])) < 0)
            goto out;
    }
    if ((r = read_meta_item(bs, s, &ent[1], 8, item)) < 0)
        goto out;
    s->virtual_disk_size = get_le64(item);
    if ((r = read_meta_item(bs, s, &ent[3], 4, item)) < 0)
        goto out;
    s->logical_sector_size = get_le32(item);
    if ((r = read_meta_item(bs, s, &ent[4], 4, item)) < 0)
        goto out;
    s->physical_sector_size = get_le32(item);
    /* Page 83 data is informational (qemu does not even read it). */
    if (read_meta_item(bs, s, &ent[2], 16, item) == 0)
        vhdx_guid_decode(item, &s->page83);

    r = -EINVAL;
    if (s->block_size < VHDX_BLOCK_SIZE_MIN || s->block_size > VHDX_BLOCK_SIZE_MAX)
        goto out;
    if (s->logical_sector_size != 512) {
        r = -ENOTSUP;
        goto out;
    }
    if (!is_pow2_u64(s->block_size))
        goto out;
    s->chunk_ratio = vhdx_chunk_ratio(s->logical_sector_size, s->block_size);
    if (!is_pow2_u64(s->chunk_ratio))
        goto out;
    s->chunk_ratio_bits = vhdx_ctz64(s->chunk_ratio);
    s->block_size_bits = vhdx_ctz64(s->block_size);
    r = 0;
out:
    free(buf);
    return r;
}

/* ------------------------------------------------------------ BAT */

static uint64_t bat_get(const struct vhdx_state *s, uint64_t i)
{
    return i < s->bat_loaded ? s->bat[i] : 0;
}

/* Entries past bat_loaded are stored only once a write sets them. */
static int bat_set(struct vhdx_state *s, uint64_t i, uint64_t v)
{
    if (i >= s->bat_loaded) {
        uint64_t n = max_u64(i + 1, min_u64(2 * (uint64_t)s->bat_loaded, s->bat_entries));
        uint64_t *t = reallocarray(s->bat, (size_t)n, sizeof(*t));
        if (!t)
            return -ENOMEM;
        memset(t + s->bat_loaded, 0, (size_t)(n - s->bat_loaded) * sizeof(*t));
        s->bat = t;
        s->bat_loaded = (uint32_t)n;
    }
    s->bat[i] = v;
    return 0;
}

/* qemu's vhdx_check_bat_entries: every FULLY_PRESENT entry must lie inside
 * the file, and payload blocks must not overlap the log or the regions.
 * With errcnt NULL the first problem fails (open); else problems are
 * counted and logged (check). Either way qemu reports each problem itself
 * (error_report), so an open fails with only the errno of its own. */
static int check_bat_entries(struct bds *bs, struct vhdx_state *s, int64_t *errcnt,
                             struct blk_check_result *res)
{
    int64_t flen = vhdx_file_length(bs);
    uint64_t payblocks = s->chunk_ratio;
    int r = 0;
    char msg[ERR_MSG_MAX];

    if (flen < 0) {
        if (res)
            blk_check_log(res, "qemu-img: Could not determinate VHDX image file size.");
        else
            blk_message("%s: Could not determinate VHDX image file size.", blk_prog_name());
        return (int)flen;
    }
#define BAT_PROBLEM(...) do {                                           \
        snprintf(msg, sizeof(msg), __VA_ARGS__);                        \
        r = -EINVAL;                                                    \
        if (!errcnt) {                                                  \
            blk_message("%s: %s", blk_prog_name(), msg);                \
            return r;                                                   \
        }                                                               \
        blk_check_log(res, "qemu-img: %s", msg);                        \
        (*errcnt)++;                                                    \
    } while (0)

    for (uint64_t i = 0; i < s->bat_loaded; i++) {
        if (vhdx_bat_state(bat_get(s, i)) != VHDX_PAYLOAD_FULLY_PRESENT)
            continue;
        uint64_t off = vhdx_bat_offset(bat_get(s, i));
        /* qemu measures the block against the BAT index (bitmap entries
         * included); when that passes the end the wrap gives block_size. */
        uint64_t left = bs->total_size - i * (uint64_t)s->block_size;
        uint64_t blen = min_u64(s->block_size, left);

        if (off > (uint64_t)INT64_MAX - s->block_size)
            BAT_PROBLEM("VHDX BAT entry %" PRIu64 " offset overflow.", i);
        if (off >= (uint64_t)flen)
            BAT_PROBLEM("VHDX BAT entry %" PRIu64 " start offset %" PRIu64 " points after end "
                        "of file (%" PRIi64 "). Image has probably been truncated.", i, off, flen);
        else if (off + blen > (uint64_t)flen)
            BAT_PROBLEM("VHDX BAT entry %" PRIu64 " end offset %" PRIu64 " points after end "
                        "of file (%" PRIi64 "). Image has probably been truncated.",
                        i, off + blen - 1, flen);
        if (payblocks--) {
            struct err e2;
            err_init(&e2);
            if (region_check(s, off, s->block_size, &e2) < 0)
                BAT_PROBLEM("%s", e2.msg);
        } else {
            payblocks = s->chunk_ratio;
        }
    }
#undef BAT_PROBLEM
    return r;
}

static int load_bat(struct bds *bs, struct vhdx_state *s)
{
    uint64_t blocks, bytes, held;
    uint8_t *raw;
    int64_t flen;
    int r;

    blocks = div_round_up_u64(s->virtual_disk_size, s->block_size);
    /* qemu counts in 32 bits; beyond that its arithmetic wraps, refuse. */
    if (blocks > UINT32_MAX / 2)
        return -EINVAL;
    if (s->diff) {
        /* A sector bitmap entry closes every chunk, the last one too. */
        uint64_t chunks = div_round_up_u64(blocks, s->chunk_ratio);
        if (chunks * (s->chunk_ratio + 1) > UINT32_MAX)
            return -EINVAL;
        s->bat_entries = (uint32_t)(chunks * (s->chunk_ratio + 1));
        s->sb = malloc((size_t)(s->block_size / 512 / 8));
        if (!s->sb)
            return -ENOMEM;
    } else {
        s->bat_entries = vhdx_bat_entries(s->virtual_disk_size, s->block_size,
                                          s->chunk_ratio_bits);
    }
    if (s->bat_entries > s->bat_rt.length / 8)
        return -EINVAL;
    /* qemu reads the whole region in one request; past its request limit
     * that fails with EIO. */
    if (s->bat_rt.length > VHDX_MAX_REQUEST)
        return -EIO;
    /* past qemu's request limit a read of the region fails with EIO */
    if (s->bat_rt.file_offset > BLK_MAX_LENGTH - s->bat_rt.length)
        return -EIO;
    /* The region may run past the end of the file, whose reads give zeros
     * (entries not present): keep only what the file holds, so the table
     * never outgrows the file. */
    bytes = (uint64_t)s->bat_entries * 8;
    flen = vhdx_file_length(bs);
    if (flen < 0)
        return (int)flen;
    held = (uint64_t)flen > s->bat_rt.file_offset ?
           min_u64(bytes, (uint64_t)flen - s->bat_rt.file_offset) : 0;
    s->bat_loaded = (uint32_t)div_round_up_u64(held, 8);
    bytes = (uint64_t)s->bat_loaded * 8;
    s->bat = malloc(bytes ? (size_t)bytes : 1);
    raw = (uint8_t *)s->bat;
    if (!s->bat)
        return -ENOMEM;
    if (bytes && (r = blk_pread(bs->file, s->bat_rt.file_offset, bytes, raw)) < 0)
        return r;
    for (uint64_t i = 0; i < s->bat_loaded; i++)
        s->bat[i] = get_le64(raw + i * 8);
    return 0;
}

/* ------------------------------------------------------------ open */

static void vhdx_close(struct bds *bs)
{
    struct vhdx_state *s = bs->opaque;
    free(s->bat);
    s->bat = NULL;
    free(s->regions);
    s->regions = NULL;
    free(s->sb);
    s->sb = NULL;
}

static int vhdx_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct vhdx_state *s = bs->opaque;
    uint8_t sig[8];
    int r;

    (void)opts;
    s->first_visible_write = true;
    /* Log region plus at most 2047 region table entries. */
    s->regions = calloc(VHDX_REGION_MAX_ENTRIES + 1, sizeof(*s->regions));
    if (!s->regions)
        return -ENOMEM;
    if ((r = blk_pread(bs->file, 0, sizeof(sig), sig)) < 0)
        goto fail;
    if (memcmp(sig, "vhdxfile", 8)) {
        r = -EINVAL;
        goto fail;
    }
    if ((r = vhdx_guid_generate(&s->session_guid)) < 0)
        goto fail;
    if ((r = parse_headers(bs, s, err)) < 0)
        goto fail;
    region_register(s, s->headers[s->curr_header].log_offset,
                    s->headers[s->curr_header].log_length);
    if ((r = vhdx_log_parse(bs, s, &s->log_replayed_on_open, err)) < 0)
        goto fail;
    if ((r = open_region_table(bs, s)) < 0)
        goto fail;
    if ((r = parse_metadata(bs, s)) < 0)
        goto fail;
    if (s->diff && (flags & BLK_O_RDWR)) {
        r = err_set(err, ENOTSUP, "Differencing VHDX images can only be opened read-only");
        goto fail;
    }
    bs->total_size = s->virtual_disk_size & ~(uint64_t)511;
    if ((r = load_bat(bs, s)) < 0)
        goto fail;
    if (!(flags & BLK_O_CHECK) && (r = check_bat_entries(bs, s, NULL, NULL)) < 0)
        goto fail;
    bs->request_alignment = 1;
    return 0;

fail:
    vhdx_close(bs);
    return r;
}

/* ------------------------------------------------------------ data */

/* The BAT index of the block holding guest offset off, or -EIO when the
 * table is too short (cannot happen after open's checks). */
static int64_t bat_index_of(const struct vhdx_state *s, uint64_t off)
{
    uint64_t idx = vhdx_bat_index(off >> s->block_size_bits, s->chunk_ratio_bits);
    return idx < s->bat_entries ? (int64_t)idx : -EIO;
}

/* Differencing: is the block's range at off present in this file? Loads
 * the block's part of its chunk's sector bitmap into s->sb and returns the
 * length of the run of sectors sharing off's bit (capped at n); *present
 * gets the bit. Bits are in sector order, least significant bit first. */
static int64_t sector_run(struct bds *bs, struct vhdx_state *s, uint64_t off, uint64_t n,
                          bool *present)
{
    uint64_t block = off >> s->block_size_bits;
    uint64_t sb_idx = (block >> s->chunk_ratio_bits) * (s->chunk_ratio + 1) + s->chunk_ratio;
    uint64_t bytes = s->block_size / 512 / 8, at;
    uint64_t in = off & (s->block_size - 1), first = in / 512, i;
    int r;

    if (sb_idx >= s->bat_entries || vhdx_bat_state(bat_get(s, sb_idx)) != VHDX_SB_PRESENT)
        return -EIO;
    at = vhdx_bat_offset(bat_get(s, sb_idx)) + (block & (s->chunk_ratio - 1)) * bytes;
    if (at < VHDX_HEADER_SECTION_END)
        return -EIO;
    if (s->sb_offset != at) {
        s->sb_offset = UINT64_MAX;
        if ((r = blk_pread(bs->file, at, bytes, s->sb)) < 0)
            return r;
        s->sb_offset = at;
    }
#define SB_BIT(k) ((s->sb[(k) / 8] >> ((k) % 8)) & 1)
    *present = SB_BIT(first);
    uint64_t last = (in + n + 511) / 512;
    for (i = first + 1; i < last && SB_BIT(i) == *present; i++)
        ;
#undef SB_BIT
    return (int64_t)min_u64(n, i * 512 - in);
}

/* How this layer holds [off, off+n) of one block: 1 data at *host, 0 read
 * the parent, 2 zeros; *n shrinks to the run. */
static int locate(struct bds *bs, struct vhdx_state *s, uint64_t off, uint64_t *n,
                  uint64_t *host)
{
    int64_t idx = bat_index_of(s, off);
    bool present;

    if (idx < 0)
        return (int)idx;
    switch (vhdx_bat_state(bat_get(s, idx))) {
    case VHDX_PAYLOAD_ZERO:
        return 2;
    case VHDX_PAYLOAD_FULLY_PRESENT:
        break;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT: {
        int64_t run;
        if (!s->diff)
            return -EIO;
        run = sector_run(bs, s, off, *n, &present);
        if (run < 0)
            return (int)run;
        *n = (uint64_t)run;
        if (!present)
            return 0;
        break;
    }
    case VHDX_PAYLOAD_NOT_PRESENT:
    case VHDX_PAYLOAD_UNDEFINED:
    case VHDX_PAYLOAD_UNMAPPED:
    case VHDX_PAYLOAD_UNMAPPED_V095:
        return s->diff ? 0 : 2;
    default:
        return -EIO;
    }
    *host = vhdx_bat_offset(bat_get(s, idx));
    if (*host < VHDX_HEADER_SECTION_END)
        return -EIO;
    *host += off & (s->block_size - 1);
    return 1;
}

/* A read-only node's reads run without the node lock
 * (BLK_THREAD_READS_UNLOCKED_RO): the BAT does not change, and the lock is
 * taken here only around locate(), whose sector bitmap is cached. */
static int vhdx_pread_diff(struct bds *bs, uint64_t off, uint64_t len, uint8_t *p)
{
    struct vhdx_state *s = bs->opaque;

    while (len) {
        uint64_t n = min_u64(len, s->block_size - (off & (s->block_size - 1))), host = 0;
        blk_pread_lock(bs);
        int r = locate(bs, s, off, &n, &host);
        blk_pread_unlock(bs);
        if (r == 1)
            r = blk_pread(bs->file, host, n, p);
        else if (r == 0)
            r = blk_read_backing(bs, off, n, p);
        if (r == 2) {
            memset(p, 0, (size_t)n);
            r = 0;
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vhdx_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, struct bds **file)
{
    struct vhdx_state *s = bs->opaque;
    uint64_t host = 0;
    int r;

    *pnum = len;
    *map = off;
    *file = NULL;
    if (!s->diff)
        return BLK_STATUS_DATA;     /* qemu's answer: see the top of the file */
    *pnum = min_u64(len, s->block_size - (off & (s->block_size - 1)));
    r = locate(bs, s, off, pnum, &host);
    if (r < 0)
        return r;
    if (r == 1) {
        *map = host;
        *file = bs->file;
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID;
    }
    return r == 2 ? BLK_STATUS_ZERO : 0;
}

static int vhdx_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct vhdx_state *s = bs->opaque;
    uint8_t *p = buf;

    if (s->diff)
        return vhdx_pread_diff(bs, off, len, p);

    while (len) {
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = min_u64(len, s->block_size - in);
        int64_t idx = bat_index_of(s, off);
        int r;

        if (idx < 0)
            return (int)idx;
        switch (vhdx_bat_state(bat_get(s, idx))) {
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_UNMAPPED_V095:
        case VHDX_PAYLOAD_ZERO:
            memset(p, 0, (size_t)n);
            break;
        case VHDX_PAYLOAD_FULLY_PRESENT: {
            uint64_t host = vhdx_bat_offset(bat_get(s, idx));
            if (host < VHDX_HEADER_SECTION_END)
                return -EIO;
            if ((r = blk_pread(bs->file, host + in, n, p)) < 0)
                return r;
            break;
        }
        default:                /* partially present: differencing only */
            return -EIO;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int write_bat_entry(struct bds *bs, struct vhdx_state *s, uint64_t idx)
{
    uint8_t le[8];
    put_le64(le, bat_get(s, idx));
    return vhdx_log_write_and_flush(bs, s, le, sizeof(le), s->bat_rt.file_offset + idx * 8);
}

static int vhdx_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct vhdx_state *s = bs->opaque;
    const uint8_t *p = buf;
    int r;

    (void)flags;
    if ((r = vhdx_user_visible_write(bs, s)) < 0)
        return r;
    while (len) {
        uint64_t in = off & (s->block_size - 1);
        uint64_t n = min_u64(len, s->block_size - in);
        int64_t idx = bat_index_of(s, off);
        uint64_t host;

        if (idx < 0)
            return (int)idx;
        switch (vhdx_bat_state(bat_get(s, idx))) {
        case VHDX_PAYLOAD_FULLY_PRESENT:
            host = vhdx_bat_offset(bat_get(s, idx));
            if (host < VHDX_HEADER_SECTION_END)
                return -EFAULT;
            if ((r = blk_pwrite(bs->file, host + in, n, p, 0)) < 0)
                return r;
            break;
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_UNMAPPED_V095:
        case VHDX_PAYLOAD_ZERO: {
            /* New block at the 1 MiB-aligned end of the file; growing the
             * file makes the rest of the block read as zeros. */
            int64_t flen = blk_getlength(bs->file);
            uint64_t old = bat_get(s, idx), end;
            if (flen < 0)
                return (int)flen;
            if ((uint64_t)flen > (uint64_t)INT64_MAX - VHDX_MiB)
                return -EINVAL;
            host = align_up_u64((uint64_t)flen, VHDX_MiB);
            if (ckd_add(&end, host, (uint64_t)s->block_size) || end > (uint64_t)INT64_MAX ||
                host > VHDX_BAT_OFFSET_MASK)
                return -EINVAL;
            if ((r = blk_truncate(bs->file, end, false, BLK_PREALLOC_OFF, NULL)) < 0)
                return r;
            if ((r = blk_pwrite(bs->file, host + in, n, p, 0)) < 0)
                return r;
            if ((r = blk_flush(bs->file)) < 0)
                return r;
            if ((r = bat_set(s, (uint64_t)idx, host | VHDX_PAYLOAD_FULLY_PRESENT)) < 0)
                return r;
            if ((r = write_bat_entry(bs, s, (uint64_t)idx)) < 0) {
                s->bat[idx] = old;
                return r;
            }
            break;
        }
        default:
            return -EIO;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* ------------------------------------------------------------ upkeep */

static int vhdx_get_info(struct bds *bs, struct blk_info *bi)
{
    struct vhdx_state *s = bs->opaque;
    bi->cluster_size = s->block_size;
    bi->has_dirty_flag = true;
    bi->is_dirty = false;
    return 0;
}

static int vhdx_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    struct vhdx_state *s = bs->opaque;
    (void)fix;
    (void)err;
    /* A dirty log was replayed by the read-write open that check -r does. */
    if (s->log_replayed_on_open)
        res->corruptions_fixed++;
    check_bat_entries(bs, s, &res->corruptions, res);
    return 0;
}

static bool vhdx_has_zero_init(struct bds *bs)
{
    struct vhdx_state *s = bs->opaque;
    if (!s->bat_entries)
        return true;
    if (vhdx_bat_state(bat_get(s, 0)) == VHDX_PAYLOAD_FULLY_PRESENT)
        return blk_has_zero_init(bs->file);     /* fixed */
    return true;
}

/* ------------------------------------------------------------ create */

struct create_params {
    uint64_t size;
    uint64_t log_size;
    uint64_t block_size;
    bool zero_blocks;
    enum vhdx_type type;
};

static uint64_t round_up_wrap(uint64_t v, uint64_t a)
{
    /* qemu's ROUND_UP wraps on overflow; so do we, for the same messages. */
    return (v + a - 1) & ~(a - 1);
}

static int create_params(struct kvopts *o, struct create_params *p, struct err *err)
{
    const char *v;
    int r;

    if ((r = kvopts_get_size(o, "size", 0, &p->size, err)) < 0)
        return r;
    p->type = VHDX_TYPE_DYNAMIC;
    v = kvopts_get(o, "subformat");
    if (v) {
        if (!strcmp(v, "dynamic"))
            p->type = VHDX_TYPE_DYNAMIC;
        else if (!strcmp(v, "fixed"))
            p->type = VHDX_TYPE_FIXED;
        else
            return err_set(err, EINVAL, "Parameter 'subformat' does not accept value '%s'", v);
    }
    if ((r = kvopts_get_bool(o, "block_state_zero", true, &p->zero_blocks, err)) < 0)
        return r;
    p->size = round_up_wrap(p->size, 512);

    p->log_size = VHDX_DEFAULT_LOG_SIZE;
    if (kvopts_has(o, "log_size")) {
        if ((r = kvopts_get_size(o, "log_size", 0, &p->log_size, err)) < 0)
            return r;
        p->log_size = round_up_wrap(p->log_size, VHDX_MiB);
    }
    p->block_size = 0;
    if (kvopts_has(o, "block_size")) {
        if ((r = kvopts_get_size(o, "block_size", 0, &p->block_size, err)) < 0)
            return r;
        p->block_size = round_up_wrap(p->block_size, VHDX_MiB);
        if (p->block_size > VHDX_BLOCK_SIZE_MAX)
            p->block_size = VHDX_BLOCK_SIZE_MAX;
    }

    if (p->size > VHDX_MAX_IMAGE_SIZE)
        return err_set(err, EINVAL, "Image size too large; max of 64TB");
    if (p->log_size > UINT32_MAX)
        return err_set(err, EINVAL, "Log size must be smaller than 4 GB");
    if (p->log_size < VHDX_MiB || p->log_size % VHDX_MiB)
        return err_set(err, EINVAL, "Log size must be a multiple of 1 MB");
    if (!p->block_size) {
        if (p->size > 32ULL * 1024 * 1024 * VHDX_MiB)
            p->block_size = 64 * VHDX_MiB;
        else if (p->size > 100ULL * 1024 * VHDX_MiB)
            p->block_size = 32 * VHDX_MiB;
        else if (p->size > 1024 * VHDX_MiB)
            p->block_size = 16 * VHDX_MiB;
        else
            p->block_size = 8 * VHDX_MiB;
    }
    if (p->block_size < VHDX_MiB || p->block_size % VHDX_MiB)
        return err_set(err, EINVAL, "Block size must be a multiple of 1 MB");
    if (!is_pow2_u64(p->block_size))
        return err_set(err, EINVAL, "Block size must be a power of two");
    if (p->block_size > VHDX_BLOCK_SIZE_MAX)
        return err_set(err, EINVAL, "Block size must not exceed %" PRIu64,
                       (uint64_t)VHDX_BLOCK_SIZE_MAX);
    return 0;
}

static int create_headers(struct bds *f, const struct create_params *p)
{
    struct vhdx_header h = {
        .signature = VHDX_HEADER_SIGNATURE,
        .version = 1,
        .log_version = 0,
        .log_length = (uint32_t)p->log_size,
        .log_offset = VHDX_HEADER_SECTION_END,
    };
    uint32_t seq;
    int r;

    if (getrandom(&seq, sizeof(seq), 0) != (ssize_t)sizeof(seq))
        seq = 1;
    h.sequence_number = seq;
    if ((r = vhdx_guid_generate(&h.file_write_guid)) < 0 ||
        (r = vhdx_guid_generate(&h.data_write_guid)) < 0)
        return r;
    if ((r = write_header(f, &h, VHDX_HEADER1_OFFSET, false)) < 0)
        return r;
    h.sequence_number++;
    return write_header(f, &h, VHDX_HEADER2_OFFSET, false);
}

/* Region tables, BAT and the file's length; returns the metadata offset. */
static int create_regions_and_bat(struct bds *f, const struct create_params *p,
                                  uint64_t *meta_off, struct err *err)
{
    uint32_t bs = (uint32_t)p->block_size;
    uint64_t cr = vhdx_chunk_ratio(512, bs);
    unsigned bits = vhdx_ctz64(cr);
    uint32_t entries = vhdx_bat_entries(p->size, bs, bits);
    uint32_t bat_len = (uint32_t)round_up_wrap((uint64_t)entries * 8, VHDX_MiB);
    uint64_t bat_off = align_up_u64(VHDX_HEADER_SECTION_END + p->log_size, VHDX_MiB);
    uint64_t data_off = bat_off + bat_len + 5 * VHDX_MiB;
    uint8_t *rt = NULL, *bat = NULL;
    int r;

    *meta_off = align_up_u64(bat_off + bat_len, VHDX_MiB);
    r = blk_truncate(f, p->type == VHDX_TYPE_FIXED ? data_off + p->size : data_off, false,
                     BLK_PREALLOC_OFF, err);
    if (r < 0)
        goto out;
    if (p->type == VHDX_TYPE_FIXED || p->zero_blocks || !blk_has_zero_init(f)) {
        int state = p->type == VHDX_TYPE_FIXED ? VHDX_PAYLOAD_FULLY_PRESENT
                                               : VHDX_PAYLOAD_NOT_PRESENT;
        if (p->zero_blocks)
            state = VHDX_PAYLOAD_ZERO;
        if (bat_len > VHDX_MAX_REQUEST) {
            r = err_set_errno(err, EIO, "Failed to write the BAT");
            goto out;
        }
        bat = calloc(1, bat_len ? bat_len : 1);
        if (!bat) {
            r = err_set(err, ENOMEM, "Failed to allocate memory for the BAT");
            goto out;
        }
        for (uint64_t blk = 0; blk * bs < p->size; blk++) {
            uint64_t idx = vhdx_bat_index(blk, bits);
            uint64_t e = (uint64_t)state;
            if (state == VHDX_PAYLOAD_FULLY_PRESENT)
                e |= align_up_u64(data_off + blk * bs, VHDX_MiB);
            if (idx < entries)
                put_le64(bat + idx * 8, e);
        }
        if ((r = blk_pwrite(f, bat_off, bat_len, bat, 0)) < 0) {
            err_set_errno(err, -r, "Failed to write the BAT");
            goto out;
        }
    }

    rt = calloc(1, VHDX_HEADER_BLOCK_SIZE);
    if (!rt) {
        r = -ENOMEM;
        goto out;
    }
    put_le32(rt, VHDX_REGION_SIGNATURE);
    put_le32(rt + 8, 2);
    struct vhdx_region_entry e_bat = { vhdx_bat_guid, bat_off, bat_len, 0 };
    struct vhdx_region_entry e_meta = { vhdx_metadata_guid, *meta_off, (uint32_t)VHDX_MiB, 0 };
    vhdx_region_entry_encode(rt + VHDX_REGION_HDR_SIZE, &e_bat);
    vhdx_region_entry_encode(rt + VHDX_REGION_HDR_SIZE + VHDX_REGION_ENTRY_SIZE, &e_meta);
    vhdx_checksum_set(rt, VHDX_HEADER_BLOCK_SIZE, 4);
    if ((r = blk_pwrite(f, VHDX_REGION_TABLE1_OFFSET, VHDX_HEADER_BLOCK_SIZE, rt, 0)) < 0) {
        err_set_errno(err, -r, "Failed to write first region table");
        goto out;
    }
    if ((r = blk_pwrite(f, VHDX_REGION_TABLE2_OFFSET, VHDX_HEADER_BLOCK_SIZE, rt, 0)) < 0) {
        err_set_errno(err, -r, "Failed to write second region table");
        goto out;
    }
out:
    free(rt);
    free(bat);
    return r;
}

static int create_metadata(struct bds *f, const struct create_params *p, uint64_t meta_off)
{
    static const struct {
        const struct vhdx_guid *guid;
        uint32_t len, flags;
    } items[] = {
        { &vhdx_file_param_guid, 8, VHDX_META_IS_REQUIRED },
        { &vhdx_virtual_size_guid, 8, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK },
        { &vhdx_page83_guid, 16, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK },
        { &vhdx_logical_sector_guid, 4, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK },
        { &vhdx_phys_sector_guid, 4, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK },
    };
    uint8_t data[40] = { 0 };
    uint8_t *table = calloc(1, VHDX_METADATA_TABLE_SIZE);
    struct vhdx_guid page83;
    uint32_t off = (uint32_t)VHDX_METADATA_TABLE_SIZE;
    int r;

    if (!table)
        return -ENOMEM;
    if ((r = vhdx_guid_generate(&page83)) < 0)
        goto out;
    put_le32(data, (uint32_t)p->block_size);
    put_le32(data + 4, p->type == VHDX_TYPE_FIXED ? VHDX_PARAMS_LEAVE_ALLOCATED : 0);
    put_le64(data + 8, p->size);
    vhdx_guid_encode(data + 16, &page83);
    put_le32(data + 32, 512);
    put_le32(data + 36, 512);

    put_le64(table, VHDX_METADATA_SIGNATURE);
    put_le16(table + 10, 5);
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        struct vhdx_metadata_entry e = { *items[i].guid, off, items[i].len, items[i].flags };
        vhdx_metadata_entry_encode(table + VHDX_METADATA_HDR_SIZE + i * VHDX_METADATA_ENTRY_SIZE, &e);
        off += items[i].len;
    }
    if ((r = blk_pwrite(f, meta_off, VHDX_METADATA_TABLE_SIZE, table, 0)) < 0)
        goto out;
    r = blk_pwrite(f, meta_off + VHDX_METADATA_TABLE_SIZE, sizeof(data), data, 0);
out:
    free(table);
    return r;
}

static int vhdx_create(const char *filename, struct kvopts *opts, struct err *err)
{
    struct create_params p;
    struct bds *f = NULL;
    uint8_t id[8 + 2 * (sizeof(VHDX_CREATOR) - 1)];
    uint64_t meta_off;
    int r;

    /* Like qemu, the file is created before the options are judged. */
    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    f = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!f)
        return -EIO;
    if ((r = create_params(opts, &p, err)) < 0)
        goto out;

    memcpy(id, "vhdxfile", 8);
    for (size_t i = 0; i < sizeof(VHDX_CREATOR) - 1; i++)
        put_le16(id + 8 + 2 * i, (uint8_t)VHDX_CREATOR[i]);
    if ((r = blk_pwrite(f, VHDX_FILE_ID_OFFSET, sizeof(id), id, 0)) < 0) {
        err_set_errno(err, -r, "Failed to write file signature");
        goto out;
    }
    if ((r = create_headers(f, &p)) < 0) {
        err_set_errno(err, -r, "Failed to write image headers");
        goto out;
    }
    if ((r = create_regions_and_bat(f, &p, &meta_off, err)) < 0)
        goto out;
    if ((r = create_metadata(f, &p, meta_off)) < 0) {
        err_set_errno(err, -r, "Failed to initialize metadata");
        goto out;
    }
    r = blk_flush(f);
out:
    blk_close(f);
    return r;
}

static const struct opt_desc vhdx_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size; max of 64TB.", NULL },
    { "log_size", OPT_SIZE, "Log size; min 1MB.", "1048576" },
    { "block_size", OPT_SIZE, "Block Size; min 1MB, max 256MB. "
      "0 means auto-calculate based on image size.", "0" },
    { "subformat", OPT_STRING, "VHDX format type, can be either 'dynamic' or 'fixed'. "
      "Default is 'dynamic'.", NULL },
    { "block_state_zero", OPT_BOOL, "Force use of payload blocks of type 'ZERO'. "
      "Non-standard, but default.  Do not set to 'off' when using 'qemu-img convert' "
      "with subformat=dynamic.", NULL },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver vhdx_driver = {
    .name = "vhdx",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct vhdx_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .create_opts = vhdx_create_opts,
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .create = vhdx_create,
    .pread = vhdx_pread,
    .block_status = vhdx_block_status,
    .pwrite = vhdx_pwrite,
    .get_info = vhdx_get_info,
    .check = vhdx_check,
    .has_zero_init = vhdx_has_zero_init,
};
