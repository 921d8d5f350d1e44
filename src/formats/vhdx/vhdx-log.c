/* VHDX metadata log (MS-VHDX §2.3): finding the active log sequence in the
 * circular log and replaying it onto the file, and writing one entry (the
 * BAT updates of the write path) followed by its immediate replay.
 *
 * The log is a ring of 4 KiB sectors. An entry is a 64-byte header followed
 * by 32-byte descriptors (126 in the first sector, 128 in the next ones),
 * then one data sector per data descriptor; its CRC-32C covers the whole
 * entry with the checksum field read as zero. Entries are only valid when
 * they carry the active header's log GUID. The search and the replay follow
 * qemu 7.2 step for step, so the same images are found dirty, replayed, or
 * refused; sizes read from the image are bounded by the file before any
 * allocation, and every loop is bounded by the ring's length.
 *
 * Invariants: s->headers[s->curr_header] is the active, checksum-valid
 * header; s->log.length is a multiple of 1 MiB when the search runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"
#include "formats/vhdx/vhdx.h"

struct log_sequence {
    bool valid;
    uint32_t count;
    struct vhdx_log log;
    struct vhdx_log_entry_header hdr;   /* the first entry's header */
};

static uint64_t log_next(uint64_t idx, uint64_t length)
{
    idx += VHDX_LOG_SECTOR_SIZE;
    return idx >= length ? 0 : idx;
}

/* Decode the entry header at the read position without moving it. */
static int log_peek_header(struct bds *bs, const struct vhdx_log *log,
                           struct vhdx_log_entry_header *h)
{
    uint8_t buf[VHDX_LOG_HDR_SIZE];
    uint64_t rd = log->read, off;
    int r;

    if (rd % VHDX_LOG_SECTOR_SIZE)
        return -EFAULT;
    if (rd + VHDX_LOG_HDR_SIZE > log->length)
        rd = 0;
    if (rd == log->write)
        return -EINVAL;
    if (ckd_add(&off, log->offset, rd))
        return -EINVAL;
    if ((r = blk_pread(bs->file, off, sizeof(buf), buf)) < 0)
        return r;
    vhdx_log_entry_header_decode(buf, h);
    return 0;
}

/* Read up to n sectors from the read position, stopping at the write
 * position; *nread says how many were read. */
static int log_read_sectors(struct bds *bs, struct vhdx_log *log, uint32_t *nread,
                            uint8_t *buf, uint32_t n, bool peek)
{
    uint64_t rd = log->read, off;
    int r = 0;

    *nread = 0;
    while (n) {
        if (rd == log->write)
            break;
        if (ckd_add(&off, log->offset, rd)) {
            r = -EINVAL;
            break;
        }
        if ((r = blk_pread(bs->file, off, VHDX_LOG_SECTOR_SIZE, buf)) < 0)
            break;
        rd = log_next(rd, log->length);
        buf += VHDX_LOG_SECTOR_SIZE;
        (*nread)++;
        n--;
    }
    if (!peek)
        log->read = rd;
    return r;
}

static bool log_header_valid(const struct vhdx_log *log, const struct vhdx_log_entry_header *h,
                             const struct vhdx_state *s)
{
    if (h->signature != VHDX_LOG_SIGNATURE)
        return false;
    if (log->length < h->entry_length)
        return false;
    if (h->entry_length % VHDX_LOG_SECTOR_SIZE)
        return false;
    if (h->sequence_number == 0)
        return false;
    if (!vhdx_guid_eq(&h->log_guid, &s->headers[s->curr_header].log_guid))
        return false;
    if ((uint64_t)h->descriptor_count * VHDX_LOG_DESC_SIZE > h->entry_length)
        return false;
    return true;
}

static bool log_desc_valid(const struct vhdx_log_desc *d, const struct vhdx_log_entry_header *h)
{
    if (d->sequence_number != h->sequence_number)
        return false;
    if (d->file_offset % VHDX_LOG_SECTOR_SIZE)
        return false;
    if (d->signature == VHDX_LOG_ZERO_SIGNATURE)
        return d->leading_bytes % VHDX_LOG_SECTOR_SIZE == 0;
    return d->signature == VHDX_LOG_DESC_SIGNATURE;
}

/* Sectors holding the header and desc_count descriptors (never 0). */
static uint32_t log_desc_sectors(uint32_t desc_count)
{
    uint64_t n = (uint64_t)desc_count + 2;
    return (uint32_t)((n + 127) / 128);
}

/* Read an entry's header and descriptor sectors (moving the read position)
 * into a malloc'ed buffer, validating every descriptor. */
static int log_read_desc(struct bds *bs, struct vhdx_state *s, struct vhdx_log *log,
                         uint8_t **out, struct vhdx_log_entry_header *hout)
{
    struct vhdx_log_entry_header h;
    uint32_t nsec, nread;
    uint8_t *buf = NULL;
    int64_t flen;
    int r;

    *out = NULL;
    if ((r = log_peek_header(bs, log, &h)) < 0)
        return r;
    if (!log_header_valid(log, &h, s))
        return -EINVAL;
    nsec = log_desc_sectors(h.descriptor_count);
    /* Bounded by the entry length (<= log length) already; never allocate
     * more than the file could hold. */
    flen = vhdx_file_length(bs);
    if (flen < 0)
        return (int)flen;
    if ((uint64_t)nsec * VHDX_LOG_SECTOR_SIZE > (uint64_t)flen)
        return -EINVAL;
    buf = malloc((size_t)nsec * VHDX_LOG_SECTOR_SIZE);
    if (!buf)
        return -ENOMEM;
    if ((r = log_read_sectors(bs, log, &nread, buf, nsec, false)) < 0)
        goto fail;
    if (nread != nsec) {
        r = -EINVAL;
        goto fail;
    }
    for (uint32_t i = 0; i < h.descriptor_count; i++) {
        struct vhdx_log_desc d;
        vhdx_log_desc_decode(buf + VHDX_LOG_HDR_SIZE + (size_t)i * VHDX_LOG_DESC_SIZE, &d);
        if (!log_desc_valid(&d, &h)) {
            r = -EINVAL;
            goto fail;
        }
    }
    *out = buf;
    if (hout)
        *hout = h;
    return 0;

fail:
    free(buf);
    return r;
}

/* Validate the entry at the read position and move past it (one sector
 * when its header is not valid). seq > 0 requires sequence number seq + 1. */
static int log_validate_entry(struct bds *bs, struct vhdx_state *s, struct vhdx_log *log,
                              uint64_t seq, bool *valid, struct vhdx_log_entry_header *entry)
{
    static const uint8_t zero4[4];
    struct vhdx_log_entry_header h;
    uint8_t *desc = NULL, *sector = NULL;
    uint32_t nsec, total, crc, nread;
    int r;

    *valid = false;
    r = log_peek_header(bs, log, &h);
    if (r < 0 || !log_header_valid(log, &h, s) || (seq > 0 && h.sequence_number != seq + 1)) {
        log->read = log_next(log->read, log->length);
        return r;
    }
    nsec = log_desc_sectors(h.descriptor_count);
    total = h.entry_length / VHDX_LOG_SECTOR_SIZE;
    if ((r = log_read_desc(bs, s, log, &desc, NULL)) < 0)
        return r;

    crc = vhdx_crc32c_update(~0u, desc, 4);
    crc = vhdx_crc32c_update(crc, zero4, 4);
    crc = vhdx_crc32c_update(crc, desc + 8, (size_t)nsec * VHDX_LOG_SECTOR_SIZE - 8);
    sector = malloc(VHDX_LOG_SECTOR_SIZE);
    if (!sector) {
        r = -ENOMEM;
        goto out;
    }
    for (uint32_t i = nsec; i < total; i++) {
        r = log_read_sectors(bs, log, &nread, sector, 1, false);
        if (r < 0 || nread != 1)
            goto out;
        crc = vhdx_crc32c_update(crc, sector, VHDX_LOG_SECTOR_SIZE);
    }
    if (~crc == h.checksum) {
        *valid = true;
        *entry = h;
    }
out:
    free(sector);
    free(desc);
    return r;
}

/* Walk the whole ring for the valid sequence with the highest first
 * sequence number. */
static int log_search(struct bds *bs, struct vhdx_state *s, struct log_sequence *out)
{
    struct log_sequence cand = { 0 };
    struct vhdx_log cur = s->log;
    struct vhdx_log_entry_header h;
    uint64_t guard = 2 * (s->log.length / VHDX_LOG_SECTOR_SIZE) + 4;
    bool valid;
    int r;

    int64_t flen = blk_getlength(bs->file);

    cur.write = cur.length;     /* treat the ring as full */
    cur.read = 0;
    for (;;) {
        struct log_sequence now = { 0 };
        uint64_t tail = cur.read, seq = 0;

        if (!guard--)
            return -EINVAL;
        /* Past the end of the file the log reads as zeros, where no entry
         * can start: stop instead of reading a hostile 4 GiB of nothing. */
        uint64_t pos;
        if (flen >= 0 && (ckd_add(&pos, s->log.offset, tail) || pos >= (uint64_t)flen))
            break;
        if ((r = log_validate_entry(bs, s, &cur, seq, &valid, &h)) < 0)
            return r;
        if (valid) {
            now.valid = true;
            now.log = cur;
            now.log.read = tail;
            now.log.write = cur.read;
            now.count = 1;
            now.hdr = h;
            for (;;) {
                if (!guard--)
                    return -EINVAL;
                if ((r = log_validate_entry(bs, s, &cur, seq, &valid, &h)) < 0)
                    return r;
                if (!valid)
                    break;
                now.log.write = cur.read;
                now.count++;
                seq = h.sequence_number;
            }
        }
        if (now.valid && (!cand.valid || now.hdr.sequence_number > cand.hdr.sequence_number))
            cand = now;
        if (cur.read < tail)
            break;
    }
    *out = cand;
    if (cand.valid)
        s->log.sequence = cand.hdr.sequence_number + 1;
    return 0;
}

/* Apply one descriptor; data is the entry's data sector for "desc". */
static int log_apply_desc(struct bds *bs, const struct vhdx_log_desc *d, const uint8_t *data,
                          uint64_t limit)
{
    uint8_t sector[VHDX_LOG_SECTOR_SIZE];
    uint64_t end;

    if (d->signature == VHDX_LOG_DESC_SIGNATURE) {
        uint64_t seq = (uint64_t)get_le32(data + 4) << 32 | get_le32(data + 4092);
        if (seq != d->sequence_number)
            return -EINVAL;
        if (ckd_add(&end, d->file_offset, VHDX_LOG_SECTOR_SIZE) || end > limit)
            return -EINVAL;
        memcpy(sector, d->raw_leading, 8);
        memcpy(sector + 8, data + 8, 4084);
        memcpy(sector + 4092, d->raw_trailing, 4);
        return blk_pwrite(bs->file, d->file_offset, sizeof(sector), sector, 0);
    }
    if (d->signature == VHDX_LOG_ZERO_SIGNATURE) {
        uint64_t len = d->leading_bytes;
        /* A zero range must stay inside what the log says the file spans. */
        if (ckd_add(&end, d->file_offset, len) || end > limit)
            return -EINVAL;
        return len ? blk_pwrite_zeroes(bs->file, d->file_offset, len, 0) : 0;
    }
    return -EINVAL;
}

/* Write every entry of the sequence to its place, then mark the log empty. */
static int log_flush(struct bds *bs, struct vhdx_state *s, struct log_sequence *seq)
{
    uint8_t *desc = NULL, *data = NULL;
    int r;

    data = malloc(VHDX_LOG_SECTOR_SIZE);
    if (!data)
        return -ENOMEM;
    if (s->first_visible_write) {
        s->first_visible_write = false;
        if ((r = vhdx_update_headers(bs, s, true, NULL)) < 0)
            goto out;
    }
    for (uint32_t n = seq->count; n; n--) {
        struct vhdx_log_entry_header h;
        int64_t flen;
        uint64_t limit;

        if ((r = log_peek_header(bs, &seq->log, &h)) < 0)
            goto out;
        flen = vhdx_file_length(bs);
        if (flen < 0) {
            r = (int)flen;
            goto out;
        }
        if (h.flushed_file_offset > (uint64_t)flen) {
            r = -EINVAL;
            goto out;
        }
        if ((r = log_read_desc(bs, s, &seq->log, &desc, &h)) < 0)
            goto out;
        limit = max_u64((uint64_t)flen, h.last_file_offset);
        if (limit > INT64_MAX - VHDX_MiB) {
            r = -EINVAL;
            goto out;
        }
        limit = align_up_u64(limit, VHDX_MiB);
        for (uint32_t i = 0; i < h.descriptor_count; i++) {
            struct vhdx_log_desc d;
            uint32_t nread;

            vhdx_log_desc_decode(desc + VHDX_LOG_HDR_SIZE + (size_t)i * VHDX_LOG_DESC_SIZE, &d);
            if (d.signature == VHDX_LOG_DESC_SIGNATURE) {
                if ((r = log_read_sectors(bs, &seq->log, &nread, data, 1, false)) < 0)
                    goto out;
                if (nread != 1) {
                    r = -EINVAL;
                    goto out;
                }
            }
            if ((r = log_apply_desc(bs, &d, data, limit)) < 0)
                goto out;
        }
        if ((uint64_t)flen < h.last_file_offset) {
            uint64_t size = align_up_u64(h.last_file_offset, VHDX_MiB);
            if ((r = blk_truncate(bs->file, size, false, BLK_PREALLOC_OFF, NULL)) < 0)
                goto out;
        }
        free(desc);
        desc = NULL;
    }
    if ((r = blk_flush(bs->file)) < 0)
        goto out;
    /* Empty log: a zero log GUID in both headers. */
    {
        static const struct vhdx_guid zero;
        s->log.read = s->log.write = 0;
        r = vhdx_update_headers(bs, s, false, &zero);
    }
out:
    free(desc);
    free(data);
    return r;
}

int vhdx_log_parse(struct bds *bs, struct vhdx_state *s, bool *replayed, struct err *err)
{
    const struct vhdx_header *h = &s->headers[s->curr_header];
    struct log_sequence seq = { 0 };
    int r;

    *replayed = false;
    s->log.offset = h->log_offset;
    s->log.length = h->log_length;
    s->log.read = s->log.write = 0;
    s->log.sequence = s->log.tail = 0;
    if (s->log.offset < VHDX_LOG_MIN_SIZE || s->log.offset % VHDX_LOG_MIN_SIZE)
        return -EINVAL;
    if (h->log_version != 0)
        return -EINVAL;
    if (vhdx_guid_is_zero(&h->log_guid) || h->log_length == 0)
        return 0;
    if (h->log_length % VHDX_LOG_MIN_SIZE)
        return -EINVAL;
    if ((r = log_search(bs, s, &seq)) < 0)
        return r;
    if (!seq.valid)
        return 0;
    if (bs->read_only) {
        return err_set(err, EPERM,
                       "VHDX image file '%s' opened read-only, but contains a log that "
                       "needs to be replayed\nTo replay the log, run:\nqemu-img check -r all '%s'",
                       bs->filename, bs->filename);
    }
    if ((r = log_flush(bs, s, &seq)) < 0)
        return r;
    *replayed = true;
    return 0;
}

/* ------------------------------------------------------------ writing */

/* Append sectors at the write position; stops (short) when the ring is full. */
static int log_write_sectors(struct bds *bs, struct vhdx_log *log, uint32_t *nwritten,
                             const uint8_t *buf, uint32_t n)
{
    uint64_t wr = log->write;
    int r;

    *nwritten = 0;
    while (n) {
        uint64_t off = log->offset + wr;
        wr = log_next(wr, log->length);
        if (wr == log->read)
            break;
        if ((r = blk_pwrite(bs->file, off, VHDX_LOG_SECTOR_SIZE, buf, 0)) < 0)
            return r;
        buf += VHDX_LOG_SECTOR_SIZE;
        log->write = wr;
        (*nwritten)++;
        n--;
    }
    return 0;
}

static int log_write(struct bds *bs, struct vhdx_state *s, const uint8_t *data, uint32_t length,
                     uint64_t offset)
{
    struct vhdx_header *h = &s->headers[s->curr_header];
    uint32_t sector_off = (uint32_t)(offset % VHDX_LOG_SECTOR_SIZE);
    uint64_t file_off = offset - sector_off;
    uint32_t lead = 0, trail, aligned = length, partial = 0, sectors, nsec, total, written;
    uint8_t *buf = NULL, *merged = NULL;
    struct vhdx_guid guid;
    int64_t flen;
    int r;

    if (length > h->log_length)
        return -EINVAL;
    if (!vhdx_guid_is_zero(&h->log_guid))
        return -ENOTSUP;            /* the log is flushed after every entry */
    if ((r = vhdx_guid_generate(&guid)) < 0 ||
        (r = vhdx_update_headers(bs, s, false, &guid)) < 0)
        return r;
    h = &s->headers[s->curr_header];
    if (s->log.sequence == 0)
        s->log.sequence = 1;
    if (sector_off) {
        lead = (uint32_t)min_u64(VHDX_LOG_SECTOR_SIZE - sector_off, length);
        aligned -= lead;
        partial++;
    }
    sectors = aligned / VHDX_LOG_SECTOR_SIZE;
    trail = aligned - sectors * VHDX_LOG_SECTOR_SIZE;
    if (trail)
        partial++;
    sectors += partial;
    flen = vhdx_file_length(bs);
    if (flen < 0)
        return (int)flen;
    nsec = log_desc_sectors(sectors);
    total = (nsec + sectors) * VHDX_LOG_SECTOR_SIZE;

    buf = calloc(1, total);
    merged = malloc(VHDX_LOG_SECTOR_SIZE);
    if (!buf || !merged) {
        r = -ENOMEM;
        goto out;
    }
    put_le32(buf, VHDX_LOG_SIGNATURE);
    put_le32(buf + 8, total);
    put_le32(buf + 12, (uint32_t)s->log.tail);
    put_le64(buf + 16, s->log.sequence);
    put_le32(buf + 24, sectors);
    vhdx_guid_encode(buf + 32, &h->log_guid);
    put_le64(buf + 48, (uint64_t)flen);
    put_le64(buf + 56, (uint64_t)flen);

    for (uint32_t i = 0; i < sectors; i++) {
        uint8_t *desc = buf + VHDX_LOG_HDR_SIZE + (size_t)i * VHDX_LOG_DESC_SIZE;
        uint8_t *ds = buf + (size_t)(nsec + i) * VHDX_LOG_SECTOR_SIZE;
        const uint8_t *src;
        uint32_t used;

        if (i == 0 && lead) {
            if ((r = blk_pread(bs->file, file_off, VHDX_LOG_SECTOR_SIZE, merged)) < 0)
                goto out;
            memcpy(merged + sector_off, data, lead);
            used = lead;
            src = merged;
        } else if (i == sectors - 1 && trail) {
            if ((r = blk_pread(bs->file, file_off + trail, VHDX_LOG_SECTOR_SIZE - trail,
                               merged + trail)) < 0)
                goto out;
            memcpy(merged, data, trail);
            used = trail;
            src = merged;
        } else {
            used = VHDX_LOG_SECTOR_SIZE;
            src = data;
        }
        put_le32(desc, VHDX_LOG_DESC_SIGNATURE);
        memcpy(desc + 4, src + 4092, 4);            /* trailing bytes */
        memcpy(desc + 8, src, 8);                   /* leading bytes */
        put_le64(desc + 16, file_off);
        put_le64(desc + 24, s->log.sequence);
        put_le32(ds, VHDX_LOG_DATA_SIGNATURE);
        put_le32(ds + 4, (uint32_t)(s->log.sequence >> 32));
        memcpy(ds + 8, src + 8, 4084);
        put_le32(ds + 4092, (uint32_t)s->log.sequence);
        data += used;
        file_off += VHDX_LOG_SECTOR_SIZE;
    }
    vhdx_checksum_set(buf, total, 4);
    if ((r = log_write_sectors(bs, &s->log, &written, buf, nsec + sectors)) < 0)
        goto out;
    if (written != nsec + sectors) {
        r = -EINVAL;
        goto out;
    }
    s->log.sequence++;
    s->log.tail = s->log.write;
out:
    free(buf);
    free(merged);
    return r;
}

int vhdx_log_write_and_flush(struct bds *bs, struct vhdx_state *s, const void *data,
                             uint32_t length, uint64_t offset)
{
    struct log_sequence seq = { .valid = true, .count = 1 };
    int r;

    /* The data the entry makes reachable must be stable first. */
    if ((r = blk_flush(bs->file)) < 0)
        return r;
    if ((r = log_write(bs, s, data, length, offset)) < 0)
        return r;
    seq.log = s->log;
    if ((r = blk_flush(bs->file)) < 0)
        return r;
    if ((r = log_flush(bs, s, &seq)) < 0)
        return r;
    s->log = seq.log;
    return 0;
}
