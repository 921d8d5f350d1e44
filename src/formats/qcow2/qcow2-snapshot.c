/* qcow2 internal snapshots: reading and listing the snapshot table
 * (qcow2.txt "Snapshots").
 *
 * Each entry: 40-byte fixed header, extra data (qemu understands the first
 * 24 bytes: large vm state size, disk size, icount), id string, name, padded
 * to 8 bytes. The table size is bounded by qemu's 64 MiB limit and every
 * read is bounds checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

#define MAX_SNAPSHOTS_BYTES (1024ULL * QCOW2_MAX_SNAPSHOTS)

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
    s->snapshots = calloc(s->nb_snapshots, sizeof(*s->snapshots));
    if (!s->snapshots)
        return err_set(err, ENOMEM, "Failed to read snapshot table: Cannot allocate memory");
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint8_t h[QCOW2_SNAPSHOT_HEADER_LEN], ex[24];
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
            r = err_set(err, EFBIG, "Too much extra metadata in snapshot table entry %u", i);
            goto fail;
        }
        exlen = min_u64(sizeof(ex), sn->extra_size);
        memset(ex, 0, sizeof(ex));
        if (exlen && (r = blk_pread(bs->file, off, exlen, ex)) < 0)
            goto io_fail;
        off += exlen;
        if (sn->extra_size >= 8)
            sn->vm_state_size = get_be64(ex);
        sn->has_disk_size = sn->extra_size >= 16;
        sn->disk_size = sn->has_disk_size ? get_be64(ex + 8) : bs->total_size;
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
            r = err_set(err, EFBIG, "Snapshot table is too big");
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

static int qcow2_snapshot_list(struct bds *bs, struct blk_snapshot **list, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct blk_snapshot *l;
    (void)err;

    *list = NULL;
    if (!s->nb_snapshots || !s->snapshots)
        return 0;
    l = calloc(s->nb_snapshots, sizeof(*l));
    if (!l)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        snprintf(l[i].id_str, sizeof(l[i].id_str), "%s", sn->id_str);
        snprintf(l[i].name, sizeof(l[i].name), "%s", sn->name);
        l[i].vm_state_size = sn->vm_state_size;
        l[i].date_sec = sn->date_sec;
        l[i].date_nsec = sn->date_nsec;
        l[i].vm_clock_nsec = sn->vm_clock_nsec;
        l[i].icount = sn->icount;
    }
    *list = l;
    return (int)s->nb_snapshots;
}

const struct blk_snapshot_ops qcow2_snapshot_ops = {
    .list = qcow2_snapshot_list,
};
