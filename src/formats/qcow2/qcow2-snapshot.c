/* qcow2 internal snapshots (qcow2.txt "Snapshots"): reading, writing and
 * listing the snapshot table; creating, applying and deleting snapshots;
 * loading one read-only in place of the active L1 table (convert -l).
 *
 * Table entries: a 40-byte fixed header, extra data (qemu understands the
 * first 24 bytes: large vm state size, disk size, icount, and always writes
 * at least those), the id string, the name, each entry padded to 8 bytes.
 * The table is bounded by qemu's 64 MiB limit and every read is checked.
 *
 * A snapshot owns a copy of the active L1 table; every L2 table and data
 * cluster reachable from it carries one more reference. OFLAG_COPIED (in L1
 * and L2 entries of the active tree) is set exactly where the refcount is
 * 1, which is what makes the write path copy shared clusters first.
 *
 * Ordering (as qemu 7.2): refcount increases and the new L1 copy reach the
 * disk before the snapshot table that points to them; the new table is on
 * disk before the header switches to it; the old table, and clusters that
 * lose references, are freed after the switch. A failure in between can only
 * leak clusters. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

#define MAX_SNAPSHOTS_BYTES (1024ULL * QCOW2_MAX_SNAPSHOTS)
#define KNOWN_EXTRA 24u

void qcow2_free_snapshots(struct qcow2_state *s)
{
    if (!s->snapshots)
        return;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        free(s->snapshots[i].id_str);
        free(s->snapshots[i].name);
        free(s->snapshots[i].extra);
    }
    free(s->snapshots);
    s->snapshots = NULL;
}

int qcow2_read_snapshots(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t off = s->snapshots_offset, table_len = 0;
    int r;

    s->snapshots_size = 0;
    if (!s->nb_snapshots)
        return 0;
    /* open validates the count, but check opens skip that: cap here too */
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return err_set(err, EFBIG, "Too many snapshots");
    s->snapshots = calloc(s->nb_snapshots, sizeof(*s->snapshots));
    if (!s->snapshots)
        return err_set(err, ENOMEM, "Failed to read snapshot table: Cannot allocate memory");
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint8_t h[QCOW2_SNAPSHOT_HEADER_LEN], ex[KNOWN_EXTRA];
        uint16_t idl, nml;
        uint64_t exlen;

        table_len = align_up_u64(table_len, 8);
        off = align_up_u64(off, 8);
        r = blk_pread(bs->file, off, sizeof(h), h);
        if (r < 0)
            goto io_fail;
        off += sizeof(h);
        sn->l1_offset = get_be64(h);
        sn->l1_size = get_be32(h + 8);
        idl = get_be16(h + 12);
        nml = get_be16(h + 14);
        sn->date_sec = get_be32(h + 16);
        sn->date_nsec = get_be32(h + 20);
        sn->vm_clock_nsec = get_be64(h + 24);
        sn->vm_state_size = get_be32(h + 32);
        sn->extra_size = get_be32(h + 36);
        if (sn->extra_size > QCOW2_MAX_SNAPSHOT_EXTRA) {
            r = err_set(err, EFBIG, "Too much extra metadata in snapshot table entry %u\n"
                        "You can force-remove this extra metadata with qemu-img check -r all", i);
            goto fail;
        }
        exlen = min_u64(sizeof(ex), sn->extra_size);
        memset(ex, 0, sizeof(ex));
        if (exlen && (r = blk_pread(bs->file, off, exlen, ex)) < 0)
            goto io_fail;
        off += exlen;
        if (sn->extra_size >= 8)
            sn->vm_state_size = get_be64(ex);
        /* Without a stored disk size the snapshot has the image's size at
         * open time (see sn_disk_size()). */
        sn->has_disk_size = sn->extra_size >= 16;
        sn->disk_size = sn->has_disk_size ? get_be64(ex + 8) : 0;
        sn->has_icount = sn->extra_size >= 24;
        sn->icount = sn->has_icount ? get_be64(ex + 16) : UINT64_MAX;
        if (sn->extra_size > sizeof(ex)) {
            uint32_t ul = sn->extra_size - (uint32_t)sizeof(ex);
            sn->extra = malloc(ul);
            if (!sn->extra) {
                r = -ENOMEM;
                goto io_fail;
            }
            if ((r = blk_pread(bs->file, off, ul, sn->extra)) < 0)
                goto io_fail;
            off += ul;
        }
        sn->id_str = calloc(1, (size_t)idl + 1);
        sn->name = calloc(1, (size_t)nml + 1);
        if (!sn->id_str || !sn->name) {
            r = -ENOMEM;
            goto io_fail;
        }
        if (idl && (r = blk_pread(bs->file, off, idl, sn->id_str)) < 0)
            goto io_fail;
        off += idl;
        if (nml && (r = blk_pread(bs->file, off, nml, sn->name)) < 0)
            goto io_fail;
        off += nml;
        table_len += sizeof(h) + sn->extra_size + idl + nml;
        if (table_len > MAX_SNAPSHOTS_BYTES) {
            r = err_set(err, EFBIG, "Snapshot table is too big\nYou can force-remove all %u "
                        "overhanging snapshots with qemu-img check -r all", s->nb_snapshots - i);
            goto fail;
        }
    }
    s->snapshots_size = off - s->snapshots_offset;
    return 0;

io_fail:
    err_set_errno(err, -r, "Failed to read snapshot table");
fail:
    qcow2_free_snapshots(s);
    return r;
}

static uint64_t sn_disk_size(struct bds *bs, const struct qcow2_snapshot *sn)
{
    return sn->has_disk_size ? sn->disk_size : bs->total_size;
}

/* Flush the metadata caches and the file: qemu's bdrv_flush(bs). */
static int sync_all(struct bds *bs)
{
    int r = qcow2_meta_flush(bs);
    return r < 0 ? r : blk_flush(bs->file);
}

/* qemu's qcow2_validate_table() for a snapshot's L1 table, plus the bound
 * the file itself gives. */
static int validate_sn_l1(struct bds *bs, const struct qcow2_snapshot *sn, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t bytes = (uint64_t)sn->l1_size * 8;

    if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return err_set(err, EFBIG, "Snapshot L1 table too large");
    if ((uint64_t)INT64_MAX - bytes < sn->l1_offset || qcow2_off_in_cluster(s, sn->l1_offset))
        return err_set(err, EINVAL, "Snapshot L1 table offset invalid");
    return 0;
}

/* Read a snapshot's L1 table (host-endian) into a zeroed array of at least
 * min_entries entries. */
static int read_sn_l1(struct bds *bs, const struct qcow2_snapshot *sn, uint64_t min_entries,
                      uint64_t **out)
{
    uint64_t n = max_u64(sn->l1_size, min_entries), *t;
    uint8_t *raw = NULL;
    int64_t flen;
    int r;

    /* validate_sn_l1() bounded the size by qemu's L1 limit; what lies past
     * the end of the file reads as zeros, as it does for qemu. */
    *out = NULL;
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    t = calloc(n ? n : 1, 8);
    raw = calloc(sn->l1_size ? sn->l1_size : 1, 8);
    if (!t || !raw) {
        r = -ENOMEM;
        goto out;
    }
    if (sn->l1_size && sn->l1_offset < (uint64_t)flen) {
        uint64_t len = min_u64((uint64_t)sn->l1_size * 8, (uint64_t)flen - sn->l1_offset);
        if ((r = blk_pread(bs->file, sn->l1_offset, len, raw)) < 0)
            goto out;
    }
    for (uint32_t i = 0; i < sn->l1_size; i++)
        t[i] = get_be64(raw + 8 * i);
    *out = t;
    t = NULL;
    r = 0;
out:
    free(raw);
    free(t);
    return r;
}

static int write_l1_table(struct bds *bs, uint64_t offset, const uint64_t *t, uint64_t n)
{
    uint8_t *raw;
    int r;

    if (!n)
        return 0;
    raw = malloc(n * 8);
    if (!raw)
        return -ENOMEM;
    for (uint64_t i = 0; i < n; i++)
        put_be64(raw + 8 * i, t[i]);
    r = blk_pwrite(bs->file, offset, n * 8, raw, 0);
    free(raw);
    return r;
}

/* Change the refcount of the clusters in [offset, offset+len) by one
 * (addend > 0: up, < 0: down), retrying when a refcount block had to be
 * allocated first. */
static int change_ref(struct bds *bs, uint64_t offset, uint64_t len, int addend)
{
    int r;
    do {
        r = qcow2_update_refcount(bs, offset, len, 1, addend < 0,
                                  addend < 0 ? QCOW2_DISCARD_SNAPSHOT : QCOW2_DISCARD_NEVER);
    } while (r == -EAGAIN);
    return r;
}

/* A referenced cluster must lie inside the file: anything else is a
 * corrupt table, and touching its refcount would grow the refcount
 * structures without bound. */
static bool inside_file(uint64_t offset, uint64_t len, uint64_t flen)
{
    return offset < flen && len <= flen - offset;
}

/* Free clusters the snapshot code owned (old tables, a deleted snapshot's
 * L1); what becomes unused is discarded per type (qcow2_free_clusters). */
static void free_and_discard(struct bds *bs, uint64_t offset, uint64_t len,
                             enum qcow2_discard_type type)
{
    int64_t flen = blk_getlength(bs->file);

    /* A range reaching past the file was never allocated (a corrupt entry):
     * qemu's free fails there and undoes itself, so nothing is freed. */
    if (!len || flen < 0 || !inside_file(offset, len, (uint64_t)flen))
        return;
    qcow2_free_clusters(bs, offset, len, type);
}

/* Walk the tree of the L1 table at l1_offset (the in-memory active table
 * when it is the active one): change the refcount of every L2 table and
 * data cluster by addend (-1, 0, 1), then set OFLAG_COPIED in the entries
 * exactly where the refcount is 1. The L1 table is rewritten when its
 * flags changed, unless addend < 0 (the table is going away). */
static int update_tree_refcounts(struct bds *bs, uint64_t l1_offset, uint32_t l1_size, int addend)
{
    struct qcow2_state *s = qcow2_st(bs);
    bool active = l1_offset == s->l1_offset, l1_modified = false;
    bool outer = s->cache_discards;
    uint64_t *l1 = NULL, ref;
    int64_t flen;
    int r;

    flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    if (active) {
        if (l1_size != s->l1_size)
            return -EIO;
        l1 = s->l1;
    } else {
        struct qcow2_snapshot tmp = { .l1_offset = l1_offset, .l1_size = l1_size };
        r = read_sn_l1(bs, &tmp, 0, &l1);
        if (r < 0)
            return r;
    }

    /* Freed clusters are discarded together once the walk is over (qemu's
     * pass-discard-snapshot, on by default), one request per host run. */
    s->cache_discards = true;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2_off = l1[i] & QCOW2_L1E_OFFSET_MASK, old_l1e = l1[i], new_l1e;
        uint8_t *l2;

        if (!l1[i])
            continue;
        if (qcow2_off_in_cluster(s, l2_off)) {
            qcow2_signal_corruption(bs, true, "L2 table offset %#" PRIx64 " unaligned (L1 index: %#x)",
                                    l2_off, (unsigned)i);
            r = -EIO;
            goto out;
        }
        if (!inside_file(l2_off, s->cluster_size, (uint64_t)flen)) {
            r = -EIO;
            goto out;
        }
        /* Refcount updates only touch the refcount cache (and drop freed
         * clusters from the L2 cache), so the table stays put while we walk
         * it; its buffer stays valid memory in any case. */
        r = qcow2_cache_get(bs, &s->l2_cache, l2_off, false, &l2);
        if (r < 0)
            goto out;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e, old, host, len;

            old = qcow2_l2e_get(s, l2, j);
            e = old & ~QCOW2_OFLAG_COPIED;
            host = e & QCOW2_L2E_OFFSET_MASK;
            if (e & QCOW2_OFLAG_COMPRESSED) {
                if (addend) {
                    qcow2_compressed_decode(e, s->cluster_bits, &host, &len);
                    if (!inside_file(host, len, (uint64_t)flen)) {
                        r = -EIO;
                        goto out;
                    }
                    if ((r = change_ref(bs, host, len, addend)) < 0)
                        goto out;
                }
                ref = 2;        /* compressed clusters are never COPIED */
            } else if (!host) {
                ref = 0;        /* unallocated or plain zero */
            } else {
                if (qcow2_off_in_cluster(s, host)) {
                    qcow2_signal_corruption(bs, true, "Cluster allocation offset %#" PRIx64
                                            " unaligned (L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                            host, l2_off, (unsigned)j);
                    r = -EIO;
                    goto out;
                }
                if (!inside_file(host, s->cluster_size, (uint64_t)flen)) {
                    r = -EIO;
                    goto out;
                }
                if (addend && (r = change_ref(bs, host, s->cluster_size, addend)) < 0)
                    goto out;
                if ((r = qcow2_get_refcount(bs, host >> s->cluster_bits, &ref)) < 0)
                    goto out;
            }
            if (ref == 1)
                e |= QCOW2_OFLAG_COPIED;
            if (e != old) {
                qcow2_l2e_set(s, l2, j, e);
                qcow2_cache_mark_dirty(&s->l2_cache, l2);
            }
        }
        if (addend && (r = change_ref(bs, l2_off, s->cluster_size, addend)) < 0)
            goto out;
        if ((r = qcow2_get_refcount(bs, l2_off >> s->cluster_bits, &ref)) < 0)
            goto out;
        new_l1e = ref == 1 ? l2_off | QCOW2_OFLAG_COPIED : l2_off;
        if (new_l1e != old_l1e) {
            l1[i] = new_l1e;
            l1_modified = true;
        }
    }
    r = sync_all(bs);
    if (r == 0 && addend >= 0 && l1_modified) {
        r = write_l1_table(bs, l1_offset, l1, l1_size);
        if (r == 0)
            r = blk_flush(bs->file);
    }
out:
    /* Like qemu, discard what was freed even when the walk failed. */
    if (!outer) {
        s->cache_discards = false;
        qcow2_process_discards(bs, 0);
    }
    if (!active)
        free(l1);
    return r;
}

/* Write the whole in-memory table to newly allocated clusters, point the
 * header at it, then free the old one. */
int qcow2_write_snapshots(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t size = 0, pos;
    int64_t off = 0, flen;
    uint8_t *buf = NULL, hdr[12];
    int r;

    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        size = align_up_u64(size, 8);
        size += QCOW2_SNAPSHOT_HEADER_LEN + max_u64(KNOWN_EXTRA, sn->extra_size) +
                strlen(sn->id_str) + strlen(sn->name);
        if (size > MAX_SNAPSHOTS_BYTES)
            return -EFBIG;
    }
    buf = calloc(1, size ? size : 1);
    if (!buf)
        return -ENOMEM;
    off = qcow2_alloc_clusters(bs, size);
    if (off < 0) {
        r = (int)off;
        off = 0;
        goto fail;
    }
    if ((r = sync_all(bs)) < 0)
        goto fail;
    /* Fresh clusters must hold no metadata; on a hostile image (refcounts
     * of zero under live metadata) they might: refuse, as qemu does, and
     * keep them allocated (a leak) rather than discard metadata. */
    if (size && (r = qcow2_overlap_check(bs, (uint64_t)off, size, false)) < 0) {
        off = 0;
        goto fail;
    }

    /* Bytes between entries are not part of any entry: keep what the file
     * holds there, as qemu (which writes field by field) does. */
    flen = blk_getlength(bs->file);
    if (flen > off && size) {
        r = blk_pread(bs->file, (uint64_t)off, min_u64(size, (uint64_t)flen - (uint64_t)off), buf);
        if (r < 0)
            goto fail;
    }
    pos = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        size_t idl = strlen(sn->id_str), nml = strlen(sn->name);
        uint32_t exs = (uint32_t)max_u64(KNOWN_EXTRA, sn->extra_size);
        uint8_t *p;

        pos = align_up_u64(pos, 8);
        p = buf + pos;
        put_be64(p, sn->l1_offset);
        put_be32(p + 8, sn->l1_size);
        put_be16(p + 12, (uint16_t)idl);
        put_be16(p + 14, (uint16_t)nml);
        put_be32(p + 16, sn->date_sec);
        put_be32(p + 20, sn->date_nsec);
        put_be64(p + 24, sn->vm_clock_nsec);
        /* A state too big for 32 bits reads as a disk-only snapshot to old
         * readers rather than a truncated one. */
        put_be32(p + 32, sn->vm_state_size <= UINT32_MAX ? (uint32_t)sn->vm_state_size : 0);
        put_be32(p + 36, exs);
        p += QCOW2_SNAPSHOT_HEADER_LEN;
        put_be64(p, sn->vm_state_size);
        put_be64(p + 8, sn_disk_size(bs, sn));
        put_be64(p + 16, sn->icount);
        p += KNOWN_EXTRA;
        if (sn->extra_size > KNOWN_EXTRA) {
            memcpy(p, sn->extra, sn->extra_size - KNOWN_EXTRA);
            p += sn->extra_size - KNOWN_EXTRA;
        }
        memcpy(p, sn->id_str, idl);
        memcpy(p + idl, sn->name, nml);
        pos += QCOW2_SNAPSHOT_HEADER_LEN + exs + idl + nml;
    }
    if (size && (r = blk_pwrite(bs->file, (uint64_t)off, size, buf, 0)) < 0)
        goto fail;
    if ((r = sync_all(bs)) < 0)
        goto fail;

    put_be32(hdr, s->nb_snapshots);
    put_be64(hdr + 4, (uint64_t)off);
    r = blk_pwrite(bs->file, QH_NB_SNAPSHOTS, sizeof(hdr), hdr, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        goto fail;
    free(buf);

    free_and_discard(bs, s->snapshots_offset, s->snapshots_size, QCOW2_DISCARD_SNAPSHOT);
    s->snapshots_offset = (uint64_t)off;
    s->snapshots_size = size;
    return 0;

fail:
    free(buf);
    if (off > 0)
        free_and_discard(bs, (uint64_t)off, size, QCOW2_DISCARD_ALWAYS);
    return r;
}

static int find_snapshot(const struct qcow2_state *s, const char *id, const char *name)
{
    for (uint32_t i = 0; i < s->nb_snapshots && (id || name); i++) {
        if ((!id || !strcmp(s->snapshots[i].id_str, id)) &&
            (!name || !strcmp(s->snapshots[i].name, name)))
            return (int)i;
    }
    return -1;
}

static int find_snapshot_by_id_or_name(const struct qcow2_state *s, const char *id_or_name)
{
    int i = find_snapshot(s, id_or_name, NULL);
    return i >= 0 ? i : find_snapshot(s, NULL, id_or_name);
}

static int qcow2_snapshot_list(struct bds *bs, struct blk_snapshot **list, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct blk_snapshot *l;
    (void)err;

    *list = NULL;
    if (qcow2_has_data_file(s))
        return -ENOTSUP;
    if (!s->nb_snapshots || !s->snapshots)
        return 0;
    l = calloc(s->nb_snapshots, sizeof(*l));
    if (!l)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        /* qemu's QEMUSnapshotInfo holds 127 / 255 characters */
        snprintf(l[i].id_str, sizeof(l[i].id_str), "%.127s", sn->id_str);
        snprintf(l[i].name, sizeof(l[i].name), "%.255s", sn->name);
        l[i].vm_state_size = sn->vm_state_size;
        l[i].date_sec = sn->date_sec;
        l[i].date_nsec = sn->date_nsec;
        l[i].vm_clock_nsec = sn->vm_clock_nsec;
        l[i].icount = sn->icount;
    }
    *list = l;
    return (int)s->nb_snapshots;
}

/* The new snapshot gets the highest numeric id + 1 (ids parsed like
 * strtoul, as qemu does). */
static void new_snapshot_id(const struct qcow2_state *s, char *buf, size_t len)
{
    unsigned long max = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long id = strtoul(s->snapshots[i].id_str, NULL, 10);
        if (id > max)
            max = id;
    }
    snprintf(buf, len, "%lu", max + 1);
}

static int qcow2_snapshot_create(struct bds *bs, struct blk_snapshot *info, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_snapshot sn, *list;
    int64_t l1_off;
    int r;

    (void)err;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
        return -EFBIG;
    if (qcow2_has_data_file(s))
        return -ENOTSUP;
    if (!s->writable)
        return -EACCES;

    memset(&sn, 0, sizeof(sn));
    new_snapshot_id(s, info->id_str, sizeof(info->id_str));
    sn.id_str = strdup(info->id_str);
    sn.name = strdup(info->name);
    if (!sn.id_str || !sn.name) {
        r = -ENOMEM;
        goto fail;
    }
    sn.disk_size = bs->total_size;
    sn.has_disk_size = true;
    sn.vm_state_size = info->vm_state_size;
    sn.date_sec = info->date_sec;
    sn.date_nsec = info->date_nsec;
    sn.vm_clock_nsec = info->vm_clock_nsec;
    sn.icount = info->icount;
    sn.has_icount = true;
    sn.extra_size = KNOWN_EXTRA;

    /* The snapshot's L1 table: a verbatim copy of the active one. */
    l1_off = qcow2_alloc_clusters(bs, (uint64_t)s->l1_size * 8);
    if (l1_off < 0) {
        r = (int)l1_off;
        goto fail;
    }
    sn.l1_offset = (uint64_t)l1_off;
    sn.l1_size = s->l1_size;
    /* As for the snapshot table: the new clusters may not hold metadata
     * (a hostile image's allocator may hand out even the header). */
    if ((r = qcow2_overlap_check(bs, sn.l1_offset, (uint64_t)s->l1_size * 8, false)) < 0 ||
        (r = write_l1_table(bs, sn.l1_offset, s->l1, s->l1_size)) < 0)
        goto fail;

    /* Everything the active table reaches gains the snapshot's reference
     * (and loses OFLAG_COPIED), stable on disk before the table entry.
     * The refcount blocks reach the disk before the active L1 table loses
     * its OFLAG_COPIED flags, so a crash in between leaves "refcount 2,
     * flag set" errors: on v3 images the dirty bit covers that window, as
     * in snapshot delete (the next read-write open repairs the image). */
    bool was_dirty = s->incompat & QCOW2_INCOMPAT_DIRTY;
    if ((r = sync_all(bs)) < 0 || (r = qcow2_mark_dirty(bs)) < 0)
        goto fail;
    if ((r = update_tree_refcounts(bs, s->l1_offset, s->l1_size, 1)) < 0)
        goto fail;
    if (!was_dirty && (r = qcow2_clear_dirty(bs)) < 0)
        goto fail;

    list = reallocarray(s->snapshots, (size_t)s->nb_snapshots + 1, sizeof(*list));
    if (!list) {
        r = -ENOMEM;
        goto fail;
    }
    s->snapshots = list;
    s->snapshots[s->nb_snapshots++] = sn;
    r = qcow2_write_snapshots(bs);
    if (r < 0) {
        s->nb_snapshots--;
        goto fail;
    }
    /* A VM state would now be dropped from the active tree; qemu-img never
     * saves one (vm_state_size is 0), so there is nothing to discard. */
    return 0;

fail:
    free(sn.id_str);
    free(sn.name);
    return r;
}

/* Driver messages for apply are reported on their own line before the
 * command's "Could not apply snapshot" line (qemu's error_report_err inside
 * the driver); the final line always reads "Failed to load snapshot: ...".
 * They travel as "<earlier lines>\n<final line>". */
static int apply_fail(struct err *err, int r, const struct err *pre)
{
    if (pre && pre->set)
        return err_set(err, -r, "%s\nFailed to load snapshot: %s", pre->msg, strerror(-r));
    return err_set(err, -r, "Failed to load snapshot: %s", strerror(-r));
}

static int qcow2_snapshot_apply(struct bds *bs, const char *id_or_name, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_snapshot *sn;
    uint64_t *sn_l1 = NULL;
    struct err e;
    int idx, r;

    err_init(&e);
    if (s->nb_bitmaps)
        return err_set(err, EBUSY, "Device has active dirty bitmaps");
    if (qcow2_has_data_file(s))
        return apply_fail(err, -ENOTSUP, NULL);
    idx = find_snapshot_by_id_or_name(s, id_or_name);
    if (idx < 0)
        return apply_fail(err, -ENOENT, NULL);
    sn = &s->snapshots[idx];
    if ((r = validate_sn_l1(bs, sn, &e)) < 0)
        return apply_fail(err, r, &e);
    if (!s->writable)
        return apply_fail(err, -EACCES, NULL);

    if (sn_disk_size(bs, sn) != bs->total_size) {
        r = qcow2_truncate(bs, sn_disk_size(bs, sn), true, BLK_PREALLOC_OFF, &e);
        if (r < 0)
            return apply_fail(err, r, &e);
        /* The table may have moved while resizing: find the entry again. */
        sn = &s->snapshots[idx];
    }

    /* The active L1 must hold the snapshot's whole table; a shorter one is
     * padded with zeros. */
    if ((r = qcow2_grow_l1(bs, sn->l1_size, true)) < 0)
        return apply_fail(err, r, NULL);
    if ((r = read_sn_l1(bs, sn, s->l1_size, &sn_l1)) < 0)
        return apply_fail(err, r, NULL);

    /* References of the snapshot's tree first, then the switch, then the
     * old tree's references are dropped (using the in-memory old table). */
    if ((r = update_tree_refcounts(bs, sn->l1_offset, sn->l1_size, 1)) < 0)
        goto fail;
    r = write_l1_table(bs, s->l1_offset, sn_l1, s->l1_size);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        goto fail;
    r = update_tree_refcounts(bs, s->l1_offset, s->l1_size, -1);
    memcpy(s->l1, sn_l1, (size_t)s->l1_size * 8);
    if (r < 0)
        goto fail;
    free(sn_l1);
    sn_l1 = NULL;
    /* Refresh OFLAG_COPIED now that the old tree let go. */
    if ((r = update_tree_refcounts(bs, s->l1_offset, s->l1_size, 0)) < 0)
        goto fail;
    return 0;

fail:
    free(sn_l1);
    return apply_fail(err, r, NULL);
}

static int qcow2_snapshot_remove(struct bds *bs, const char *id, const char *name,
                                 struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_snapshot sn;
    int idx, r;

    if (qcow2_has_data_file(s))
        return -ENOTSUP;
    idx = find_snapshot(s, id, name);
    if (idx < 0)
        return err_set(err, ENOENT, "Can't find the snapshot");
    sn = s->snapshots[idx];
    if ((r = validate_sn_l1(bs, &sn, err)) < 0)
        return r;
    if (!s->writable)
        return err_set_errno(err, EACCES, "Failed to remove snapshot from snapshot list");

    memmove(s->snapshots + idx, s->snapshots + idx + 1,
            (s->nb_snapshots - (uint32_t)idx - 1) * sizeof(sn));
    s->nb_snapshots--;
    r = qcow2_write_snapshots(bs);
    if (r < 0) {
        /* Put the entry back: the table on disk still holds it. */
        memmove(s->snapshots + idx + 1, s->snapshots + idx,
                (s->nb_snapshots - (uint32_t)idx) * sizeof(sn));
        s->snapshots[idx] = sn;
        s->nb_snapshots++;
        return err_set_errno(err, -r, "Failed to remove snapshot from snapshot list");
    }
    free(sn.id_str);
    free(sn.name);
    free(sn.extra);
    if (!s->nb_snapshots) {
        free(s->snapshots);
        s->snapshots = NULL;
    }

    /* From here on a failure only leaks clusters. The refcounts drop
     * before the active tables get OFLAG_COPIED back (the other order
     * would let a write reach a shared cluster), so a crash in between
     * leaves "refcount 1, flag missing" errors. On v3 images the dirty bit
     * covers that window: it reaches the disk (after everything before
     * it) ahead of the first decrease and goes only when the flags are
     * written, so the next read-write open, by qemu or by us, repairs the
     * image (qemu's qcow2_do_open checks dirty images). v2 has no such
     * bit; there `qemu-img check -r all` repairs it. */
    bool was_dirty = s->incompat & QCOW2_INCOMPAT_DIRTY;
    r = sync_all(bs);
    if (r == 0)
        r = qcow2_mark_dirty(bs);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to free the cluster and L1 table");
    r = update_tree_refcounts(bs, sn.l1_offset, sn.l1_size, -1);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to free the cluster and L1 table");
    free_and_discard(bs, sn.l1_offset, (uint64_t)sn.l1_size * 8, QCOW2_DISCARD_SNAPSHOT);
    r = update_tree_refcounts(bs, s->l1_offset, s->l1_size, 0);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to update snapshot status in disk");
    if (!was_dirty) {
        /* update_tree_refcounts flushed the tables; clear_dirty flushes
         * again before it clears the bit (the field alone: qemu writes no
         * header here, and a whole-cluster write would fill the header
         * cluster's holes). */
        r = qcow2_clear_dirty(bs);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to update snapshot status in disk");
    }
    return 0;
}

static int qcow2_snapshot_load_tmp(struct bds *bs, const char *id, const char *name,
                                   struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_snapshot *sn;
    uint64_t *l1;
    int idx, r;

    if (!id && !name)
        return err_set(err, EINVAL, "snapshot_id and name are both NULL");
    if (s->writable)
        return err_set(err, EINVAL, "Device is not readonly");
    idx = find_snapshot(s, id, name);
    if (idx < 0)
        return err_set(err, ENOENT, "Can't find snapshot");
    sn = &s->snapshots[idx];
    if ((r = validate_sn_l1(bs, sn, err)) < 0)
        return r;
    r = read_sn_l1(bs, sn, 0, &l1);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return err_set(err, -r, "Failed to read l1 table for snapshot");
    free(s->l1);
    s->l1 = l1;
    s->l1_size = sn->l1_size;
    s->l1_offset = sn->l1_offset;
    s->meta_prealloc_checked = false;
    return 0;
}

const struct blk_snapshot_ops qcow2_snapshot_ops = {
    .list = qcow2_snapshot_list,
    .create = qcow2_snapshot_create,
    .apply = qcow2_snapshot_apply,
    .remove = qcow2_snapshot_remove,
    .load_tmp = qcow2_snapshot_load_tmp,
};
