/* VirtualBox VDI images, version 1.1 (the layout qemu 7.2's block/vdi.c
 * documents; there is no public spec beyond VirtualBox's sources).
 *
 * Layout: a 512-byte little-endian header, a block map of u32 entries at
 * offset_bmap (one per 1 MiB block: 0xffffffff never allocated, 0xfffffffe
 * discarded — both read as zeros — otherwise the index of the block in the
 * data area at offset_data), then the data blocks.
 *
 * Invariants after open: block_size == 1 MiB, disk_size (rounded up to 512)
 * <= blocks_in_image * block_size, blocks_in_image <= VDI_BLOCKS_MAX, and
 * the whole block map is in memory (little-endian decoded to host order).
 * New blocks are appended at index blocks_allocated, as qemu does: the
 * header counter is the allocator, it is not recomputed from the map. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "block/driver.h"

#define VDI_SECTOR 512u
#define VDI_BLOCK_SIZE (1u << 20)
#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_TYPE_DYNAMIC 1u
#define VDI_TYPE_STATIC 2u
#define VDI_UNALLOCATED 0xffffffffu
#define VDI_DISCARDED 0xfffffffeu
#define VDI_TEXT "<<< QEMU VM Virtual Disk Image >>>\n"
/* qemu keeps the map (rounded up to a sector) below INT_MAX + 1 bytes. */
#define VDI_BLOCKS_MAX ((unsigned)(((uint64_t)INT_MAX + 1 - VDI_SECTOR) / 4))
#define VDI_DISK_SIZE_MAX ((uint64_t)VDI_BLOCKS_MAX * VDI_BLOCK_SIZE)
/* Largest block map read for a file smaller than it (a truncated image):
 * 4 Mi entries, 4 TiB of virtual disk. */
#define VDI_MAP_CAP ((uint64_t)16 << 20)

/* Header field offsets. */
enum {
    H_SIGNATURE = 0x40, H_VERSION = 0x44, H_HEADER_SIZE = 0x48, H_IMAGE_TYPE = 0x4c,
    H_IMAGE_FLAGS = 0x50, H_DESCRIPTION = 0x54, H_OFFSET_BMAP = 0x154,
    H_OFFSET_DATA = 0x158, H_CYLINDERS = 0x15c, H_HEADS = 0x160, H_SECTORS = 0x164,
    H_SECTOR_SIZE = 0x168, H_UNUSED1 = 0x16c, H_DISK_SIZE = 0x170,
    H_BLOCK_SIZE = 0x178, H_BLOCK_EXTRA = 0x17c, H_BLOCKS_IN_IMAGE = 0x180,
    H_BLOCKS_ALLOCATED = 0x184, H_UUID_IMAGE = 0x188, H_UUID_LAST_SNAP = 0x198,
    H_UUID_LINK = 0x1a8, H_UUID_PARENT = 0x1b8, H_SIZE = 512,
};

struct vdi_header {
    uint32_t signature, version, image_type;
    uint32_t offset_bmap, offset_data, sector_size;
    uint64_t disk_size;
    uint32_t block_size, blocks_in_image, blocks_allocated;
    bool link_null, parent_null;
};

struct vdi_state {
    uint8_t raw[H_SIZE];        /* the header as read, rewritten on allocation */
    struct vdi_header h;
    uint32_t *bmap;             /* host order */
};

static bool vdi_is_allocated(uint32_t e) { return e < VDI_DISCARDED; }

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void vdi_header_decode(const uint8_t *b, struct vdi_header *h)
{
    h->signature = get_le32(b + H_SIGNATURE);
    h->version = get_le32(b + H_VERSION);
    h->image_type = get_le32(b + H_IMAGE_TYPE);
    h->offset_bmap = get_le32(b + H_OFFSET_BMAP);
    h->offset_data = get_le32(b + H_OFFSET_DATA);
    h->sector_size = get_le32(b + H_SECTOR_SIZE);
    h->disk_size = get_le64(b + H_DISK_SIZE);
    h->block_size = get_le32(b + H_BLOCK_SIZE);
    h->blocks_in_image = get_le32(b + H_BLOCKS_IN_IMAGE);
    h->blocks_allocated = get_le32(b + H_BLOCKS_ALLOCATED);
    h->link_null = all_zero(b + H_UUID_LINK, 16);
    h->parent_null = all_zero(b + H_UUID_PARENT, 16);
}

/* qemu's checks, in qemu's order and with its messages. */
static int vdi_header_validate(struct vdi_header *h, struct err *err)
{
    if (h->disk_size > VDI_DISK_SIZE_MAX)
        return err_set(err, ENOTSUP, "Unsupported VDI image size (size is 0x%" PRIx64
                       ", max supported is 0x%" PRIx64 ")", h->disk_size, VDI_DISK_SIZE_MAX);
    /* VBoxManage can write odd sizes; they are rounded up to a sector. */
    h->disk_size = align_up_u64(h->disk_size, VDI_SECTOR);
    if (h->signature != VDI_SIGNATURE)
        return err_set(err, EINVAL, "Image not in VDI format (bad signature %08" PRIx32 ")",
                       h->signature);
    if (h->version != VDI_VERSION_1_1)
        return err_set(err, ENOTSUP, "unsupported VDI image (version %" PRIu32 ".%" PRIu32 ")",
                       h->version >> 16, h->version & 0xffff);
    if (h->offset_bmap % VDI_SECTOR)
        return err_set(err, ENOTSUP, "unsupported VDI image (unaligned block map offset 0x%"
                       PRIx32 ")", h->offset_bmap);
    if (h->offset_data % VDI_SECTOR)
        return err_set(err, ENOTSUP, "unsupported VDI image (unaligned data offset 0x%"
                       PRIx32 ")", h->offset_data);
    if (h->sector_size != VDI_SECTOR)
        return err_set(err, ENOTSUP, "unsupported VDI image (sector size %" PRIu32
                       " is not %u)", h->sector_size, VDI_SECTOR);
    if (h->block_size != VDI_BLOCK_SIZE)
        return err_set(err, ENOTSUP, "unsupported VDI image (block size %" PRIu32
                       " is not %u)", h->block_size, VDI_BLOCK_SIZE);
    uint64_t room = (uint64_t)h->blocks_in_image * h->block_size;
    if (h->disk_size > room)
        return err_set(err, ENOTSUP, "unsupported VDI image (disk size %" PRIu64
                       ", image bitmap has room for %" PRIu64 ")", h->disk_size, room);
    if (!h->link_null)
        return err_set(err, ENOTSUP, "unsupported VDI image (non-NULL link UUID)");
    if (!h->parent_null)
        return err_set(err, ENOTSUP, "unsupported VDI image (non-NULL parent UUID)");
    if (h->blocks_in_image > VDI_BLOCKS_MAX)
        return err_set(err, ENOTSUP, "unsupported VDI image (too many blocks %u, max is %u)",
                       h->blocks_in_image, VDI_BLOCKS_MAX);
    return 0;
}

static int vdi_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    if (len < H_SIZE)
        return 0;
    return get_le32(head + H_SIGNATURE) == VDI_SIGNATURE ? 100 : 0;
}

static int vdi_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct vdi_state *s = bs->opaque;
    int r;

    (void)opts; (void)flags;
    r = blk_pread(bs->file, 0, H_SIZE, s->raw);
    if (r < 0)
        return r;
    vdi_header_decode(s->raw, &s->h);
    if ((r = vdi_header_validate(&s->h, err)) < 0)
        return r;

    /* The map is read whole, rounded up to a sector; parts past the end of
     * the file read as zeros, as qemu sees them (a truncated image opens,
     * its lost entries all naming block 0). qemu allocates whatever the
     * header asks, up to 2 GiB; a map larger than both the file and
     * VDI_MAP_CAP is refused instead. */
    uint64_t map_bytes = align_up_u64((uint64_t)s->h.blocks_in_image * 4, VDI_SECTOR);
    int64_t flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    if (map_bytes > (uint64_t)flen && map_bytes > VDI_MAP_CAP)
        return err_set(err, EINVAL, "unsupported VDI image (block map of %" PRIu64
                       " bytes exceeds the file size %" PRId64 ")", map_bytes, flen);
    if (map_bytes) {
        if (!(s->bmap = malloc((size_t)map_bytes)))
            return -ENOMEM;
        r = blk_pread(bs->file, s->h.offset_bmap, map_bytes, s->bmap);
        if (r < 0) {
            free(s->bmap);
            s->bmap = NULL;
            return r;
        }
        for (uint64_t i = 0; i < map_bytes / 4; i++)
            s->bmap[i] = get_le32((const uint8_t *)&s->bmap[i]);
    }
    bs->total_size = s->h.disk_size;
    return 0;
}

static void vdi_close(struct bds *bs)
{
    struct vdi_state *s = bs->opaque;
    free(s->bmap);
    s->bmap = NULL;
}

static uint64_t vdi_data_offset(const struct vdi_state *s, uint32_t entry, uint64_t in_block)
{
    /* entry < 2^32 and block_size == 2^20: no overflow in 64 bits. */
    return (uint64_t)s->h.offset_data + (uint64_t)entry * s->h.block_size + in_block;
}

/* Reads only the block map, which only writes change: a read-only node's
 * reads run on every worker at once (BLK_THREAD_READS_UNLOCKED_RO). */
static int vdi_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct vdi_state *s = bs->opaque;
    uint8_t *p = buf;

    while (len) {
        uint64_t idx = off / s->h.block_size, in = off % s->h.block_size;
        uint64_t n = min_u64(len, s->h.block_size - in);
        uint32_t e = idx < s->h.blocks_in_image ? s->bmap[idx] : VDI_UNALLOCATED;
        if (!vdi_is_allocated(e)) {
            memset(p, 0, (size_t)n);
        } else {
            int r = blk_pread(bs->file, vdi_data_offset(s, e, in), n, p);
            if (r < 0)
                return r;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Persist the header (blocks_allocated, and the rounded disk size as qemu
 * writes it back) and the map sectors covering entries [first, last]. */
static int vdi_write_metadata(struct bds *bs, uint32_t first, uint32_t last)
{
    struct vdi_state *s = bs->opaque;
    const uint32_t per_sector = VDI_SECTOR / 4;
    uint32_t s0 = first / per_sector, s1 = last / per_sector;
    uint64_t nbytes = (uint64_t)(s1 - s0 + 1) * VDI_SECTOR;
    uint8_t *buf;
    int r;

    put_le64(s->raw + H_DISK_SIZE, s->h.disk_size);
    put_le32(s->raw + H_BLOCKS_ALLOCATED, s->h.blocks_allocated);
    r = blk_pwrite(bs->file, 0, H_SIZE, s->raw, 0);
    if (r < 0)
        return r;
    buf = malloc((size_t)nbytes);
    if (!buf)
        return -ENOMEM;
    for (uint64_t i = 0; i < nbytes / 4; i++)
        put_le32(buf + i * 4, s->bmap[(uint64_t)s0 * per_sector + i]);
    r = blk_pwrite(bs->file, (uint64_t)s->h.offset_bmap + (uint64_t)s0 * VDI_SECTOR, nbytes,
                   buf, 0);
    free(buf);
    return r;
}

static int vdi_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct vdi_state *s = bs->opaque;
    const uint8_t *p = buf;
    uint8_t *block = NULL;
    uint32_t first = VDI_UNALLOCATED, last = 0;
    int r = 0;

    (void)flags;
    while (len) {
        uint64_t idx = off / s->h.block_size, in = off % s->h.block_size;
        uint64_t n = min_u64(len, s->h.block_size - in);
        if (idx >= s->h.blocks_in_image) {
            r = -EIO;
            break;
        }
        uint32_t e = s->bmap[idx];
        if (vdi_is_allocated(e)) {
            r = blk_pwrite(bs->file, vdi_data_offset(s, e, in), n, p, 0);
        } else {
            /* The header counter is the allocator; a counter that would
             * collide with the reserved map values means a broken image. */
            if (s->h.blocks_allocated >= VDI_BLOCKS_MAX) {
                r = -EIO;
                break;
            }
            if (!block && !(block = malloc(s->h.block_size))) {
                r = -ENOMEM;
                break;
            }
            e = s->h.blocks_allocated++;
            s->bmap[idx] = e;
            if (first == VDI_UNALLOCATED)
                first = (uint32_t)idx;
            last = (uint32_t)idx;
            memset(block, 0, s->h.block_size);
            memcpy(block + in, p, (size_t)n);
            r = blk_pwrite(bs->file, vdi_data_offset(s, e, 0), s->h.block_size, block, 0);
        }
        if (r < 0)
            break;
        p += n;
        off += n;
        len -= n;
    }
    free(block);
    if (r == 0 && first != VDI_UNALLOCATED)
        r = vdi_write_metadata(bs, first, last);
    return r;
}

static int vdi_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    struct vdi_state *s = bs->opaque;
    uint64_t idx = off / s->h.block_size, in = off % s->h.block_size;
    uint32_t e = idx < s->h.blocks_in_image ? s->bmap[idx] : VDI_UNALLOCATED;

    *pnum = min_u64(len, s->h.block_size - in);
    if (!vdi_is_allocated(e)) {
        /* Coalesce runs of unallocated/discarded blocks. */
        while (*pnum < len) {
            idx++;
            if (idx < s->h.blocks_in_image && vdi_is_allocated(s->bmap[idx]))
                break;
            *pnum = min_u64(len, *pnum + s->h.block_size);
        }
        return BLK_STATUS_ZERO;
    }
    *map = vdi_data_offset(s, e, in);
    *file = bs->file;
    /* Like qemu: holes in a static image's data area read as zeros. */
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID |
           (s->h.image_type == VDI_TYPE_STATIC ? BLK_STATUS_RECURSE : 0);
}

static int vdi_get_info(struct bds *bs, struct blk_info *bi)
{
    struct vdi_state *s = bs->opaque;
    bi->cluster_size = s->h.block_size;
    return 0;
}

/* qemu 7.2's check: every allocated entry must point inside the image and
 * be used once, and the header's allocation counter must match the map.
 * There is no repair: asking for one is "not supported". */
static int vdi_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    struct vdi_state *s = bs->opaque;
    uint32_t n = s->h.blocks_in_image, allocated = 0;
    uint32_t *seen;

    if (fix)
        return err_set(err, ENOTSUP, "This image format does not support checks");
    seen = malloc((size_t)n * sizeof(*seen) + 1);
    if (!seen) {
        res->check_errors++;
        return -ENOMEM;
    }
    memset(seen, 0xff, (size_t)n * sizeof(*seen));
    for (uint32_t b = 0; b < n; b++) {
        uint32_t e = s->bmap[b];
        if (!vdi_is_allocated(e))
            continue;
        if (e < n) {
            allocated++;
            if (!vdi_is_allocated(seen[e])) {
                seen[e] = e;
            } else {
                blk_check_log(res, "ERROR: block index %" PRIu32 " also used by %" PRIu32,
                              seen[e], e);
                res->corruptions++;
            }
        } else {
            blk_check_log(res, "ERROR: block index %" PRIu32 " too large, is %" PRIu32, b, e);
            res->corruptions++;
        }
    }
    if (allocated != s->h.blocks_allocated) {
        blk_check_log(res, "ERROR: allocated blocks mismatch, is %" PRIu32
                      ", should be %" PRIu32, allocated, s->h.blocks_allocated);
        res->corruptions++;
    }
    free(seen);
    return 0;
}

/* qemu's vdi make_empty does nothing and reports success; commit relies on
 * that, so the top image keeps its data. */
static int vdi_make_empty(struct bds *bs, struct err *err)
{
    (void)bs; (void)err;
    return 0;
}

static bool vdi_has_zero_init(struct bds *bs)
{
    struct vdi_state *s = bs->opaque;
    if (s->h.image_type == VDI_TYPE_STATIC)
        return blk_has_zero_init(bs->file);
    return true;
}

/* A random (version 4) UUID in the mixed-endian layout VirtualBox uses:
 * the first three fields little-endian. */
static void vdi_uuid_generate(uint8_t *out)
{
    uint8_t u[16];
    size_t got = 0;
    while (got < sizeof(u)) {
        ssize_t n = getrandom(u + got, sizeof(u) - got, 0);
        if (n <= 0) {
            /* Not cryptographic; an image identifier only. */
            srand((unsigned)time(NULL) ^ (unsigned)got);
            for (; got < sizeof(u); got++)
                u[got] = (uint8_t)rand();
            break;
        }
        got += (size_t)n;
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    out[0] = u[3]; out[1] = u[2]; out[2] = u[1]; out[3] = u[0];
    out[4] = u[5]; out[5] = u[4];
    out[6] = u[7]; out[7] = u[6];
    memcpy(out + 8, u + 8, 8);
}

/* "preallocation" is not ours: qemu hands it to the file protocol's create
 * (for a file of size 0), which only validates it. */
static int vdi_check_file_prealloc(const struct kvopts *opts, struct err *err)
{
    const char *v = kvopts_get(opts, "preallocation");
    enum blk_prealloc p;
    if (!v)
        return 0;
    return blk_parse_prealloc(v, 1u << BLK_PREALLOC_OFF | 1u << BLK_PREALLOC_FALLOC |
                              1u << BLK_PREALLOC_FULL, &p, err);
}

static int vdi_create(const char *filename, struct kvopts *opts, struct err *err)
{
    struct bds *proto = NULL;
    uint8_t hdr[H_SIZE];
    uint8_t *map = NULL;
    bool is_static = false;
    uint64_t size = 0;
    int r;

    /* qemu reads "static" first, then creates the file, then the size. */
    if ((r = kvopts_get_bool(opts, "static", false, &is_static, err)) < 0)
        return r;
    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    if (opts->help)
        return 0;
    if ((r = vdi_check_file_prealloc(opts, err)) < 0)
        return r;
    proto = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!proto)
        return -EIO;
    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0)
        goto out;
    if (size > VDI_DISK_SIZE_MAX) {
        r = err_set(err, ENOTSUP, "Unsupported VDI image size (size is 0x%" PRIx64
                    ", max supported is 0x%" PRIx64 ")", size, VDI_DISK_SIZE_MAX);
        goto out;
    }
    size = align_up_u64(size, VDI_SECTOR);

    uint32_t blocks = (uint32_t)div_round_up_u64(size, VDI_BLOCK_SIZE);
    uint64_t map_bytes = align_up_u64((uint64_t)blocks * 4, VDI_SECTOR);

    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, VDI_TEXT, sizeof(VDI_TEXT) - 1);
    put_le32(hdr + H_SIGNATURE, VDI_SIGNATURE);
    put_le32(hdr + H_VERSION, VDI_VERSION_1_1);
    put_le32(hdr + H_HEADER_SIZE, 0x180);
    put_le32(hdr + H_IMAGE_TYPE, is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
    put_le32(hdr + H_OFFSET_BMAP, H_SIZE);
    put_le32(hdr + H_OFFSET_DATA, (uint32_t)(H_SIZE + map_bytes));
    put_le32(hdr + H_SECTOR_SIZE, VDI_SECTOR);
    put_le64(hdr + H_DISK_SIZE, size);
    put_le32(hdr + H_BLOCK_SIZE, VDI_BLOCK_SIZE);
    put_le32(hdr + H_BLOCKS_IN_IMAGE, blocks);
    put_le32(hdr + H_BLOCKS_ALLOCATED, is_static ? blocks : 0);
    vdi_uuid_generate(hdr + H_UUID_IMAGE);
    vdi_uuid_generate(hdr + H_UUID_LAST_SNAP);
    if ((r = blk_pwrite(proto, 0, H_SIZE, hdr, 0)) < 0) {
        err_set(err, -r, "Error writing header");
        goto out;
    }
    if (map_bytes) {
        map = malloc((size_t)map_bytes);
        if (!map) {
            r = err_set(err, ENOMEM, "Could not allocate bmap");
            goto out;
        }
        memset(map, 0, (size_t)map_bytes);
        for (uint32_t i = 0; i < blocks; i++)
            put_le32(map + (uint64_t)i * 4, is_static ? i : VDI_UNALLOCATED);
        if ((r = blk_pwrite(proto, H_SIZE, map_bytes, map, 0)) < 0) {
            err_set(err, -r, "Error writing bmap");
            goto out;
        }
    }
    if (is_static) {
        struct err e2;
        err_init(&e2);
        r = blk_truncate(proto, H_SIZE + map_bytes + (uint64_t)blocks * VDI_BLOCK_SIZE, false,
                         BLK_PREALLOC_OFF, &e2);
        if (r < 0) {
            err_propagate(err, &e2);
            err_prefix(err, "Failed to statically allocate file");
            goto out;
        }
    }
    /* As qemu, which flushes at close and drops the error: a failing
     * flush does not fail the create. */
    blk_flush(proto);
out:
    free(map);
    blk_close(proto);
    return r;
}

static const struct opt_desc vdi_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "static", OPT_BOOL, "VDI static (pre-allocated) image", "off" },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver vdi_driver = {
    .name = "vdi",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct vdi_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .create_opts = vdi_create_opts,
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .create = vdi_create,
    .pread = vdi_pread,
    .pwrite = vdi_pwrite,
    .block_status = vdi_block_status,
    .get_info = vdi_get_info,
    .check = vdi_check,
    .make_empty = vdi_make_empty,
    .has_zero_init = vdi_has_zero_init,
};
