/* qcow2 option amendment (qemu-img amend -o ...): qcow2.txt "Header"
 * (version 2 and 3 fields, feature bits, header extensions), "Host cluster
 * management" (the refcount entry width, refcount_order) and "Cluster
 * mapping" (zero clusters, which version 2 does not know).
 *
 * The steps run in qemu 7.2's order so that errors, partial results and the
 * progress output are the same: the options are checked in the amend
 * table's order, then the upgrade, LUKS key slots, the refcount width, the
 * data file settings, a header write, the backing file check, lazy
 * refcounts, the resize, and the downgrade last.
 *
 * Crash safety: new refcount structures are complete on disk before the
 * header points to them and the old ones are freed only after the switch;
 * a zero cluster being expanded gets its refcount and its zeroed data
 * before the L2 entry that uses it is written. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

enum amend_op { OP_NONE, OP_UPGRADE, OP_CRYPT, OP_REFCOUNT, OP_DOWNGRADE };

/* Turns the progress of each step into progress of the whole amendment, the
 * way qemu's amend helper does (later steps' sizes are projected from the
 * steps seen so far). */
struct amend_progress {
    struct bds *bs;
    enum amend_op cur, last;
    int total_ops, ops_done;
    int64_t offset_done, last_work;
};

static void progress(struct amend_progress *p, int64_t off, int64_t work)
{
    int64_t cur_work, projected;

    if (p->cur != p->last) {
        if (p->last != OP_NONE) {
            p->offset_done += p->last_work;
            p->ops_done++;
        }
        p->last = p->cur;
    }
    if (p->total_ops <= 0 || p->ops_done >= p->total_ops)
        return;
    p->last_work = work;
    cur_work = p->offset_done + work;
    projected = cur_work * (p->total_ops - p->ops_done - 1) / (p->ops_done + 1);
    blk_amend_status(p->bs, p->offset_done + off, cur_work + projected);
}

/* What the options ask for; fields start as the image is. */
struct amend_req {
    uint32_t new_version;
    uint64_t new_size;
    const char *backing_file, *backing_fmt, *data_file;
    bool lazy, data_file_raw, crypt_update;
    int32_t refcount_bits;
};

static int strcmp0(const char *a, const char *b)
{
    if (!a || !b)
        return a == b ? 0 : (a ? 1 : -1);
    return strcmp(a, b);
}

/* The options in the order of qcow2_amend_opts, each checked as qemu does
 * when it meets it. Values were type-checked by the command already. */
static int parse_request(struct bds *bs, struct kvopts *opts, struct amend_req *q, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t n;
    int r;

    for (const struct opt_desc *d = qcow2_amend_opts; d->name; d++) {
        const char *v = kvopts_get(opts, d->name);

        if (!kvopts_has(opts, d->name) || !v)
            continue;
        if (!strcmp(d->name, "compat")) {
            if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
                q->new_version = 2;
            else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
                q->new_version = 3;
            else
                return err_set(err, EINVAL, "Unknown compatibility level %s", v);
        } else if (!strcmp(d->name, "size")) {
            if ((r = kvopts_parse_size(d->name, v, &q->new_size, err)) < 0)
                return r;
        } else if (!strcmp(d->name, "backing_file")) {
            q->backing_file = v;
        } else if (!strcmp(d->name, "backing_fmt")) {
            q->backing_fmt = v;
        } else if (!strncmp(d->name, "encrypt.", 8)) {
            if (!s->crypt_method)
                return err_set(err, EINVAL, "Can't amend encryption options - encryption not present");
            if (s->crypt_method != QCOW2_CRYPT_LUKS)
                return err_set(err, ENOTSUP, "Only LUKS encryption options can be amended");
            q->crypt_update = true;
        } else if (!strcmp(d->name, "lazy_refcounts")) {
            if ((r = kvopts_parse_bool(d->name, v, &q->lazy, err)) < 0)
                return r;
        } else if (!strcmp(d->name, "refcount_bits")) {
            if ((r = kvopts_parse_number(d->name, v, &n, err)) < 0)
                return r;
            /* qemu keeps the width in an int: only the low 32 bits count. */
            q->refcount_bits = (int32_t)(uint32_t)n;
            if (q->refcount_bits <= 0 || q->refcount_bits > 64 ||
                !is_pow2_u64((uint64_t)q->refcount_bits))
                return err_set(err, EINVAL,
                               "Refcount width must be a power of two and may not exceed 64 bits");
        } else if (!strcmp(d->name, "data_file")) {
            q->data_file = v;
            if (!qcow2_has_data_file(s))
                return err_set(err, EINVAL,
                               "data-file can only be set for images that use an external data file");
        } else if (!strcmp(d->name, "data_file_raw")) {
            bool raw;
            if ((r = kvopts_parse_bool(d->name, v, &raw, err)) < 0)
                return r;
            q->data_file_raw = raw;
            if (raw && !(s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
                return err_set(err, EINVAL, "data-file-raw cannot be set on existing images");
        }
    }
    return 0;
}

/* --- upgrade --- */

static int upgrade(struct bds *bs, struct amend_progress *p, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint32_t old = s->version;
    int r;

    progress(p, 0, 2);
    /* Version 3 wants each snapshot to record its disk size and 64-bit VM
     * state size (16 bytes of extra data); images written by qemu since 2020
     * always have them, older ones would need the table rewritten. */
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (s->snapshots[i].extra_size < 16)
            return err_set_errno(err, ENOTSUP, "Failed to update the snapshot table");
    }
    progress(p, 1, 2);
    s->version = 3;
    r = qcow2_update_header(bs);
    if (r < 0) {
        s->version = old;
        return err_set_errno(err, -r, "Failed to update the image header");
    }
    progress(p, 2, 2);
    return 0;
}

/* --- refcount width --- */

/* The refcount structures being built with the new width. */
struct rc_build {
    uint64_t *rt;               /* new reftable, host order */
    uint64_t rt_size;           /* entries */
    uint64_t rt_index;          /* entry of the block being filled */
    uint8_t *blk;               /* the block being filled (write walk only) */
    uint64_t blk_entries;       /* refcounts per new block */
    unsigned order;
    bool writing;               /* false: allocate blocks; true: write them */
    bool allocated;             /* a cluster was allocated during this walk */
};

/* A new block is complete: place it (allocation walk) or write it. */
static int finish_block(struct bds *bs, struct rc_build *b, bool empty, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if (!b->writing) {
        if (empty)
            return 0;
        if (b->rt_index >= b->rt_size) {
            uint64_t per = s->cluster_size / 8;
            uint64_t ns = (b->rt_index + 1 + per - 1) / per * per;
            uint64_t *nt;
            if (ns > QCOW2_MAX_REFTABLE_BYTES / 8)
                return err_set(err, ENOTSUP, "This operation would make the refcount table grow "
                               "beyond the maximum size supported by QEMU, aborting");
            nt = realloc(b->rt, ns * 8);
            if (!nt)
                return err_set(err, ENOMEM, "Failed to increase reftable buffer size");
            memset(nt + b->rt_size, 0, (ns - b->rt_size) * 8);
            b->rt = nt;
            b->rt_size = ns;
        }
        if (!b->rt[b->rt_index]) {
            int64_t off = qcow2_alloc_clusters(bs, s->cluster_size);
            if (off < 0)
                return err_set_errno(err, (int)-off, "Failed to allocate refblock");
            b->rt[b->rt_index] = (uint64_t)off;
            b->allocated = true;
        }
        return 0;
    }
    if (b->rt_index < b->rt_size && b->rt[b->rt_index]) {
        r = blk_pwrite(bs->file, b->rt[b->rt_index], s->cluster_size, b->blk, 0);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to write refblock");
        return 0;
    }
    /* The allocation walks placed every non-empty block. */
    if (!empty)
        return err_set(err, EIO, "Failed to write refblock");
    return 0;
}

static void zero_entries(uint8_t *blk, uint64_t from, uint64_t n, unsigned order)
{
    uint64_t bit = from << order, bits = n << order;

    if (bit % 8 == 0 && bits % 8 == 0) {
        memset(blk + bit / 8, 0, (size_t)(bits / 8));
        return;
    }
    for (uint64_t i = 0; i < n; i++)
        qcow2_refcount_set(blk, from + i, order, 0);
}

/* One pass over every refcount of the image (qemu's walk_over_reftable):
 * index/total place it in the progress of the whole width change. */
static int walk(struct bds *bs, struct rc_build *b, int index, int total,
                struct amend_progress *p, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t rb_size = 1ULL << s->rb_bits, new_i = 0;
    unsigned new_bits = 1u << b->order;
    bool empty = true;
    int r;

    b->rt_index = 0;
    for (uint64_t ti = 0; ti < s->reftable_size; ti++) {
        uint64_t rbo = s->reftable[ti] & QCOW2_REFT_OFFSET_MASK;
        uint8_t *blk = NULL;

        progress(p, (int64_t)((uint64_t)index * s->reftable_size + ti),
                 (int64_t)((uint64_t)total * s->reftable_size));
        if (!rbo) {
            /* No block: rb_size zero refcounts. */
            uint64_t left = rb_size;
            while (left) {
                uint64_t take;
                if (new_i >= b->blk_entries) {
                    if ((r = finish_block(bs, b, empty, err)) < 0)
                        return r;
                    b->rt_index++;
                    new_i = 0;
                    empty = true;
                }
                take = min_u64(left, b->blk_entries - new_i);
                if (b->writing)
                    zero_entries(b->blk, new_i, take, b->order);
                new_i += take;
                left -= take;
            }
            continue;
        }
        if (qcow2_off_in_cluster(s, rbo)) {
            qcow2_signal_corruption(bs, true, "Refblock offset %#" PRIx64 " unaligned (reftable index: %#"
                                    PRIx64 ")", rbo, ti);
            return err_set(err, EIO, "Image is corrupt (unaligned refblock offset)");
        }
        r = qcow2_cache_get(bs, &s->rb_cache, rbo, false, &blk);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to retrieve refblock");
        for (uint64_t bi = 0; bi < rb_size; bi++) {
            uint64_t ref;
            if (new_i >= b->blk_entries) {
                if ((r = finish_block(bs, b, empty, err)) < 0)
                    return r;
                b->rt_index++;
                new_i = 0;
                empty = true;
                /* An allocation may have changed or evicted the block. */
                r = qcow2_cache_get(bs, &s->rb_cache, rbo, false, &blk);
                if (r < 0)
                    return err_set_errno(err, -r, "Failed to retrieve refblock");
            }
            ref = qcow2_refcount_get(blk, bi, s->refcount_order);
            if (new_bits < 64 && (ref >> new_bits)) {
                uint64_t off = ((ti << s->rb_bits) + bi) << s->cluster_bits;
                return err_set(err, EINVAL, "Cannot decrease refcount entry width to %u bits: "
                               "Cluster at offset %#" PRIx64 " has a refcount of %" PRIu64,
                               new_bits, off, ref);
            }
            if (b->writing)
                qcow2_refcount_set(b->blk, new_i, b->order, ref);
            new_i++;
            empty = empty && ref == 0;
        }
    }
    if (new_i > 0) {
        if (b->writing)
            zero_entries(b->blk, new_i, b->blk_entries - new_i, b->order);
        if ((r = finish_block(bs, b, empty, err)) < 0)
            return r;
        b->rt_index++;
    }
    progress(p, (int64_t)((uint64_t)(index + 1) * s->reftable_size),
             (int64_t)((uint64_t)total * s->reftable_size));
    return 0;
}

static int change_refcount_order(struct bds *bs, unsigned order, struct amend_progress *p,
                                 struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct rc_build b;
    uint64_t *free_rt;
    uint64_t free_rt_off = 0, alloc_rt_size = 0;
    uint64_t old_off, old_size;
    unsigned old_order;
    uint8_t *raw = NULL;
    int walk_index = 0, r;

    memset(&b, 0, sizeof(b));
    b.order = order;
    b.blk_entries = 1ULL << (s->cluster_bits + 3 - order);
    b.blk = malloc(s->cluster_size);
    if (!b.blk)
        return err_set(err, ENOMEM, "Cannot allocate memory");

    /* Allocate the new blocks and table until a pass allocates nothing: the
     * allocations themselves change refcounts the new blocks must hold. */
    do {
        int total = walk_index + 2 > 3 ? walk_index + 2 : 3;
        b.allocated = false;
        b.writing = false;
        r = walk(bs, &b, walk_index++, total, p, err);
        if (r < 0)
            goto done;
        if (b.allocated) {
            int64_t off;
            if (free_rt_off)
                qcow2_free_clusters(bs, free_rt_off, alloc_rt_size * 8, QCOW2_DISCARD_NEVER);
            free_rt_off = 0;
            off = qcow2_alloc_clusters(bs, b.rt_size * 8);
            if (off < 0) {
                r = err_set_errno(err, (int)-off, "Failed to allocate the new reftable");
                goto done;
            }
            free_rt_off = (uint64_t)off;
            alloc_rt_size = b.rt_size;
        }
    } while (b.allocated);

    if (!b.rt_size) {
        /* No cluster has a reference (a hostile image whose refcount table
         * lies past the end of the file reads as all zeros): the new table
         * would be empty and the header would name none, an image nobody
         * can open. qemu-img 7.2 crashes here; refuse before changing
         * anything. */
        r = err_set_errno(err, EIO, "Failed to allocate the new reftable");
        goto done;
    }
    b.writing = true;
    r = walk(bs, &b, walk_index, walk_index + 1, p, err);
    if (r < 0)
        goto done;
    if (b.allocated) {
        r = err_set(err, EIO, "Failed to write refblock");
        goto done;
    }

    raw = calloc(b.rt_size, 8);
    if (!raw) {
        r = err_set(err, ENOMEM, "Cannot allocate memory");
        goto done;
    }
    for (uint64_t i = 0; i < b.rt_size; i++)
        put_be64(raw + 8 * i, b.rt[i]);
    r = blk_pwrite(bs->file, free_rt_off, b.rt_size * 8, raw, 0);
    if (r < 0) {
        err_set_errno(err, -r, "Failed to write the new reftable");
        goto done;
    }
    r = qcow2_cache_flush(bs, &s->rb_cache);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0) {
        err_set_errno(err, -r, "Failed to flush the refblock cache");
        goto done;
    }

    /* The switch: the header names the new table and width. */
    old_order = s->refcount_order;
    old_size = s->reftable_size;
    old_off = s->reftable_offset;
    s->refcount_order = order;
    s->reftable_size = b.rt_size;
    s->reftable_offset = free_rt_off;
    r = qcow2_update_header(bs);
    if (r < 0) {
        s->refcount_order = old_order;
        s->reftable_size = old_size;
        s->reftable_offset = old_off;
        err_set_errno(err, -r, "Failed to update the qcow2 header");
        goto done;
    }
    /* The cached blocks are in the old width. */
    qcow2_cache_drop_all(&s->rb_cache);
    free_rt = s->reftable;
    s->reftable = b.rt;
    s->reftable_loaded = s->reftable_size;
    s->rb_bits = s->cluster_bits + 3 - order;
    s->refcount_max = qcow2_refcount_max(order);
    b.rt = free_rt;
    b.rt_size = old_size;
    free_rt_off = old_off;
    r = 0;

done:
    /* On success the old structures, on failure the new ones. */
    if (b.rt) {
        for (uint64_t i = 0; i < b.rt_size; i++) {
            uint64_t off = b.rt[i] & QCOW2_REFT_OFFSET_MASK;
            if (off)
                qcow2_free_clusters(bs, off, s->cluster_size, QCOW2_DISCARD_OTHER);
        }
        if (free_rt_off)
            qcow2_free_clusters(bs, free_rt_off, b.rt_size * 8, QCOW2_DISCARD_OTHER);
    }
    free(b.rt);
    free(b.blk);
    free(raw);
    if (r == 0) {
        r = qcow2_meta_flush(bs);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to flush the refblock cache");
    }
    return r;
}

/* --- downgrade --- */

/* Turn the zero clusters reachable from one L1 table into data clusters (or
 * unallocated ones where nothing shows through). The active L1's tables go
 * through the L2 cache, a snapshot's are edited on disk. */
static int expand_l1(struct bds *bs, const uint64_t *l1, uint64_t l1_size, bool active,
                     int64_t *visited, int64_t total, struct amend_progress *p)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    uint8_t *buf = NULL, *t = NULL, *zeros;
    int r = 0;

    zeros = calloc(1, cs);
    if (!zeros)
        return -ENOMEM;
    if (!active) {
        buf = malloc(cs);
        if (!buf) {
            free(zeros);
            return -ENOMEM;
        }
    }
    for (uint64_t i = 0; i < l1_size; i++) {
        uint64_t l2off = l1[i] & QCOW2_L1E_OFFSET_MASK, l2ref;
        bool dirty = false;

        if (!l2off) {
            (*visited)++;
            progress(p, *visited, total);
            continue;
        }
        if (qcow2_off_in_cluster(s, l2off)) {
            qcow2_signal_corruption(bs, true, "L2 table offset %#" PRIx64 " unaligned (L1 index: %#x)",
                                    l2off, (unsigned)i);
            r = -EIO;
            goto out;
        }
        r = qcow2_get_refcount(bs, l2off >> s->cluster_bits, &l2ref);
        if (r < 0)
            goto out;
        if (active) {
            r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &t);
        } else {
            r = blk_pread(bs->file, l2off, cs, buf);
            t = buf;
        }
        if (r < 0)
            goto out;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2e_get(s, t, j);
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            enum qcow2_sc_type type = qcow2_classify(e, 0, 0, false, false);
            bool plain = type == QCOW2_SC_ZERO_PLAIN;

            if (!plain && type != QCOW2_SC_ZERO_ALLOC)
                continue;
            if (plain) {
                int64_t a;
                if (!bs->backing) {
                    /* Nothing below: unallocated reads as zero too. */
                    qcow2_l2e_set(s, t, j, 0);
                    if (active)
                        qcow2_cache_mark_dirty(&s->l2_cache, t);
                    dirty = true;
                    continue;
                }
                a = qcow2_alloc_clusters(bs, cs);
                if (a < 0) {
                    r = (int)a;
                    goto out;
                }
                off = (uint64_t)a;
                if (l2ref > 1) {
                    /* A shared table: the new cluster is as shared. */
                    r = qcow2_update_refcount(bs, off, cs, l2ref - 1, false, QCOW2_DISCARD_OTHER);
                    if (r < 0) {
                        qcow2_free_clusters(bs, off, cs, QCOW2_DISCARD_OTHER);
                        goto out;
                    }
                }
                if (active) {
                    r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &t);
                    if (r < 0)
                        goto out;
                }
            }
            if (qcow2_off_in_cluster(s, off)) {
                qcow2_signal_corruption(bs, true, "Cluster allocation offset %#" PRIx64
                                        " unaligned (L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                        off, l2off, (unsigned)j);
                r = -EIO;
            } else {
                /* The same overlap check (and corruption event) as guest
                 * data writes: zeroing metadata would destroy the image. */
                r = qcow2_pre_write_check(bs, off, cs);
            }
            if (r < 0) {
                if (plain)
                    qcow2_free_clusters(bs, off, cs, QCOW2_DISCARD_ALWAYS);
                goto out;
            }
            /* Allocated like qemu does (a zeroed range, also past the end
             * of the file, not a hole), else written out. */
            r = blk_pwrite_zeroes(s->data_file, off, cs, BLK_WRITE_NO_FALLBACK);
            if (r == -ENOTSUP)
                r = blk_pwrite(s->data_file, off, cs, zeros, 0);
            if (r < 0) {
                if (plain)
                    qcow2_free_clusters(bs, off, cs, QCOW2_DISCARD_ALWAYS);
                goto out;
            }
            qcow2_l2e_set(s, t, j, off | (l2ref == 1 ? QCOW2_OFLAG_COPIED : 0));
            if (active)
                qcow2_cache_mark_dirty(&s->l2_cache, t);
            dirty = true;
        }
        if (!active && dirty) {
            r = blk_pwrite(bs->file, l2off, cs, buf, 0);
            if (r < 0)
                goto out;
        }
        (*visited)++;
        progress(p, *visited, total);
    }
    r = 0;
out:
    free(zeros);
    free(buf);
    return r;
}

static int expand_zero_clusters(struct bds *bs, struct amend_progress *p)
{
    struct qcow2_state *s = qcow2_st(bs);
    int64_t total = s->l1_size, visited = 0;
    uint64_t *l1 = NULL;
    uint8_t *raw = NULL;
    int r;

    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        total += s->snapshots[i].l1_size;
    r = expand_l1(bs, s->l1, s->l1_size, true, &visited, total, p);
    if (r < 0)
        return r;
    /* Snapshot tables may point to tables in the cache: write it and forget
     * it before editing tables on disk. */
    r = qcow2_meta_flush(bs);
    if (r < 0)
        return r;
    qcow2_cache_drop_all(&s->l2_cache);

    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t bytes = (uint64_t)sn->l1_size * 8;
        int64_t flen = blk_getlength(bs->file);

        if (qcow2_off_in_cluster(s, sn->l1_offset) || bytes > QCOW2_MAX_L1_BYTES ||
            flen < 0 || sn->l1_offset > (uint64_t)flen || bytes > (uint64_t)flen - sn->l1_offset) {
            r = -EINVAL;
            goto out;
        }
        free(l1);
        free(raw);
        l1 = calloc(sn->l1_size ? sn->l1_size : 1, 8);
        raw = malloc(bytes ? bytes : 1);
        if (!l1 || !raw) {
            r = -ENOMEM;
            goto out;
        }
        if (bytes) {
            r = blk_pread(bs->file, sn->l1_offset, bytes, raw);
            if (r < 0)
                goto out;
        }
        for (uint32_t j = 0; j < sn->l1_size; j++)
            l1[j] = get_be64(raw + 8 * j);
        r = expand_l1(bs, l1, sn->l1_size, false, &visited, total, p);
        if (r < 0)
            goto out;
    }
    r = 0;
out:
    free(l1);
    free(raw);
    return r;
}

static int has_compressed_clusters(struct bds *bs)
{
    uint64_t off = 0, left = bs->total_size;

    while (left) {
        uint64_t n = min_u64(left, INT32_MAX), host, entry;
        enum qcow2_sc_type type;
        int r = qcow2_get_host_offset(bs, off, &n, &host, &type, &entry);
        if (r < 0)
            return r;
        if (type == QCOW2_SC_COMPRESSED)
            return 1;
        if (!n)
            return -EIO;
        off += n;
        left -= n;
    }
    return 0;
}

static int downgrade(struct bds *bs, struct amend_progress *p, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint32_t old = s->version;
    int r;

    if (s->refcount_order != 4)
        return err_set(err, ENOTSUP, "compat=0.10 requires refcount_bits=16");
    if (qcow2_has_data_file(s))
        return err_set(err, ENOTSUP, "Cannot downgrade an image with a data file");
    /* Version 2 readers would not know that these snapshots differ. */
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (s->snapshots[i].vm_state_size > UINT32_MAX ||
            s->snapshots[i].disk_size != bs->total_size)
            return err_set(err, ENOTSUP, "Internal snapshots prevent downgrade of image");
    }
    if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
        r = qcow2_mark_clean(bs);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to make the image clean");
    }
    if (s->incompat & ~QCOW2_INCOMPAT_COMPRESSION)
        return err_set(err, ENOTSUP, "Cannot downgrade an image with incompatible features "
                       "0x%" PRIx64 " set",
                       (uint64_t)(s->incompat & ~QCOW2_INCOMPAT_COMPRESSION));
    /* Compatible features may be dropped; lazy refcounts were settled by
     * making the image clean. */
    s->compat = 0;
    s->autoclear = 0;

    r = expand_zero_clusters(bs, p);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to turn zero into data clusters");
    if (s->incompat & QCOW2_INCOMPAT_COMPRESSION) {
        r = has_compressed_clusters(bs);
        if (r < 0)
            return err_set(err, EINVAL, "Failed to check block status");
        if (r)
            return err_set(err, ENOTSUP, "Cannot downgrade an image with zstd compression "
                           "type and existing compressed clusters");
        s->incompat &= ~QCOW2_INCOMPAT_COMPRESSION;
        s->compression_type = QCOW2_COMPRESS_ZLIB;
    }
    r = qcow2_meta_flush(bs);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to turn zero into data clusters");
    s->version = 2;
    r = qcow2_update_header(bs);
    if (r < 0) {
        s->version = old;
        return err_set_errno(err, -r, "Failed to update the image header");
    }
    return 0;
}

/* --- resize --- */

/* Largest image size qemu's block layer accepts (INT64_MAX rounded down to
 * its largest alignment, 1 GiB). */
#define AMEND_MAX_LENGTH ((uint64_t)INT64_MAX & ~(uint64_t)((1u << 30) - 1))

/* Resize as qemu's generic truncate does: its size checks, and, when a
 * backing file longer than the image would show through the new area, that
 * area zeroed before the new size is recorded. */
static int resize(struct bds *bs, uint64_t size, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t old = bs->total_size, zero_start;
    int64_t blen;
    int r;

    if (size > INT64_MAX)
        return err_set(err, EINVAL, "Image size cannot be negative");
    if (size > AMEND_MAX_LENGTH)
        return err_set(err, EIO, "offset(%" PRIu64 ") exceeds maximum(%" PRIu64 ")", size,
                       AMEND_MAX_LENGTH);
    if (size <= old || !bs->backing)
        return blk_truncate(bs, size, true, BLK_PREALLOC_OFF, err);
    blen = blk_getlength(bs->backing);
    if (blen < 0)
        return err_set_errno(err, (int)-blen, "Could not get backing file size");
    /* Let the resize itself refuse what it refuses, with its message. */
    if ((uint64_t)blen <= old || size % 512 || (s->nb_snapshots && s->version < 3) ||
        s->nb_bitmaps)
        return blk_truncate(bs, size, true, BLK_PREALLOC_OFF, err);

    r = qcow2_grow_l1(bs, qcow2_size_to_l1(s->cluster_bits, s->l2_bits, size), true);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to grow the L1 table");
    zero_start = align_up_u64(old, 1ULL << s->subcluster_bits);
    if (size > zero_start) {
        r = qcow2_zeroize(bs, zero_start, size - zero_start, false);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to zero out new clusters");
    }
    if (zero_start > old) {
        uint64_t len = min_u64(zero_start, size) - old;
        uint8_t *buf = calloc(1, (size_t)len);
        if (!buf)
            return err_set(err, ENOMEM, "Cannot allocate memory");
        r = qcow2_write_data(bs, old, len, buf);
        free(buf);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to zero out the new area");
    }
    return blk_truncate(bs, size, true, BLK_PREALLOC_OFF, err);
}

/* --- the operation --- */

int qcow2_amend(struct bds *bs, struct kvopts *opts, bool force, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct amend_progress p;
    struct amend_req q;
    uint32_t old_version = s->version;
    bool cur_lazy = s->use_lazy_refcounts;
    int32_t cur_bits = 1 << s->refcount_order;
    int r;

    memset(&q, 0, sizeof(q));
    q.new_version = old_version;
    q.lazy = cur_lazy;
    q.data_file_raw = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    q.refcount_bits = cur_bits;
    r = parse_request(bs, opts, &q, err);
    if (r < 0)
        return r;

    memset(&p, 0, sizeof(p));
    p.bs = bs;
    p.total_ops = (q.new_version != old_version) + (q.refcount_bits != cur_bits) + q.crypt_update;

    /* Upgrade first: other changes may need version 3. */
    if (q.new_version > old_version) {
        p.cur = OP_UPGRADE;
        if ((r = upgrade(bs, &p, err)) < 0)
            return r;
    }
    if (q.crypt_update) {
        p.cur = OP_CRYPT;
        if ((r = qcow2_crypt_amend(bs, opts, force, err)) < 0)
            return r;
    }
    if (q.refcount_bits != cur_bits) {
        unsigned order = 0;
        if (q.new_version < 3 && q.refcount_bits != 16)
            return err_set(err, EINVAL, "Refcount widths other than 16 bits require compatibility "
                           "level 1.1 or above (use compat=1.1 or greater)");
        while ((1 << order) < q.refcount_bits)
            order++;
        p.cur = OP_REFCOUNT;
        if ((r = change_refcount_order(bs, order, &p, err)) < 0)
            return r;
    }

    /* A raw data file excludes a backing file: clear it first if asked. */
    if (q.data_file_raw)
        s->autoclear |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    else
        s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (q.data_file) {
        char *n = q.data_file[0] ? strdup(q.data_file) : NULL;
        if (q.data_file[0] && !n)
            return err_set(err, ENOMEM, "Cannot allocate memory");
        free(s->image_data_file);
        s->image_data_file = n;
    }
    r = qcow2_update_header(bs);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to update the image header");

    if ((q.backing_file || q.backing_fmt) &&
        (strcmp0(q.backing_file, s->image_backing_file) ||
         strcmp0(q.backing_fmt, s->image_backing_format)))
        return err_set(err, EINVAL,
                       "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.");

    if (cur_lazy != q.lazy) {
        if (q.lazy) {
            if (q.new_version < 3)
                return err_set(err, EINVAL, "Lazy refcounts only supported with compatibility "
                               "level 1.1 and above (use compat=1.1 or greater)");
            s->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
            r = qcow2_update_header(bs);
            if (r < 0) {
                s->compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
                return err_set_errno(err, -r, "Failed to update the image header");
            }
            s->use_lazy_refcounts = true;
        } else {
            r = qcow2_mark_clean(bs);
            if (r < 0)
                return err_set_errno(err, -r, "Failed to make the image clean");
            s->compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
            r = qcow2_update_header(bs);
            if (r < 0) {
                s->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
                return err_set_errno(err, -r, "Failed to update the image header");
            }
            s->use_lazy_refcounts = false;
        }
    }

    if (q.new_size) {
        r = resize(bs, q.new_size, err);
        if (r < 0)
            return r;
    }

    /* Downgrade last, once nothing that needs version 3 is left. */
    if (q.new_version < old_version) {
        p.cur = OP_DOWNGRADE;
        if ((r = downgrade(bs, &p, err)) < 0)
            return r;
    }
    return 0;
}
