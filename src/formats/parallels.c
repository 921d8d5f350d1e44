/* Parallels driver: probe (both magics), open, reads and allocating
 * writes, block status, create, check with repair, as qemu 7.2's
 * block/parallels.c (docs/interop/parallels.txt "Header", "BAT", "Data
 * area").
 *
 * The header and BAT are held in one buffer that mirrors the file's first
 * header_size bytes; changed BAT blocks are written on flush and close.
 * New clusters are appended at data_end (in sectors); when the file is too
 * short it is extended by a preallocation step (128 MiB, as qemu) and cut
 * back to data_end on close. An image opened read-write is marked in use
 * until closed. Of the format extension (ext_off) only the magic is checked,
 * on read-only opens, as qemu refuses a cluster without it. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"

#define PRL_MAGIC "WithoutFreeSpace"
#define PRL_MAGIC2 "WithouFreSpacExt"
#define PRL_VERSION 2
#define PRL_INUSE_MAGIC 0x746F6E59u
#define PRL_HEADER_LEN 64
#define PRL_HEADS 16
#define PRL_SEC_IN_CYL 32
#define PRL_DEFAULT_CLUSTER_SIZE 1048576
#define PRL_MAX_IMAGE_FACTOR (1ULL << 32)
#define PRL_MEM_ALIGN 4096             /* qemu's optimal buffer alignment for files */
#define PRL_DIRTY_BLOCK (4 * 4096)     /* BAT write-back granularity */
#define PRL_PREALLOC_SIZE (128ULL << 20)
/* A BAT is read whole: refuse one this much larger than the file. */
#define PRL_BAT_SLACK (16u << 20)
#define PRL_EXT_MAGIC 0xAB234CEF23DCEA87ULL   /* Format Extension cluster */

enum {
    PH_MAGIC = 0, PH_VERSION = 16, PH_HEADS = 20, PH_CYLINDERS = 24, PH_TRACKS = 28,
    PH_BAT_ENTRIES = 32, PH_NB_SECTORS = 36, PH_INUSE = 44, PH_DATA_OFF = 48, PH_FLAGS = 52,
    PH_EXT_OFF = 56,
};

struct prl_state {
    uint8_t *header;           /* header + BAT, header_size bytes, little-endian */
    uint32_t header_size;
    uint32_t bat_size;
    uint32_t tracks;           /* cluster size in sectors */
    uint32_t cluster_size;
    uint32_t off_multiplier;
    int64_t data_end;          /* sectors */
    uint64_t prealloc_size;    /* sectors */
    bool header_unclean;
    bool writable;
    uint32_t dirty_lo, dirty_hi;   /* dirty byte range of header, lo == hi: none */
};

static struct prl_state *pst(struct bds *bs) { return bs->opaque; }

static uint32_t bat_entry_off(uint32_t idx) { return PRL_HEADER_LEN + 4 * idx; }

static int64_t bat2sect(const struct prl_state *s, uint32_t idx)
{
    return (int64_t)((uint64_t)get_le32(s->header + bat_entry_off(idx)) * s->off_multiplier);
}

/* The first BAT index at or after idx, below end, whose entry is not zero
 * (end if none): runs of zero entries, most of a sparse or forged catalog,
 * are skipped 64 at a time. */
static uint32_t next_used(const struct prl_state *s, uint32_t idx, uint32_t end)
{
    static const uint8_t zeros[256];

    while (idx < end) {
        uint32_t n = end - idx < 64 ? end - idx : 64;
        if (memcmp(s->header + bat_entry_off(idx), zeros, 4 * (size_t)n))
            break;
        idx += n;
    }
    while (idx < end && !get_le32(s->header + bat_entry_off(idx)))
        idx++;
    return idx;
}

/* Zero a file range so that it is allocated, as qemu's fallocate
 * (ZERO_RANGE) does; only where that is unsupported may it stay a hole. */
static int zero_fill(struct bds *file, uint64_t off, uint64_t len)
{
    int r = blk_pwrite_zeroes(file, off, len, BLK_WRITE_NO_FALLBACK);
    return r == -ENOTSUP ? blk_pwrite_zeroes(file, off, len, 0) : r;
}

static int prl_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    if (len < PRL_HEADER_LEN)
        return 0;
    if ((!memcmp(head, PRL_MAGIC, 16) || !memcmp(head, PRL_MAGIC2, 16)) &&
        get_le32(head + PH_VERSION) == PRL_VERSION)
        return 100;
    return 0;
}

static int64_t seek_to_sector(const struct prl_state *s, int64_t sector)
{
    uint64_t index = (uint64_t)sector / s->tracks;
    if (index >= s->bat_size || get_le32(s->header + bat_entry_off((uint32_t)index)) == 0)
        return -1;
    return bat2sect(s, (uint32_t)index) + (int64_t)((uint64_t)sector % s->tracks);
}

/* The host sector of sector (or -1: unallocated) and in *pnum how many
 * following sectors map the same way (contiguous, or all unallocated). */
static int64_t map_run(const struct prl_state *s, int64_t sector, int64_t nb, int64_t *pnum)
{
    int64_t start = seek_to_sector(s, sector), prev_end = start;

    *pnum = 0;
    do {
        int64_t off = seek_to_sector(s, sector);
        if (*pnum && off != prev_end)
            break;
        if (off < 0 && (uint64_t)sector / s->tracks >= s->bat_size) {
            *pnum += nb;        /* past the BAT all is unallocated: no per-cluster walk */
            break;
        }
        int64_t to_end = (int64_t)s->tracks - (int64_t)((uint64_t)sector % s->tracks);
        if (to_end > nb)
            to_end = nb;
        nb -= to_end;
        sector += to_end;
        *pnum += to_end;
        if (off > 0)
            prev_end += to_end;
    } while (nb > 0);
    return start;
}

static void mark_dirty(struct prl_state *s, uint32_t lo, uint32_t hi)
{
    if (s->dirty_lo == s->dirty_hi) {
        s->dirty_lo = lo;
        s->dirty_hi = hi;
    } else {
        s->dirty_lo = lo < s->dirty_lo ? lo : s->dirty_lo;
        s->dirty_hi = hi > s->dirty_hi ? hi : s->dirty_hi;
    }
}

static int prl_flush(struct bds *bs)
{
    struct prl_state *s = pst(bs);
    uint32_t lo, hi;
    int r;

    if (s->dirty_lo == s->dirty_hi)
        return 0;
    lo = s->dirty_lo / PRL_DIRTY_BLOCK * PRL_DIRTY_BLOCK;
    hi = (uint32_t)min_u64(align_up_u64(s->dirty_hi, PRL_DIRTY_BLOCK), s->header_size);
    r = blk_pwrite(bs->file, lo, hi - lo, s->header + lo, 0);
    if (r == 0)
        s->dirty_lo = s->dirty_hi = 0;
    return r;
}

static int update_header(struct bds *bs)
{
    struct prl_state *s = pst(bs);
    uint32_t size = s->header_size < PRL_MEM_ALIGN ? s->header_size : PRL_MEM_ALIGN;
    int r = blk_pwrite(bs->file, 0, size, s->header, 0);
    return r == 0 ? blk_flush(bs->file) : r;
}

/* The Format Extension cluster (parallels.txt "Format Extension"): qemu
 * reads it on read-only opens and refuses the image when the cluster cannot
 * be read or lacks the magic. Only that much is checked here: its checksum
 * and features (dirty bitmaps) are not interpreted. */
static int read_format_extension(struct bds *bs, uint64_t ext_off, struct err *err)
{
    struct prl_state *s = pst(bs);
    uint64_t off = ext_off << 9;   /* wraps as qemu's shift does */
    uint8_t magic[8];
    int r;

    /* qemu asserts on an offset that is not positive as int64 */
    if (off == 0 || off > (uint64_t)INT64_MAX)
        return err_set_errno(err, EIO, "Failed to read Format Extension cluster");
    /* Only the magic is needed, not the whole cluster (up to 2 GiB); a
     * cluster reaching past the request limit fails as qemu's read of it. */
    if (off > BLK_MAX_LENGTH || s->cluster_size > BLK_MAX_LENGTH - off)
        return err_set_errno(err, EIO, "Failed to read Format Extension cluster");
    r = blk_pread(bs->file, off, sizeof(magic), magic);
    if (r < 0) {
        err_set_errno(err, -r, "Failed to read Format Extension cluster");
    } else if (get_le64(magic) != PRL_EXT_MAGIC) {
        r = err_set(err, EINVAL, "Wrong parallels Format Extension magic: 0x%" PRIx64
                    ", expected: 0x%llx", get_le64(magic), PRL_EXT_MAGIC);
    }
    return r < 0 ? r : 0;
}

static void prl_close(struct bds *bs);

static int prl_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct prl_state *s = pst(bs);
    uint8_t ph[PRL_HEADER_LEN];
    uint64_t nb_sectors;
    uint32_t size, in_file, scan;
    int64_t flen;
    int r;

    (void)opts;
    if ((r = blk_pread(bs->file, 0, sizeof(ph), ph)) < 0)
        return err_set_errno(err, -r, "Could not read the Parallels header");
    nb_sectors = get_le64(ph + PH_NB_SECTORS);
    if (get_le32(ph + PH_VERSION) != PRL_VERSION)
        return err_set(err, EINVAL, "Image not in Parallels format");
    if (!memcmp(ph, PRL_MAGIC, 16)) {
        s->off_multiplier = 1;
        nb_sectors &= 0xffffffff;
    } else if (!memcmp(ph, PRL_MAGIC2, 16)) {
        s->off_multiplier = get_le32(ph + PH_TRACKS);
    } else {
        return err_set(err, EINVAL, "Image not in Parallels format");
    }
    s->tracks = get_le32(ph + PH_TRACKS);
    if (s->tracks == 0)
        return err_set(err, EINVAL, "Invalid image: Zero sectors per track");
    if (s->tracks > INT32_MAX / 513)
        return err_set(err, EFBIG, "Invalid image: Too big cluster");
    s->cluster_size = s->tracks * 512;
    s->bat_size = get_le32(ph + PH_BAT_ENTRIES);
    if (s->bat_size > INT32_MAX / 4)
        return err_set(err, EFBIG, "Catalog too large");

    size = bat_entry_off(s->bat_size);
    s->header_size = (uint32_t)align_up_u64(size, PRL_MEM_ALIGN);
    s->data_end = get_le32(ph + PH_DATA_OFF);
    if (s->data_end == 0)
        s->data_end = (int64_t)align_up_u64(size, 512);
    /* qemu compares sectors with bytes here; kept for identical layouts. */
    if (s->data_end < (int64_t)s->header_size)
        s->header_size = size;
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Could not get the file length");
    if (s->header_size > (uint64_t)flen + PRL_BAT_SLACK)
        return err_set(err, EFBIG, "Catalog too large");
    /* A BAT that runs past the end of the file reads as zeros there, as in
     * qemu: only the part inside the file is read and scanned (zero entries
     * change nothing), so a forged 16 MiB catalog over a small file costs
     * no more than the file. */
    s->header = calloc(1, s->header_size);
    if (!s->header)
        return -ENOMEM;
    in_file = (uint32_t)min_u64(s->header_size, (uint64_t)flen);
    if (in_file && (r = blk_pread(bs->file, 0, in_file, s->header)) < 0) {
        err_set_errno(err, -r, "Could not read the BAT");
        goto fail;
    }
    scan = in_file <= PRL_HEADER_LEN ? 0
           : (uint32_t)min_u64(s->bat_size, (in_file - PRL_HEADER_LEN + 3) / 4);
    for (uint32_t i = next_used(s, 0, scan); i < scan; i = next_used(s, i + 1, scan)) {
        int64_t off = bat2sect(s, i);
        if (off >= s->data_end)
            s->data_end = off + s->tracks;
    }
    if (get_le32(ph + PH_INUSE) == PRL_INUSE_MAGIC) {
        /* Not closed cleanly: only check may open it for writing. */
        s->header_unclean = true;
        if ((flags & BLK_O_RDWR) && !(flags & BLK_O_CHECK)) {
            r = err_set(err, EACCES, "parallels: Image was not closed correctly; "
                        "cannot be opened read/write");
            goto fail;
        }
    }
    if (get_le64(ph + PH_EXT_OFF)) {
        if (flags & BLK_O_RDWR) {
            blk_message("%s: warning: Format Extension ignored in RW mode", blk_prog_name());
        } else if ((r = read_format_extension(bs, get_le64(ph + PH_EXT_OFF), err)) < 0) {
            goto fail;
        }
    }
    s->prealloc_size = max_u64(s->tracks, PRL_PREALLOC_SIZE / 512);
    s->writable = (flags & BLK_O_RDWR) != 0;
    if (s->writable) {
        put_le32(s->header + PH_INUSE, PRL_INUSE_MAGIC);
        if ((r = update_header(bs)) < 0) {
            err_set_errno(err, -r, "Could not update the Parallels header");
            goto fail;
        }
    }
    /* qemu checks the size only once its open succeeded (bdrv_open_driver's
     * refresh_total_sectors): a byte count past its BDRV_MAX_LENGTH
     * (INT64_MAX aligned down to 1 GiB), computed in 64-bit unsigned
     * arithmetic that wraps, is EFBIG, and the image is closed again (a
     * read-write open writes the header back unmarked). A count whose
     * product wraps below the limit passes there, and every later length
     * query fails with EFBIG: a total size past INT64_MAX does that here.
     * A count negative as qemu's int64 keeps our own refusal. */
    if (nb_sectors > BLK_MAX_LENGTH / 512) {
        if (nb_sectors << 9 <= BLK_MAX_LENGTH && nb_sectors <= (uint64_t)INT64_MAX) {
            bs->total_size = UINT64_MAX;
            bs->request_alignment = 512;
            return 0;
        }
        prl_close(bs);
        if (nb_sectors << 9 <= BLK_MAX_LENGTH)
            return err_set(err, EFBIG, "Image too large");
        return err_set_errno(err, EFBIG, "Could not refresh total sector count");
    }
    bs->total_size = nb_sectors * 512;
    bs->request_alignment = 512;
    return 0;

fail:
    free(s->header);
    s->header = NULL;
    return r;
}

static void prl_close(struct bds *bs)
{
    struct prl_state *s = pst(bs);

    if (s->writable) {
        prl_flush(bs);
        put_le32(s->header + PH_INUSE, 0);
        update_header(bs);
        blk_truncate(bs->file, (uint64_t)s->data_end * 512, true, BLK_PREALLOC_OFF, NULL);
    }
    free(s->header);
    s->header = NULL;
}

/* Reads only the BAT, which only writes change: a read-only node's reads
 * run on every worker at once (BLK_THREAD_READS_UNLOCKED_RO). */
static int prl_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct prl_state *s = pst(bs);
    int64_t sector = (int64_t)(off / 512), nb = (int64_t)(len / 512);
    uint8_t *p = buf;

    while (nb > 0) {
        int64_t n, pos = map_run(s, sector, nb, &n);
        uint64_t bytes = (uint64_t)n * 512;
        int r = pos < 0 ? blk_read_backing(bs, (uint64_t)sector * 512, bytes, p)
                        : blk_pread(bs->file, (uint64_t)pos * 512, bytes, p);
        if (r < 0)
            return r;
        nb -= n;
        sector += n;
        p += bytes;
    }
    return 0;
}

/* qemu's allocate_clusters: the host sector for sector, allocating the
 * clusters of the run [sector, sector + *pnum) when unallocated. */
static int64_t allocate_clusters(struct bds *bs, int64_t sector, int64_t nb, int64_t *pnum)
{
    struct prl_state *s = pst(bs);
    int64_t pos = map_run(s, sector, nb, pnum), flen, space, to_allocate;
    uint64_t idx = (uint64_t)sector / s->tracks;
    int r;

    if (pos > 0)
        return pos;
    to_allocate = (int64_t)div_round_up_u64((uint64_t)(sector + *pnum), s->tracks) - (int64_t)idx;
    if (idx >= s->bat_size || idx + (uint64_t)to_allocate > s->bat_size)
        return -EINVAL;     /* the image claims more sectors than its BAT maps */
    space = to_allocate * s->tracks;
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return flen;
    if (s->data_end + space > flen / 512) {
        space += (int64_t)s->prealloc_size;
        r = zero_fill(bs->file, (uint64_t)s->data_end * 512, (uint64_t)space * 512);
        if (r < 0)
            return r;
    }
    if (bs->backing) {
        uint64_t bytes = (uint64_t)to_allocate * s->tracks * 512;
        uint8_t *tmp = malloc((size_t)bytes);
        if (!tmp)
            return -ENOMEM;
        r = blk_read_backing(bs, idx * s->tracks * 512, bytes, tmp);
        if (r == 0)
            r = blk_pwrite(bs->file, (uint64_t)s->data_end * 512, bytes, tmp, 0);
        free(tmp);
        if (r < 0)
            return r;
    }
    for (int64_t i = 0; i < to_allocate; i++) {
        uint32_t e = bat_entry_off((uint32_t)(idx + (uint64_t)i));
        put_le32(s->header + e, (uint32_t)(s->data_end / s->off_multiplier));
        s->data_end += s->tracks;
        mark_dirty(s, e, e + 4);
    }
    return bat2sect(s, (uint32_t)idx) + (int64_t)((uint64_t)sector % s->tracks);
}

static int prl_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    int64_t sector = (int64_t)(off / 512), nb = (int64_t)(len / 512);
    const uint8_t *p = buf;

    (void)flags;
    while (nb > 0) {
        int64_t n, pos = allocate_clusters(bs, sector, nb, &n);
        if (pos < 0)
            return (int)pos;
        int r = blk_pwrite(bs->file, (uint64_t)pos * 512, (uint64_t)n * 512, p, 0);
        if (r < 0)
            return r;
        nb -= n;
        sector += n;
        p += n * 512;
    }
    return 0;
}

static int prl_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    struct prl_state *s = pst(bs);
    int64_t n, pos = map_run(s, (int64_t)(off / 512), (int64_t)div_round_up_u64(len, 512), &n);

    *pnum = (uint64_t)n * 512;
    if (pos < 0)
        return 0;
    *map = (uint64_t)pos * 512;
    *file = bs->file;
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID;
}

static int prl_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    struct prl_state *s = pst(bs);
    int64_t size = blk_getlength(bs->file), prev_off = 0, high_off = 0;
    bool flush_bat = false;
    int r;

    (void)err;
    if (size < 0) {
        res->check_errors++;
        return (int)size;
    }
    if (s->header_unclean) {
        blk_check_log(res, "%s image was not closed correctly",
                      fix & BLK_FIX_ERRORS ? "Repairing" : "ERROR");
        res->corruptions++;
        if (fix & BLK_FIX_ERRORS) {
            res->corruptions_fixed++;
            s->header_unclean = false;     /* close clears the in-use mark */
        }
    }
    res->total_clusters = s->bat_size;
    res->has_total_clusters = true;
    for (uint32_t i = 0; i < s->bat_size; i++) {
        int64_t off;
        if (!get_le32(s->header + bat_entry_off(i))) {
            prev_off = 0;
            i = next_used(s, i, s->bat_size) - 1;
            continue;
        }
        off = bat2sect(s, i) * 512;
        if (off == 0) {
            prev_off = 0;
            continue;
        }
        if (off > size) {
            blk_check_log(res, "%s cluster %u is outside image",
                          fix & BLK_FIX_ERRORS ? "Repairing" : "ERROR", i);
            res->corruptions++;
            if (fix & BLK_FIX_ERRORS) {
                prev_off = 0;
                put_le32(s->header + bat_entry_off(i), 0);
                res->corruptions_fixed++;
                flush_bat = true;
                continue;
            }
        }
        res->allocated_clusters++;
        if (off > high_off)
            high_off = off;
        if (prev_off != 0 && prev_off + s->cluster_size != off)
            res->fragmented_clusters++;
        prev_off = off;
    }
    if (flush_bat) {
        r = blk_pwrite(bs->file, 0, s->header_size, s->header, 0);
        if (r == 0)
            r = blk_flush(bs->file);
        if (r < 0) {
            res->check_errors++;
            return r;
        }
    }
    res->image_end_offset = high_off + s->cluster_size;
    if (size > res->image_end_offset) {
        int64_t count = (int64_t)div_round_up_u64((uint64_t)(size - res->image_end_offset),
                                                  s->cluster_size);
        blk_check_log(res, "%s space leaked at the end of the image %lld",
                      fix & BLK_FIX_LEAKS ? "Repairing" : "ERROR",
                      (long long)(size - res->image_end_offset));
        res->leaks += count;
        if (fix & BLK_FIX_LEAKS) {
            struct err e;
            err_init(&e);
            r = blk_truncate(bs->file, (uint64_t)res->image_end_offset, true,
                             BLK_PREALLOC_OFF, &e);
            if (r < 0) {
                blk_check_log(res, "%s", e.msg);
                res->check_errors++;
                return r;
            }
            res->leaks_fixed += count;
        }
    }
    return 0;
}

static int prl_get_info(struct bds *bs, struct blk_info *bi)
{
    /* qemu's parallels has no get_info: info shows neither a cluster size
     * nor a dirty flag. */
    (void)bs;
    bi->has_dirty_flag = false;
    return 0;
}

static bool prl_has_zero_init(struct bds *bs)
{
    (void)bs;
    return true;
}

static int prl_create(const char *filename, struct kvopts *opts, struct err *err)
{
    uint64_t total, cl;
    uint64_t bat_entries, bat_sectors;
    uint8_t sec[512];
    struct bds *proto;
    int r;

    if ((r = kvopts_get_size(opts, "size", 0, &total, err)) < 0 ||
        (r = kvopts_get_size(opts, "cluster_size", PRL_DEFAULT_CLUSTER_SIZE, &cl, err)) < 0)
        return r;
    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    if (total > INT64_MAX || cl > INT64_MAX)
        return err_set(err, EINVAL, "Image size too large");
    total = align_up_u64(total, 512);
    cl = align_up_u64(cl, 512);
    if (cl >= (uint64_t)INT64_MAX / PRL_MAX_IMAGE_FACTOR)
        return err_set(err, EINVAL, "Cluster size is too large");
    if (total >= PRL_MAX_IMAGE_FACTOR * cl)
        return err_set(err, E2BIG, "Image size is too large for this cluster size");

    bat_entries = div_round_up_u64(total, cl);
    bat_sectors = div_round_up_u64(PRL_HEADER_LEN + 4 * bat_entries, cl);
    bat_sectors = (uint32_t)((bat_sectors * cl) >> 9);
    memset(sec, 0, sizeof(sec));
    memcpy(sec + PH_MAGIC, PRL_MAGIC2, 16);
    put_le32(sec + PH_VERSION, PRL_VERSION);
    put_le32(sec + PH_HEADS, PRL_HEADS);
    put_le32(sec + PH_CYLINDERS, (uint32_t)(total / 512 / PRL_HEADS / PRL_SEC_IN_CYL));
    put_le32(sec + PH_TRACKS, (uint32_t)(cl >> 9));
    put_le32(sec + PH_BAT_ENTRIES, (uint32_t)bat_entries);
    put_le64(sec + PH_NB_SECTORS, div_round_up_u64(total, 512));
    put_le32(sec + PH_DATA_OFF, (uint32_t)bat_sectors);

    proto = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!proto)
        return -EIO;
    r = blk_pwrite(proto, 0, sizeof(sec), sec, 0);
    if (r == 0 && bat_sectors > 1)
        r = zero_fill(proto, 512, (bat_sectors - 1) << 9);
    if (r == 0)
        /* As qemu, which flushes at close and drops the error: a failing
         * flush does not fail the create. */
        blk_flush(proto);
    if (r < 0)
        err_set_errno(err, -r, "Failed to create Parallels image");
    blk_close(proto);
    return r;
}

static const struct opt_desc prl_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "cluster_size", OPT_SIZE, "Parallels image cluster size", "1048576" },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver parallels_driver = {
    .name = "parallels",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct prl_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .supports_backing = true,
    .create_opts = prl_create_opts,
    .probe = prl_probe,
    .open = prl_open,
    .close = prl_close,
    .create = prl_create,
    .pread = prl_pread,
    .pwrite = prl_pwrite,
    .flush = prl_flush,
    .block_status = prl_block_status,
    .get_info = prl_get_info,
    .check = prl_check,
    .has_zero_init = prl_has_zero_init,
};
