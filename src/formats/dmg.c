/* Apple disk images (UDIF .dmg), read-only, as qemu-img 7.2 reads them.
 * UDIF has no public specification; the layout is the one qemu's
 * block/dmg.c accepts (and that libdmg-hfsplus / "demystifying the DMG
 * file format" describe).
 *
 * Layout (big-endian): the data fork (chunk payloads) first, then the
 * block tables, then a 512-byte "koly" trailer in the last 515 bytes of
 * the file (rounded up to 512): data fork offset u64 @0x18, resource fork
 * offset/length u64 @0x28/@0x30, XML plist offset/length u64 @0xd8/@0xe0,
 * sector count u64 @0x1ec. The block tables ("blkx") are "mish" blocks,
 * either resources of the resource fork (u32 data offset @0, u32 data
 * length @8, then u32-length-prefixed resources) or base64 <data> elements
 * of the XML plist (read only when the resource fork is empty). A mish
 * block: first sector u64 @8, data offset u64 @0x18, then from byte 204
 * entries of 40 bytes: type u32, comment u32, sector u64, sector count u64,
 * offset u64, length u64 (sector relative to the block's first sector,
 * offset to the data fork offset plus the block's data offset).
 *
 * Chunk types: 0 zeros and 2 ignore (read as zeros, any size), 1 raw,
 * 0x80000005 zlib, 0x80000006 bzip2 (libbz2 when built with it), and
 * 0x80000007 lzfse, 0x7ffffffe comment, 0xffffffff end, which are dropped:
 * lzfse as by Debian's qemu without its dmg-lzfse module (a warning, then
 * I/O errors), other unknown types with qemu's warning.
 *
 * Invariants after open: every kept chunk has length <= 64 MiB and, unless
 * it reads as zeros, at most 128 Ki sectors, so one decompressed chunk
 * fits in 64 MiB. Sector and offset sums wrap modulo 2^64 exactly as in
 * qemu, and lookups use qemu's binary search (which assumes sorted chunks)
 * with its last-chunk cache, so hostile tables read as in qemu — except
 * where qemu reads outside its arrays or stale buffer bytes: a lookup past
 * the last chunk, or an image without chunks, gives an I/O error, and the
 * sectors of a raw chunk beyond its length read as zeros. Reads past the
 * end of the file see zeros as in qemu's block layer; a resource that
 * would extend past it is refused instead of parsed from zeros. Like qemu
 * the driver has no block-status: every range reports as data. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "config.h"

#include "block/driver.h"

#ifdef HAVE_BZIP2
#include <bzlib.h>
#endif

#define SECTOR 512u
#define DMG_LENGTHS_MAX (64u * 1024 * 1024)
#define DMG_SECTORCOUNTS_MAX (DMG_LENGTHS_MAX / SECTOR)
#define DMG_XML_MAX (16u * 1024 * 1024)
#define MISH_MAGIC 0x6d697368u
#define MISH_MIN 244u
#define MISH_ENTRIES 204u
#define MISH_ENTRY 40u

enum {
    UDZE = 0, UDRW = 1, UDIG = 2,
    UDCO = 0x80000004u, UDZO = 0x80000005u, UDBZ = 0x80000006u, ULFO = 0x80000007u,
    UDCM = 0x7ffffffeu, UDLE = 0xffffffffu,
};

enum { K_DATA_FORK = 0x18, K_RSRC_OFF = 0x28, K_RSRC_LEN = 0x30, K_XML_OFF = 0xd8,
       K_XML_LEN = 0xe0, K_SECTORS = 0x1ec };

struct dmg_chunk {
    uint32_t type;
    uint64_t sector;            /* first guest sector (wrapping sum, as qemu) */
    uint64_t count;             /* sectors */
    uint64_t offset;            /* in the file (wrapping sum, as qemu) */
    uint64_t length;            /* bytes in the file, <= 64 MiB */
};

struct dmg_state {
    struct dmg_chunk *chunks;
    uint32_t n_chunks;
    uint32_t cap;
    uint64_t data_fork;
    uint64_t sectors;           /* guest size in sectors (koly) */
    uint64_t file_size;
    /* The last chunk looked up (qemu's current_chunk) and, for compressed
     * chunks, its decompressed bytes. */
    uint32_t current;
    uint8_t *out;
    uint64_t out_cap;
    uint8_t *in;
    uint64_t in_cap;
};

/* qemu's warn_report_once: once per process and call site. */
static void warn_once(int *done, const char *msg)
{
    if (__atomic_exchange_n(done, 1, __ATOMIC_RELAXED))
        return;
    blk_message("%s: warning: %s", blk_prog_name(), msg);
}

static int dmg_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)head;
    /* qemu takes an empty file as raw before probing. */
    if (!len || !filename)
        return 0;
    size_t n = strlen(filename);
    return n > 4 && !strcmp(filename + n - 4, ".dmg") ? 2 : 0;
}

/* Read [off, off+len) of the file as qemu's block layer does: EIO past its
 * maximum length, zeros past the end of the file. */
static int dmg_read_file(struct dmg_state *s, struct bds *bs, uint64_t off, uint64_t len, void *buf)
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

static int read_be32(struct dmg_state *s, struct bds *bs, uint64_t off, uint32_t *v)
{
    uint8_t b[4];
    int r = dmg_read_file(s, bs, off, 4, b);
    if (r == 0)
        *v = get_be32(b);
    return r;
}

static int read_be64(struct dmg_state *s, struct bds *bs, uint64_t off, uint64_t *v)
{
    uint8_t b[8];
    int r = dmg_read_file(s, bs, off, 8, b);
    if (r == 0)
        *v = get_be64(b);
    return r;
}

static bool dmg_type_known(uint32_t t)
{
    switch (t) {
    case UDZE: case UDRW: case UDIG: case UDZO:
        return true;
    case UDBZ:
#ifdef HAVE_BZIP2
        return true;
#else
        return false;
#endif
    default:
        return false;
    }
}

/* Append the chunks of one mish block of `count` bytes. Blocks that are
 * not mish blocks (or too short) are skipped, as in qemu. */
static int dmg_read_mish(struct dmg_state *s, const uint8_t *buf, uint32_t count)
{
    static int warned_bz2, warned_lzfse, warned_unknown;

    if (count < MISH_MIN || get_be32(buf) != MISH_MAGIC)
        return 0;
    uint64_t out_base = get_be64(buf + 8);
    uint64_t in_base = s->data_fork + get_be64(buf + 0x18);
    uint32_t n = (count - MISH_ENTRIES) / MISH_ENTRY;

    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *e = buf + MISH_ENTRIES + (size_t)k * MISH_ENTRY;
        struct dmg_chunk c = { .type = get_be32(e) };
        char msg[160];

        if (!dmg_type_known(c.type)) {
            switch (c.type) {
            case UDBZ:
                warn_once(&warned_bz2, "dmg-bzip2 module is missing, accessing bzip2 "
                          "compressed blocks will result in I/O errors");
                break;
            case ULFO:
                warn_once(&warned_lzfse, "dmg-lzfse module is missing, accessing lzfse "
                          "compressed blocks will result in I/O errors");
                break;
            case UDCM:
            case UDLE:
                break;
            default:
                snprintf(msg, sizeof(msg), "Image contains chunks of unknown type %" PRIx32
                         ", accessing them will result in I/O errors", c.type);
                warn_once(&warned_unknown, msg);
                break;
            }
            continue;
        }
        c.sector = get_be64(e + 8) + out_base;
        c.count = get_be64(e + 0x10);
        if (c.type != UDZE && c.type != UDIG && c.count > DMG_SECTORCOUNTS_MAX) {
            blk_message("%s: sector count %" PRIu64 " for chunk %" PRIu32
                        " is larger than max (%u)", blk_prog_name(), c.count, s->n_chunks,
                        DMG_SECTORCOUNTS_MAX);
            return -EINVAL;
        }
        c.offset = get_be64(e + 0x18) + in_base;
        c.length = get_be64(e + 0x20);
        if (c.length > DMG_LENGTHS_MAX) {
            blk_message("%s: length %" PRIu64 " for chunk %" PRIu32
                        " is larger than max (%u)", blk_prog_name(), c.length, s->n_chunks,
                        DMG_LENGTHS_MAX);
            return -EINVAL;
        }
        if (s->n_chunks == s->cap) {
            /* Bounded by the table's bytes: 40 per entry, all in the file. */
            uint32_t cap = s->cap ? s->cap * 2 : 64;
            if (cap < s->cap)
                return -ENOMEM;
            struct dmg_chunk *p = reallocarray(s->chunks, cap, sizeof(*p));
            if (!p)
                return -ENOMEM;
            s->chunks = p;
            s->cap = cap;
        }
        s->chunks[s->n_chunks++] = c;
    }
    return 0;
}

static int dmg_read_rsrc(struct dmg_state *s, struct bds *bs, uint64_t begin, uint64_t length)
{
    uint32_t data_off = 0, count = 0;
    uint8_t *buf = NULL;
    int r;

    if ((r = read_be32(s, bs, begin, &data_off)) < 0)
        return r;
    if (data_off > length)
        return -EINVAL;
    if ((r = read_be32(s, bs, begin + 8, &count)) < 0)
        return r;
    /* qemu adds the two as 32-bit numbers. */
    if (count == 0 || (uint32_t)(data_off + count) > length)
        return -EINVAL;
    uint64_t off = begin + data_off, end = off + count;
    while (off < end) {
        if ((r = read_be32(s, bs, off, &count)) < 0)
            goto out;
        if (count == 0 || count > end - off) {
            r = -EINVAL;
            goto out;
        }
        off += 4;
        /* qemu would parse a resource past the end of the file from
         * zeros (possibly gigabytes of them): refuse it. */
        if (off > s->file_size || count > s->file_size - off) {
            r = -EINVAL;
            goto out;
        }
        uint8_t *p = realloc(buf, count);
        if (!p) {
            r = -ENOMEM;
            goto out;
        }
        buf = p;
        if ((r = dmg_read_file(s, bs, off, count, buf)) < 0)
            goto out;
        if ((r = dmg_read_mish(s, buf, count)) < 0)
            goto out;
        off += count;
    }
    r = 0;
out:
    free(buf);
    return r;
}

/* glib's g_base64_decode(): characters outside the alphabet are skipped,
 * '=' counts as a zero digit and suppresses output bytes; a trailing
 * partial group is dropped. out must hold len / 4 * 3 bytes. */
static size_t dmg_base64_decode(const char *in, size_t len, uint8_t *out)
{
    uint8_t last0 = 0, last1 = 0;
    uint32_t v = 0;
    int i = 0;
    size_t n = 0;

    for (size_t k = 0; k < len; k++) {
        uint8_t c = (uint8_t)in[k];
        int rank;
        if (c >= 'A' && c <= 'Z')
            rank = c - 'A';
        else if (c >= 'a' && c <= 'z')
            rank = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            rank = c - '0' + 52;
        else if (c == '+')
            rank = 62;
        else if (c == '/')
            rank = 63;
        else if (c == '=')
            rank = 0;
        else
            continue;
        last1 = last0;
        last0 = c;
        v = v << 6 | (uint32_t)rank;
        if (++i == 4) {
            out[n++] = (uint8_t)(v >> 16);
            if (last1 != '=')
                out[n++] = (uint8_t)(v >> 8);
            if (last0 != '=')
                out[n++] = (uint8_t)v;
            i = 0;
        }
    }
    return n;
}

static int dmg_read_xml(struct dmg_state *s, struct bds *bs, uint64_t begin, uint64_t length)
{
    char *buf;
    uint8_t *mish = NULL;
    int r;

    if (length == 0 || length > DMG_XML_MAX)
        return -EINVAL;
    buf = malloc((size_t)length + 1);
    if (!buf)
        return -ENOMEM;
    if (dmg_read_file(s, bs, begin, length, buf) < 0) {
        r = -EINVAL;
        goto out;
    }
    buf[length] = '\0';         /* qemu searches it as a C string */
    char *end = buf, *start;
    while ((start = strstr(end, "<data>")) != NULL) {
        start += 6;
        end = strstr(start, "</data>");
        if (!end) {
            r = -EINVAL;
            goto out;
        }
        *end++ = '\0';
        size_t tlen = strlen(start);
        uint8_t *p = realloc(mish, tlen / 4 * 3 + 1);
        if (!p) {
            r = -ENOMEM;
            goto out;
        }
        mish = p;
        size_t n = dmg_base64_decode(start, tlen, mish);
        /* n <= 12 MiB: the (uint32_t) of qemu changes nothing. */
        if ((r = dmg_read_mish(s, mish, (uint32_t)n)) < 0)
            goto out;
    }
    r = 0;
out:
    free(mish);
    free(buf);
    return r;
}

static int dmg_find_koly(struct dmg_state *s, struct bds *bs, uint64_t *koly, struct err *err)
{
    /* qemu's file length is whole sectors; the trailer may start anywhere
     * in the last 515 bytes of that. */
    uint64_t length = align_up_u64(s->file_size, SECTOR), off = 0;
    uint8_t buf[515];
    int r;

    if (length < SECTOR)
        return err_set(err, EINVAL, "dmg file must be at least 512 bytes long");
    if (length > 511 + 512)
        off = length - 511 - 512;
    length = min_u64(length, sizeof(buf));
    if ((r = dmg_read_file(s, bs, off, length, buf)) < 0)
        return err_set_errno(err, -r, "Failed while reading UDIF trailer");
    for (uint64_t i = 0; i + 3 < length; i++) {
        if (!memcmp(buf + i, "koly", 4)) {
            *koly = off + i;
            return 0;
        }
    }
    return err_set(err, EINVAL, "Could not locate UDIF trailer in dmg file");
}

static void dmg_free_tables(struct dmg_state *s)
{
    free(s->chunks);
    free(s->in);
    free(s->out);
    s->chunks = NULL;
    s->in = s->out = NULL;
}

static int dmg_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct dmg_state *s = bs->opaque;
    uint64_t koly, rsrc_off, rsrc_len, xml_off, xml_len;
    int64_t flen;
    int r;

    (void)opts;
    if (flags & BLK_O_RDWR)
        return err_set(err, EACCES, "Image is read-only");
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    s->file_size = (uint64_t)flen;
    /* Debian's qemu-img looks for its optional decompressor modules on
     * every open and says so; the lines are part of its output. */
    blk_message("qemu: module block-block-dmg-bz2 not found, do you want to install "
                "qemu-block-extra package?");
    blk_message("qemu: module block-block-dmg-lzfse not found, do you want to install "
                "qemu-block-extra package?");

    if ((r = dmg_find_koly(s, bs, &koly, err)) < 0)
        return r;
    if ((r = read_be64(s, bs, koly + K_DATA_FORK, &s->data_fork)) < 0)
        goto fail;
    if (s->data_fork > koly) {
        r = -EINVAL;
        goto fail;
    }
    if ((r = read_be64(s, bs, koly + K_RSRC_OFF, &rsrc_off)) < 0 ||
        (r = read_be64(s, bs, koly + K_RSRC_LEN, &rsrc_len)) < 0)
        goto fail;
    if (rsrc_off >= koly || rsrc_len > koly - rsrc_off) {
        r = -EINVAL;
        goto fail;
    }
    if ((r = read_be64(s, bs, koly + K_XML_OFF, &xml_off)) < 0 ||
        (r = read_be64(s, bs, koly + K_XML_LEN, &xml_len)) < 0)
        goto fail;
    if (xml_off >= koly || xml_len > koly - xml_off) {
        r = -EINVAL;
        goto fail;
    }
    if ((r = read_be64(s, bs, koly + K_SECTORS, &s->sectors)) < 0)
        goto fail;
    if (s->sectors > (uint64_t)INT64_MAX) {
        r = -EINVAL;
        goto fail;
    }
    if (rsrc_len)
        r = dmg_read_rsrc(s, bs, rsrc_off, rsrc_len);
    else if (xml_len)
        r = dmg_read_xml(s, bs, xml_off, xml_len);
    else
        r = -EINVAL;
    if (r < 0)
        goto fail;
    /* qemu's check of the size, done in unsigned 64-bit arithmetic (the
     * product wraps); sizes past INT64_MAX that slip through fail later in
     * get_length, as in qemu. */
    if (s->sectors * SECTOR > BLK_MAX_LENGTH) {
        r = err_set_errno(err, EFBIG, "Could not refresh total sector count");
        goto fail;
    }
    s->current = s->n_chunks;
    bs->total_size = s->sectors <= (uint64_t)INT64_MAX / SECTOR ? s->sectors * SECTOR : 0;
    bs->request_alignment = SECTOR;
    return 0;

fail:
    dmg_free_tables(s);
    return r;
}

static void dmg_close(struct bds *bs)
{
    dmg_free_tables(bs->opaque);
}

static int64_t dmg_get_length(struct bds *bs)
{
    struct dmg_state *s = bs->opaque;
    if (s->sectors > (uint64_t)INT64_MAX / SECTOR)
        return -EFBIG;
    return (int64_t)(s->sectors * SECTOR);
}

static bool dmg_in_chunk(const struct dmg_state *s, uint32_t i, uint64_t sector)
{
    if (i >= s->n_chunks)
        return false;
    const struct dmg_chunk *c = &s->chunks[i];
    return c->sector <= sector && c->sector + c->count > sector;
}

/* qemu's binary search, which may step one past the last chunk: that step
 * (an out-of-bounds read in qemu) ends the search unsuccessfully here. */
static uint32_t dmg_search(const struct dmg_state *s, uint64_t sector)
{
    uint32_t lo = 0, hi = s->n_chunks;
    while (lo <= hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (mid >= s->n_chunks)
            return s->n_chunks;
        const struct dmg_chunk *c = &s->chunks[mid];
        if (c->sector > sector) {
            if (mid == 0)
                return s->n_chunks;
            hi = mid - 1;
        } else if (c->sector + c->count > sector) {
            return mid;
        } else {
            lo = mid + 1;
        }
    }
    return s->n_chunks;
}

/* The compressed bytes of chunk c, with the part past the end of the file
 * as zeros (fed to the decompressor without being stored). */
static int dmg_read_input(struct dmg_state *s, struct bds *bs, const struct dmg_chunk *c,
                          uint64_t *in_file)
{
    if (c->offset > BLK_MAX_LENGTH || c->length > BLK_MAX_LENGTH - c->offset)
        return -EIO;
    uint64_t in = c->offset >= s->file_size ? 0 : min_u64(c->length, s->file_size - c->offset);
    if (in > s->in_cap) {
        uint8_t *p = realloc(s->in, (size_t)in);
        if (!p)
            return -ENOMEM;
        s->in = p;
        s->in_cap = in;
    }
    if (in && blk_pread(bs->file, c->offset, in, s->in) < 0)
        return -EIO;
    *in_file = in;
    return 0;
}

static const uint8_t dmg_zeros[4096];

static int dmg_inflate(struct dmg_state *s, uint64_t in, uint64_t pad, uint64_t want)
{
    z_stream zs;
    int zr, r;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK)
        return -ENOMEM;
    zs.next_in = s->in;
    zs.avail_in = (uInt)in;
    zs.next_out = s->out;
    zs.avail_out = (uInt)want;
    zr = inflate(&zs, Z_FINISH);
    while ((zr == Z_OK || zr == Z_BUF_ERROR) && zs.avail_in == 0 && pad && zs.avail_out) {
        uInt n = (uInt)min_u64(pad, sizeof(dmg_zeros));
        zs.next_in = (Bytef *)dmg_zeros;
        zs.avail_in = n;
        pad -= n;
        zr = inflate(&zs, Z_FINISH);
    }
    r = (zr == Z_STREAM_END && zs.total_out == want) ? 0 : -EIO;
    inflateEnd(&zs);
    return r;
}

#ifdef HAVE_BZIP2
static int dmg_bunzip2(struct dmg_state *s, uint64_t in, uint64_t pad, uint64_t want)
{
    bz_stream bz;
    int br;

    memset(&bz, 0, sizeof(bz));
    if (BZ2_bzDecompressInit(&bz, 0, 0) != BZ_OK)
        return -EIO;
    bz.next_in = (char *)s->in;
    bz.avail_in = (unsigned)in;
    bz.next_out = (char *)s->out;
    bz.avail_out = (unsigned)want;
    br = BZ2_bzDecompress(&bz);
    while (br == BZ_OK && bz.avail_in == 0 && pad && bz.avail_out) {
        unsigned n = (unsigned)min_u64(pad, sizeof(dmg_zeros));
        bz.next_in = (char *)dmg_zeros;
        bz.avail_in = n;
        pad -= n;
        br = BZ2_bzDecompress(&bz);
    }
    uint64_t total = (uint64_t)bz.total_out_hi32 << 32 | bz.total_out_lo32;
    BZ2_bzDecompressEnd(&bz);
    return br == BZ_STREAM_END && total == want ? 0 : -EIO;
}
#endif

/* Make chunk i the current one: decompress it when compressed. */
static int dmg_load(struct dmg_state *s, struct bds *bs, uint32_t i)
{
    const struct dmg_chunk *c = &s->chunks[i];
    uint64_t in, want = c->count * SECTOR;     /* <= 64 MiB for these types */
    int r = 0;

    s->current = s->n_chunks;
    switch (c->type) {
    case UDZO:
    case UDBZ:
        if ((r = dmg_read_input(s, bs, c, &in)) < 0)
            return r;
        if (want > s->out_cap) {
            uint8_t *p = realloc(s->out, (size_t)want);
            if (!p)
                return -ENOMEM;
            s->out = p;
            s->out_cap = want;
        }
#ifdef HAVE_BZIP2
        if (c->type == UDBZ)
            r = dmg_bunzip2(s, in, c->length - in, want);
        else
#endif
            r = dmg_inflate(s, in, c->length - in, want);
        break;
    case UDRW:
        /* Read on demand; qemu reads the whole chunk, so a chunk reaching
         * beyond qemu's maximum offset fails as a whole. */
        if (c->offset > BLK_MAX_LENGTH || c->length > BLK_MAX_LENGTH - c->offset)
            return -EIO;
        break;
    default:
        break;
    }
    if (r == 0)
        s->current = i;
    return r;
}

static int dmg_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct dmg_state *s = bs->opaque;
    uint8_t *p = buf;
    uint64_t sector = off / SECTOR, n = len / SECTOR;
    int r;

    /* io.c aligns requests to 512 bytes. */
    while (n) {
        if (!dmg_in_chunk(s, s->current, sector)) {
            uint32_t i = dmg_search(s, sector);
            if (i >= s->n_chunks) {
                s->current = s->n_chunks;
                return -EIO;
            }
            if ((r = dmg_load(s, bs, i)) < 0)
                return -EIO;
        }
        const struct dmg_chunk *c = &s->chunks[s->current];
        uint64_t in = sector - c->sector;
        uint64_t run = min_u64(n, c->sector + c->count - sector);
        uint64_t bytes = run * SECTOR;

        switch (c->type) {
        case UDZO:
        case UDBZ:
            memcpy(p, s->out + in * SECTOR, (size_t)bytes);
            break;
        case UDRW: {
            /* Bytes of the chunk past its length read as zeros. */
            uint64_t from = in * SECTOR;
            uint64_t have = from >= c->length ? 0 : min_u64(bytes, c->length - from);
            if (have && dmg_read_file(s, bs, c->offset + from, have, p) < 0)
                return -EIO;
            memset(p + have, 0, (size_t)(bytes - have));
            break;
        }
        default:
            memset(p, 0, (size_t)bytes);
            break;
        }
        p += bytes;
        sector += run;
        n -= run;
    }
    return 0;
}

const struct blk_driver dmg_driver = {
    .name = "dmg",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct dmg_state),
    .thread_model = BLK_THREAD_SERIALIZE,
    .probe = dmg_probe,
    .open = dmg_open,
    .close = dmg_close,
    .pread = dmg_pread,
    .get_length = dmg_get_length,
    .get_info = blk_get_info_unsupported,   /* qemu's dmg has none */
};
