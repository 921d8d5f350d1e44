/* cloop V2.0 compressed loop images, read-only, as qemu-img 7.2 reads them
 * (the cloop driver's README and create_compressed_fs; qemu's
 * block/cloop.c for the limits qemu enforces).
 *
 * Layout (big-endian): a shell preamble ("#!/bin/sh\n#V2.0 Format\n..."),
 * block_size u32 @128, n_blocks u32 @132, then n_blocks + 1 u64 offsets
 * @136; block i is the zlib stream stored at [offsets[i], offsets[i+1])
 * that inflates to exactly block_size bytes. The guest size is
 * n_blocks * block_size, computed as qemu does in 32-bit sectors (so it
 * wraps modulo 2^32 sectors).
 *
 * Invariants after open: block_size is a non-zero multiple of 512 and at
 * most 64 MiB; (n_blocks + 1) * 8 <= 512 MiB; offsets never decrease and
 * consecutive ones differ by at most 128 MiB. Only the part of the offsets
 * table inside the file is held in memory: qemu reads the rest as zeros
 * (reads past the end of the file do), which we reproduce without
 * allocating it. A block extending past the end of the file inflates from
 * its bytes followed by zeros, as in qemu. qemu has no block-status for
 * cloop: every range reports as data. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "block/driver.h"

#define CLOOP_MAX_BLOCK_SIZE (64u * 1024 * 1024)
#define CLOOP_MAX_OFFSETS_SIZE (512u * 1024 * 1024)
#define CLOOP_TABLE 136u
#define SECTOR 512u

static const char cloop_magic[] =
    "#!/bin/sh\n"
    "#V2.0 Format\n"
    "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

struct cloop_state {
    uint32_t block_size;
    uint32_t n_blocks;
    uint64_t *offsets;          /* the first n_stored + 1 ... see cloop_offset() */
    uint64_t n_stored;          /* entries read from the file; the rest are 0 */
    uint64_t file_size;
    /* One decompressed block, cached (qemu keeps the last one too). */
    pthread_mutex_t lock;
    uint8_t *block;
    uint8_t *in;                /* compressed input, the in-file part of a block */
    uint64_t in_cap;
    uint64_t cached;            /* index of the block in `block`, or UINT64_MAX */
};

static int cloop_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    /* qemu compares against a zero-padded buffer: a shorter file never
     * matches, as the magic has no NUL. */
    size_t n = strlen(cloop_magic);
    return len >= n && !memcmp(head, cloop_magic, n) ? 2 : 0;
}

static uint64_t cloop_offset(const struct cloop_state *s, uint64_t i)
{
    return i < s->n_stored ? s->offsets[i] : 0;
}

static int cloop_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct cloop_state *s = bs->opaque;
    uint8_t h[8];
    int64_t flen;
    int r;

    (void)opts;
    s->cached = UINT64_MAX;
    if (flags & BLK_O_RDWR)
        return err_set(err, EACCES, "Image is read-only");
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    s->file_size = (uint64_t)flen;

    memset(h, 0, sizeof(h));
    if (s->file_size > 128 && (r = blk_pread(bs->file, 128, min_u64(8, s->file_size - 128), h)) < 0)
        return r;
    s->block_size = get_be32(h);
    if (s->block_size % SECTOR)
        return err_set(err, EINVAL, "block_size %" PRIu32 " must be a multiple of 512",
                       s->block_size);
    if (s->block_size == 0)
        return err_set(err, EINVAL, "block_size cannot be zero");
    if (s->block_size > CLOOP_MAX_BLOCK_SIZE)
        return err_set(err, EINVAL, "block_size %" PRIu32 " must be %u MB or less",
                       s->block_size, CLOOP_MAX_BLOCK_SIZE / (1024 * 1024));
    s->n_blocks = get_be32(h + 4);
    if (s->n_blocks > (UINT32_MAX - 1) / sizeof(uint64_t))
        return err_set(err, EINVAL, "n_blocks %" PRIu32 " must be %zu or less", s->n_blocks,
                       (size_t)((UINT32_MAX - 1) / sizeof(uint64_t)));
    uint64_t entries = (uint64_t)s->n_blocks + 1;
    if (entries * 8 > CLOOP_MAX_OFFSETS_SIZE)
        return err_set(err, EINVAL, "image requires too many offsets, try increasing block size");

    /* The entries (whole or partial) inside the file; a partial last one
     * is completed with zero bytes, as qemu's read past the end gives. */
    uint64_t avail = s->file_size > CLOOP_TABLE ? s->file_size - CLOOP_TABLE : 0;
    s->n_stored = min_u64(entries, div_round_up_u64(avail, 8));
    s->offsets = calloc(s->n_stored + 1, sizeof(uint64_t));
    uint8_t *raw = calloc(s->n_stored + 1, 8);
    if (!s->offsets || !raw) {
        r = err_set(err, ENOMEM, "Could not allocate offsets table");
        goto fail;
    }
    if (s->n_stored &&
        (r = blk_pread(bs->file, CLOOP_TABLE, min_u64(avail, s->n_stored * 8), raw)) < 0)
        goto fail;
    for (uint64_t i = 0; i < s->n_stored; i++)
        s->offsets[i] = get_be64(raw + 8 * i);
    free(raw);
    raw = NULL;

    /* Checks over all entries; those past the stored ones are zero, so at
     * most the first of them can fail (and only if its predecessor is
     * not zero). */
    uint64_t check_to = min_u64(entries, s->n_stored + 1);
    for (uint64_t i = 1; i < check_to; i++) {
        uint64_t prev = cloop_offset(s, i - 1), cur = cloop_offset(s, i);
        if (cur < prev) {
            r = err_set(err, EINVAL, "offsets not monotonically increasing at index %" PRIu64
                        ", image file is corrupt", i);
            goto fail;
        }
        if (cur - prev > 2ull * CLOOP_MAX_BLOCK_SIZE) {
            r = err_set(err, EINVAL, "invalid compressed block size at index %" PRIu64
                        ", image file is corrupt", i);
            goto fail;
        }
    }
    if (pthread_mutex_init(&s->lock, NULL)) {
        r = -ENOMEM;
        goto fail;
    }
    /* qemu: total_sectors = n_blocks * sectors_per_block in uint32_t. */
    uint32_t sectors = s->n_blocks * (s->block_size / SECTOR);
    bs->total_size = (uint64_t)sectors * SECTOR;
    bs->request_alignment = SECTOR;
    return 0;

fail:
    free(raw);
    free(s->offsets);
    s->offsets = NULL;
    return r;
}

static void cloop_close(struct bds *bs)
{
    struct cloop_state *s = bs->opaque;
    free(s->offsets);
    free(s->block);
    free(s->in);
    pthread_mutex_destroy(&s->lock);
}

/* Inflate block i into s->block: -EIO for anything qemu would refuse (a
 * stream that does not end, or ends short of or beyond block_size). */
static int cloop_load(struct bds *bs, uint64_t i)
{
    struct cloop_state *s = bs->opaque;
    uint64_t start = cloop_offset(s, i), end = cloop_offset(s, i + 1);
    uint64_t size = end - start;            /* <= 128 MiB, checked at open */
    static const uint8_t zeros[4096];
    z_stream zs;
    int r, zr;

    if (s->cached == i)
        return 0;
    s->cached = UINT64_MAX;
    if (start > BLK_MAX_LENGTH || size > BLK_MAX_LENGTH - start)
        return -EIO;
    if (!s->block && !(s->block = malloc(s->block_size)))
        return -ENOMEM;
    /* Only the bytes inside the file are read; zeros follow. */
    uint64_t in = start >= s->file_size ? 0 : min_u64(size, s->file_size - start);
    if (in > s->in_cap) {
        uint8_t *p = realloc(s->in, (size_t)in);
        if (!p)
            return -ENOMEM;
        s->in = p;
        s->in_cap = in;
    }
    if (in && (r = blk_pread(bs->file, start, in, s->in)) < 0)
        return -EIO;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK)
        return -ENOMEM;
    zs.next_in = s->in;
    zs.avail_in = (uInt)in;
    zs.next_out = s->block;
    zs.avail_out = s->block_size;
    uint64_t pad = size - in;
    zr = inflate(&zs, Z_FINISH);
    while ((zr == Z_OK || zr == Z_BUF_ERROR) && zs.avail_in == 0 && pad && zs.avail_out) {
        uInt n = (uInt)min_u64(pad, sizeof(zeros));
        zs.next_in = (Bytef *)zeros;
        zs.avail_in = n;
        pad -= n;
        zr = inflate(&zs, Z_FINISH);
    }
    r = (zr == Z_STREAM_END && zs.total_out == s->block_size) ? 0 : -EIO;
    inflateEnd(&zs);
    if (r == 0)
        s->cached = i;
    return r;
}

static int cloop_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct cloop_state *s = bs->opaque;
    uint8_t *p = buf;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    while (len) {
        uint64_t i = off / s->block_size, in = off % s->block_size;
        uint64_t n = min_u64(len, s->block_size - in);
        if ((r = cloop_load(bs, i)) < 0)
            break;
        memcpy(p, s->block + in, (size_t)n);
        p += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

const struct blk_driver cloop_driver = {
    .name = "cloop",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct cloop_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .probe = cloop_probe,
    .open = cloop_open,
    .close = cloop_close,
    .pread = cloop_pread,
    .get_info = blk_get_info_unsupported,   /* qemu's cloop has none */
};
