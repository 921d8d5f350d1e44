/* qcow2 refcounts: the two-level refcount table, cluster allocation and
 * freeing (qcow2.txt "Host cluster management").
 *
 * Allocation is first-fit from free_cluster_index, like qemu, so images we
 * write have the same layout as qemu's for the same sequence of requests.
 * A refcount block is placed in the first free cluster; when it has to
 * describe itself it does. When the table is full, new self-describing
 * refcount structures (blocks + table) are appended after the area the
 * table must cover (qcow2_refcount_area).
 *
 * Invariant: reftable[] mirrors the on-disk table; refcount blocks live in
 * rb_cache; refcount changes for newly used clusters are made before the
 * metadata referencing them is written (see qcow2-cache.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

/* Read entries [s->reftable_loaded, n) of the table into s->reftable, which
 * is allocated for the whole table at the first call; entries are read as
 * big-endian bytes into their own slots and converted in place (one buffer:
 * every page of it is a fresh page fault, see docs/performance.md). */
static int reftable_read(struct bds *bs, uint64_t n)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t from = s->reftable_loaded;
    int r;

    if (!s->reftable) {
        /* reftable_size was capped at open (QCOW2_MAX_REFTABLE_BYTES). */
        s->reftable = malloc(s->reftable_size ? (size_t)s->reftable_size * 8 : 8);
        if (!s->reftable)
            return -ENOMEM;
        s->reftable_loaded = from = 0;
    }
    if (n > s->reftable_size)
        n = s->reftable_size;
    if (n <= from)
        return 0;
    r = blk_pread(bs->file, s->reftable_offset + from * 8, (n - from) * 8, s->reftable + from);
    if (r < 0)
        return r;
    for (uint64_t i = from; i < n; i++)
        s->reftable[i] = get_be64((const uint8_t *)&s->reftable[i]);
    s->reftable_loaded = n;
    return 0;
}

int qcow2_refcount_init(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t n = s->reftable_size;
    int r;

    /* A read-only node reads the table lazily (qcow2_reftable_load): info
     * needs none of it, map and measure only the entries for the blocks
     * that describe the file's own clusters. A writable node may overlap-
     * check or allocate anywhere: it reads the whole table now, like qemu. */
    if (!s->writable) {
        int64_t flen = blk_getlength(bs->file);
        if (flen < 0)
            return err_set_errno(err, (int)-flen, "Could not initialize refcount handling");
        n = div_round_up_u64(qcow2_size_to_clusters(s, (uint64_t)flen), 1ULL << s->rb_bits);
    }
    r = reftable_read(bs, n);
    if (r < 0)
        return err_set_errno(err, -r, "Could not initialize refcount handling");
    return 0;
}

int qcow2_reftable_load(struct bds *bs, uint64_t n)
{
    struct qcow2_state *s = qcow2_st(bs);

    if (s->reftable && n <= s->reftable_loaded)
        return 0;
    return reftable_read(bs, n);
}

static int load_refblock(struct bds *bs, uint64_t rt_index, uint8_t **blk)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t off = s->reftable[rt_index] & QCOW2_REFT_OFFSET_MASK;

    if (qcow2_off_in_cluster(s, off)) {
        qcow2_signal_corruption(bs, true, "Refblock offset %#" PRIx64 " unaligned (reftable index: %#"
                                PRIx64 ")", off, rt_index);
        return -EIO;
    }
    return qcow2_cache_get(bs, &s->rb_cache, off, false, blk);
}

int qcow2_get_refblock(struct bds *bs, uint64_t cluster, uint8_t **blk)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t idx = cluster >> s->rb_bits;
    int r;

    *blk = NULL;
    if (idx >= s->reftable_size)
        return 0;
    if (idx >= s->reftable_loaded && (r = qcow2_reftable_load(bs, s->reftable_size)) < 0)
        return r;
    if (!(s->reftable[idx] & QCOW2_REFT_OFFSET_MASK))
        return 0;
    return load_refblock(bs, idx, blk);
}

int qcow2_get_refcount(struct bds *bs, uint64_t cluster, uint64_t *ref)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *blk;
    int r = qcow2_get_refblock(bs, cluster, &blk);

    if (r < 0)
        return r;
    *ref = blk ? qcow2_refcount_get(blk, cluster & ((1ULL << s->rb_bits) - 1), s->refcount_order) : 0;
    return 0;
}

int qcow2_scan_refblock(struct bds *bs, uint64_t rb_off, uint64_t from, uint64_t to,
                        qcow2_rb_scan_fn fn, void *opaque)
{
    struct qcow2_state *s = qcow2_st(bs);
    unsigned order = s->refcount_order;
    uint64_t b0 = (from << order) >> 3, b1 = ((to << order) + 7) >> 3;
    uint8_t *blk = qcow2_cache_lookup(&s->rb_cache, rb_off);
    uint8_t buf[4096];
    int r;

    if (from >= to)
        return 0;
    if (blk)
        return fn(opaque, blk + b0, (b0 << 3) >> order, ((b1 - b0) << 3) >> order) ? 0 : 1;
    for (uint64_t b = b0, len; b < b1; b += len) {
        len = min_u64(sizeof(buf), b1 - b);
        r = blk_pread(bs->file, rb_off + b, len, buf);
        if (r < 0)
            return r;
        if (!fn(opaque, buf, (b << 3) >> order, (len << 3) >> order))
            return 1;
    }
    return 0;
}

struct count_nz {
    unsigned order;
    uint64_t from, to;          /* entries of the block to count */
    uint64_t n;
};

/* Nonzero refcounts among the piece's entries that fall in [from, to). */
static bool count_nonzero(void *opaque, const uint8_t *p, uint64_t pos, uint64_t n)
{
    struct count_nz *c = opaque;
    uint64_t i = c->from > pos ? c->from - pos : 0;
    uint64_t end = min_u64(n, c->to - pos);

    if (c->order == 4) {
        /* the default width: a loop the compiler vectorizes */
        for (; i < end; i++)
            c->n += (p[2 * i] | p[2 * i + 1]) != 0;
        return true;
    }
    for (; i < end; i++)
        c->n += qcow2_refcount_get(p, i, c->order) != 0;
    return true;
}

int qcow2_count_referenced(struct bds *bs, uint64_t start, uint64_t end, uint64_t limit,
                           uint64_t *count)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t rb_mask = (1ULL << s->rb_bits) - 1;
    uint8_t *blk;
    int r;

    *count = 0;
    for (uint64_t c = start; c < end && *count < limit;) {
        uint64_t idx = c >> s->rb_bits;
        uint64_t stop = min_u64(end, (idx + 1) << s->rb_bits);

        if (idx >= s->reftable_size)
            break;                  /* no refcounts past the table */
        if (idx >= s->reftable_loaded && (r = qcow2_reftable_load(bs, s->reftable_size)) < 0)
            return r;
        if (s->reftable[idx] & QCOW2_REFT_OFFSET_MASK) {
            uint64_t rb_off = s->reftable[idx] & QCOW2_REFT_OFFSET_MASK;
            struct count_nz cnt = { s->refcount_order, c & rb_mask, ((stop - 1) & rb_mask) + 1, 0 };

            if (qcow2_off_in_cluster(s, rb_off))
                return load_refblock(bs, idx, &blk);    /* the corruption event */
            r = qcow2_scan_refblock(bs, rb_off, cnt.from, cnt.to, count_nonzero, &cnt);
            if (r < 0)
                return r;
            *count += cnt.n;
        }
        c = stop;
    }
    return 0;
}

/* Find size bytes worth of free clusters from free_cluster_index on, without
 * touching refcounts. */
static int64_t alloc_noref(struct bds *bs, uint64_t size, uint64_t max)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t n = qcow2_size_to_clusters(s, size);
    uint64_t ref;
    int r;

    /* A cluster queued for discard must be punched before it is reused. */
    if (s->cache_discards)
        qcow2_process_discards(bs, 0);
retry:
    for (uint64_t i = 0; i < n; i++) {
        uint64_t c = s->free_cluster_index++;
        if ((c << s->cluster_bits) >> s->cluster_bits != c)
            return -EFBIG;
        r = qcow2_get_refcount(bs, c, &ref);
        if (r < 0)
            return r;
        if (ref != 0)
            goto retry;
    }
    if (s->free_cluster_index > 0 && s->free_cluster_index - 1 > (max >> s->cluster_bits))
        return -EFBIG;
    return (int64_t)((s->free_cluster_index - n) << s->cluster_bits);
}

static int update_refcount(struct bds *bs, uint64_t offset, uint64_t len, uint64_t addend,
                           bool decrease, enum qcow2_discard_type type);

/* Make sure the refcount block for cluster exists; returns -EAGAIN when
 * something was allocated so the caller's free-space search must restart. */
static int alloc_refblock(struct bds *bs, uint64_t cluster, uint8_t **blk)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t idx = cluster >> s->rb_bits;
    uint64_t rb_mask = (1ULL << s->rb_bits) - 1;
    int64_t nb;
    int r;

    if (idx < s->reftable_size && (s->reftable[idx] & QCOW2_REFT_OFFSET_MASK))
        return load_refblock(bs, idx, blk);

    *blk = NULL;
    r = qcow2_cache_flush(bs, &s->l2_cache);
    if (r < 0)
        return r;
    nb = alloc_noref(bs, s->cluster_size, INT64_MAX);
    if (nb < 0)
        return (int)nb;
    if (nb == 0) {
        qcow2_signal_corruption(bs, true, "Preventing invalid allocation of refcount block at offset 0");
        return -EIO;
    }
    if (((uint64_t)nb >> s->cluster_bits) >> s->rb_bits == idx) {
        /* The new block describes itself. */
        r = qcow2_cache_get(bs, &s->rb_cache, (uint64_t)nb, true, blk);
        if (r < 0)
            return r;
        qcow2_refcount_set(*blk, ((uint64_t)nb >> s->cluster_bits) & rb_mask, s->refcount_order, 1);
    } else {
        r = update_refcount(bs, (uint64_t)nb, s->cluster_size, 1, false, QCOW2_DISCARD_NEVER);
        if (r < 0)
            return r;
        r = qcow2_cache_flush(bs, &s->rb_cache);
        if (r < 0)
            return r;
        r = qcow2_cache_get(bs, &s->rb_cache, (uint64_t)nb, true, blk);
        if (r < 0)
            return r;
    }
    qcow2_cache_mark_dirty(&s->rb_cache, *blk);
    r = qcow2_cache_flush(bs, &s->rb_cache);
    if (r < 0)
        return r;

    if (idx < s->reftable_size) {
        uint8_t be[8];
        put_be64(be, (uint64_t)nb);
        r = blk_pwrite(bs->file, s->reftable_offset + idx * 8, 8, be, 0);
        if (r < 0)
            return r;
        s->reftable[idx] = (uint64_t)nb;
        return -EAGAIN;
    }

    /* The table is full: build new self-describing structures past
     * everything the table has to cover so far. */
    uint64_t used = max_u64(cluster + 1, ((uint64_t)nb >> s->cluster_bits) + 1);
    uint64_t blocks_used = div_round_up_u64(used, 1ULL << s->rb_bits);
    uint64_t meta_offset;
    if (ckd_mul(&meta_offset, blocks_used << s->rb_bits, s->cluster_size))
        return -EFBIG;
    int64_t a = qcow2_refcount_area(bs, meta_offset, 0, false, idx, (uint64_t)nb);
    if (a < 0)
        return (int)a;
    return -EAGAIN;
}

/* Queue the freed cluster at offset for a discard on the file. Runs are
 * merged when they touch the last one queued; qcow2_process_discards sorts
 * and merges the rest, so a big free costs one hole punch per contiguous
 * host range, as in qemu. */
static void queue_discard(struct bds *bs, uint64_t offset, uint64_t len)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_discard *d = s->discards;

    if (s->n_discards) {
        struct qcow2_discard *last = &d[s->n_discards - 1];
        if (last->offset + last->len == offset) {
            last->len += len;
            return;
        }
        if (offset + len == last->offset) {
            last->offset = offset;
            last->len += len;
            return;
        }
    }
    if (s->n_discards == s->cap_discards) {
        size_t nc = s->cap_discards ? s->cap_discards * 2 : 16;
        d = reallocarray(s->discards, nc, sizeof(*d));
        if (!d)
            return;             /* discards are advisory */
        s->discards = d;
        s->cap_discards = nc;
    }
    s->discards[s->n_discards++] = (struct qcow2_discard){ offset, len };
}

static int cmp_discard(const void *a, const void *b)
{
    const struct qcow2_discard *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void qcow2_process_discards(struct bds *bs, int ret)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_discard *d = s->discards;
    size_t n = s->n_discards;

    /* Empty the queue first: a discard must never run twice. */
    s->discards = NULL;
    s->n_discards = s->cap_discards = 0;
    if (ret >= 0 && n) {
        qsort(d, n, sizeof(*d), cmp_discard);
        for (size_t i = 0; i < n;) {
            uint64_t off = d[i].offset, end = off + d[i].len;
            for (i++; i < n && d[i].offset <= end; i++)
                end = max_u64(end, d[i].offset + d[i].len);
            /* Optional, like qemu: a failure changes nothing. */
            (void)blk_discard(bs->file, off, end - off);
        }
    }
    free(d);
}

static int update_refcount(struct bds *bs, uint64_t offset, uint64_t len, uint64_t addend,
                           bool decrease, enum qcow2_discard_type type)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t start, last, rb_mask = (1ULL << s->rb_bits) - 1;
    uint64_t old_idx = UINT64_MAX;
    uint8_t *blk = NULL;
    int r;

    if (len == 0)
        return 0;
    start = offset & ~(s->cluster_size - 1);
    last = (offset + len - 1) & ~(s->cluster_size - 1);
    for (uint64_t co = start; co <= last; co += s->cluster_size) {
        uint64_t ci = co >> s->cluster_bits;
        uint64_t ti = ci >> s->rb_bits;
        uint64_t ref;

        if (ti != old_idx || !blk) {
            r = alloc_refblock(bs, ci, &blk);
            if (r == -EAGAIN && s->free_cluster_index > (start >> s->cluster_bits))
                s->free_cluster_index = start >> s->cluster_bits;
            if (r < 0) {
                /* Undo what was done so far (best effort). */
                if (co > start)
                    update_refcount(bs, start, co - start, addend, !decrease, QCOW2_DISCARD_NEVER);
                goto out;
            }
        }
        old_idx = ti;
        ref = qcow2_refcount_get(blk, ci & rb_mask, s->refcount_order);
        if (decrease ? ref < addend : (ref + addend < ref || ref + addend > s->refcount_max)) {
            if (co > start)
                update_refcount(bs, start, co - start, addend, !decrease, QCOW2_DISCARD_NEVER);
            r = -EINVAL;
            goto out;
        }
        ref = decrease ? ref - addend : ref + addend;
        if (ref == 0 && ci < s->free_cluster_index)
            s->free_cluster_index = ci;
        qcow2_refcount_set(blk, ci & rb_mask, s->refcount_order, ref);
        qcow2_cache_mark_dirty(&s->rb_cache, blk);
        if (ref == 0) {
            /* Compressed data must not be appended to a cluster that was
             * freed (it may be reused for anything). */
            if (s->free_byte_offset && (s->free_byte_offset >> s->cluster_bits) == ci)
                s->free_byte_offset = 0;
            /* A freed metadata cluster must not linger in a cache. */
            uint64_t rbo = s->reftable[ti] & QCOW2_REFT_OFFSET_MASK;
            if (rbo == co) {
                blk = NULL;
            }
            qcow2_cache_drop(&s->rb_cache, co);
            qcow2_cache_drop(&s->l2_cache, co);
            if (s->discard_pass[type])
                queue_discard(bs, co, s->cluster_size);
        }
    }
    r = 0;
out:
    if (!s->cache_discards)
        qcow2_process_discards(bs, r == -EAGAIN ? 0 : r);
    return r;
}

int qcow2_update_refcount(struct bds *bs, uint64_t offset, uint64_t len, uint64_t addend,
                          bool decrease, enum qcow2_discard_type type)
{
    return update_refcount(bs, offset, len, addend, decrease, type);
}

int64_t qcow2_alloc_clusters(struct bds *bs, uint64_t size)
{
    int64_t off;
    int r;
    do {
        off = alloc_noref(bs, size, QCOW2_MAX_CLUSTER_OFFSET);
        if (off < 0)
            return off;
        r = update_refcount(bs, (uint64_t)off, size, 1, false, QCOW2_DISCARD_NEVER);
    } while (r == -EAGAIN);
    return r < 0 ? r : off;
}

int64_t qcow2_alloc_clusters_at(struct bds *bs, uint64_t offset, uint64_t n)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t i, ref;
    int r;

    if (n == 0)
        return 0;
    do {
        uint64_t ci = offset >> s->cluster_bits;
        for (i = 0; i < n; i++) {
            r = qcow2_get_refcount(bs, ci + i, &ref);
            if (r < 0)
                return r;
            if (ref)
                break;
        }
        r = update_refcount(bs, offset, i << s->cluster_bits, 1, false, QCOW2_DISCARD_NEVER);
    } while (r == -EAGAIN);
    return r < 0 ? r : (int64_t)i;
}

/* Byte-granular allocation for compressed clusters: continue in the cluster
 * last used for compressed data while it has room. */
int64_t qcow2_alloc_bytes(struct bds *bs, uint64_t size)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t off = s->free_byte_offset, ref, free_in;
    int r;

    if (off) {
        r = qcow2_get_refcount(bs, off >> s->cluster_bits, &ref);
        if (r < 0)
            return r;
        if (ref == s->refcount_max)
            off = 0;
    }
    free_in = s->cluster_size - qcow2_off_in_cluster(s, off);
    do {
        if (!off || free_in < size) {
            int64_t nc = alloc_noref(bs, s->cluster_size,
                                     min_u64(qcow2_coffset_mask(s->cluster_bits), QCOW2_MAX_CLUSTER_OFFSET));
            if (nc < 0)
                return nc;
            if (nc == 0) {
                qcow2_signal_corruption(bs, true, "Preventing invalid allocation of compressed cluster at offset 0");
                return -EIO;
            }
            if (!off || align_up_u64(off, s->cluster_size) != (uint64_t)nc) {
                off = (uint64_t)nc;
                free_in = s->cluster_size;
            } else {
                free_in += s->cluster_size;
            }
        }
        r = update_refcount(bs, off, size, 1, false, QCOW2_DISCARD_NEVER);
        if (r < 0 && r != -EAGAIN)
            return r;
        if (r == -EAGAIN)
            off = 0;
    } while (r == -EAGAIN);
    s->free_byte_offset = off + size;
    if (!qcow2_off_in_cluster(s, s->free_byte_offset))
        s->free_byte_offset = 0;
    return (int64_t)off;
}

void qcow2_free_clusters(struct bds *bs, uint64_t offset, uint64_t size,
                         enum qcow2_discard_type type)
{
    /* A failure leaks clusters; check -r leaks recovers them. */
    (void)update_refcount(bs, offset, size, 1, true, type);
}

void qcow2_free_any_cluster(struct bds *bs, uint64_t entry, enum qcow2_discard_type type)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t host, len;

    if (qcow2_has_data_file(s)) {
        /* No refcounts for guest data there: the data file gets the
         * discard directly (a raw data file keeps its offsets). */
        host = entry & QCOW2_L2E_OFFSET_MASK;
        if (s->discard_pass[type] && host && !(entry & QCOW2_OFLAG_COMPRESSED) &&
            !qcow2_off_in_cluster(s, host) && !s->data_file->read_only)
            (void)blk_discard(s->data_file, host, s->cluster_size);
        return;
    }
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        qcow2_compressed_decode(entry, s->cluster_bits, &host, &len);
        qcow2_free_clusters(bs, host, len, type);
        return;
    }
    host = entry & QCOW2_L2E_OFFSET_MASK;
    if (!host)
        return;
    if (qcow2_off_in_cluster(s, host)) {
        qcow2_signal_corruption(bs, false, "Cannot free unaligned cluster %#" PRIx64, host);
        return;
    }
    qcow2_free_clusters(bs, host, s->cluster_size, type);
}

uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      unsigned refcount_order, bool generous,
                                      uint64_t *refblock_count)
{
    uint64_t per_table = cluster_size / 8;
    uint64_t per_block = cluster_size * 8 / (1u << refcount_order);
    uint64_t table = 0, blocks = 0, last, n = 0;

    /* Find the fixed point where the refcount metadata covers itself. */
    do {
        last = n;
        blocks = div_round_up_u64(clusters + table + blocks, per_block);
        table = div_round_up_u64(blocks, per_table);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += div_round_up_u64(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    if (refblock_count)
        *refblock_count = blocks;
    return (blocks + table) * cluster_size;
}

int64_t qcow2_refcount_area(struct bds *bs, uint64_t start, uint64_t additional, bool exact,
                            uint64_t new_rb_index, uint64_t new_rb_offset)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t total_blocks, table_size, table_clusters, area_index, extra = 0;
    uint64_t table_offset, end_offset, block_offset, rb_size = 1ULL << s->rb_bits;
    uint64_t *nt = NULL;
    uint8_t *raw = NULL;
    int r;

    qcow2_refcount_metadata_size(start / s->cluster_size + additional, s->cluster_size,
                                 s->refcount_order, !exact, &total_blocks);
    if (total_blocks > QCOW2_MAX_REFTABLE_BYTES)
        return -EFBIG;
    area_index = (start / s->cluster_size) >> s->rb_bits;
    table_size = exact ? total_blocks : total_blocks + div_round_up_u64(total_blocks, 2);
    table_size = align_up_u64(table_size, s->cluster_size / 8);
    table_clusters = table_size * 8 / s->cluster_size;
    if (table_size > QCOW2_MAX_REFTABLE_BYTES)
        return -EFBIG;
    nt = calloc(table_size, 8);
    if (!nt)
        return -ENOMEM;
    if (s->reftable)        /* none: opened for check without a table */
        memcpy(nt, s->reftable, min_u64(table_size, s->reftable_size) * 8);
    if (new_rb_offset && new_rb_index < table_size)
        nt[new_rb_index] = new_rb_offset;

    for (uint64_t i = area_index; i < total_blocks; i++)
        if (!nt[i])
            extra++;
    table_offset = start + extra * s->cluster_size;
    end_offset = table_offset + table_clusters * s->cluster_size;

    block_offset = start;
    for (uint64_t i = area_index; i < total_blocks; i++) {
        uint8_t *blk;
        uint64_t first;

        if (nt[i]) {
            r = qcow2_cache_get(bs, &s->rb_cache, nt[i] & QCOW2_REFT_OFFSET_MASK, false, &blk);
        } else {
            r = qcow2_cache_get(bs, &s->rb_cache, block_offset, true, &blk);
            if (r == 0) {
                qcow2_cache_mark_dirty(&s->rb_cache, blk);
                nt[i] = block_offset;
                block_offset += s->cluster_size;
            }
        }
        if (r < 0)
            goto fail;
        first = i * rb_size * s->cluster_size;
        if (first < end_offset) {
            uint64_t j = first < start ? (start - first) / s->cluster_size : 0;
            uint64_t end_j = min_u64((end_offset - first) / s->cluster_size, rb_size);
            for (; j < end_j; j++)
                qcow2_refcount_set(blk, j, s->refcount_order, 1);
            qcow2_cache_mark_dirty(&s->rb_cache, blk);
        }
        /* Keep the block we just filled from being evicted unwritten. */
        r = qcow2_cache_flush(bs, &s->rb_cache);
        if (r < 0)
            goto fail;
    }

    raw = calloc(table_size, 8);
    if (!raw) {
        r = -ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < table_size; i++)
        put_be64(raw + 8 * i, nt[i]);
    r = blk_pwrite(bs->file, table_offset, table_size * 8, raw, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        goto fail;
    {
        uint8_t hdr[12];
        put_be64(hdr, table_offset);
        put_be32(hdr + 8, (uint32_t)table_clusters);
        r = blk_pwrite(bs->file, QH_REFTABLE_OFFSET, 12, hdr, 0);
        if (r == 0)
            r = blk_flush(bs->file);
        if (r < 0)
            goto fail;
    }
    free(raw);
    uint64_t old_off = s->reftable_offset, old_size = s->reftable_size;
    free(s->reftable);
    s->reftable = nt;
    s->reftable_size = s->reftable_loaded = table_size;
    s->reftable_offset = table_offset;
    qcow2_free_clusters(bs, old_off, old_size * 8, QCOW2_DISCARD_OTHER);
    return (int64_t)end_offset;

fail:
    free(raw);
    free(nt);
    return r;
}

int64_t qcow2_last_cluster(struct bds *bs, uint64_t file_size)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t n = qcow2_size_to_clusters(s, file_size);
    for (uint64_t i = n; i-- > 0;) {
        uint64_t ref;
        int r = qcow2_get_refcount(bs, i, &ref);
        if (r < 0)
            return r;
        if (ref)
            return (int64_t)i;
    }
    qcow2_signal_corruption(bs, true, "There are no references in the refcount table.");
    return -EIO;
}

/* qemu's metadata overlap check with its default ("cached") set: the
 * header, the active and inactive L1 tables, the active L2 tables, the
 * refcount table and blocks, the snapshot table and the bitmap directory,
 * in qemu's order, on the write rounded out to whole clusters. Returns the
 * name qemu gives the metadata that [off, off+len) meets, or NULL. */
const char *qcow2_metadata_overlap(struct bds *bs, uint64_t off, uint64_t len, bool skip_active_l2)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    uint64_t a, alen;

    if (!len)
        return NULL;
    a = off & ~(cs - 1);
    alen = align_up_u64(off - a + len, cs);
#define MEETS(o, l) ((l) != 0 && a < (o) + (l) && (o) < a + alen)
    if (a < cs)
        return "qcow2_header";
    if (s->l1_size && MEETS(s->l1_offset, (uint64_t)s->l1_size * 8))
        return "active L1 table";
    if (s->reftable_size && MEETS(s->reftable_offset, s->reftable_size * 8))
        return "refcount table";
    if (s->nb_snapshots && MEETS(s->snapshots_offset, s->snapshots_size))
        return "snapshot table";
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++)
        if (MEETS(s->snapshots[i].l1_offset, (uint64_t)s->snapshots[i].l1_size * 8))
            return "inactive L1 table";
    for (uint32_t i = 0; !skip_active_l2 && s->l1 && i < s->l1_size; i++) {
        uint64_t o = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (o && MEETS(o, cs))
            return "active L2 table";
    }
    for (uint64_t i = 0; s->reftable && i < s->reftable_loaded; i++) {
        uint64_t o = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (o && MEETS(o, cs))
            return "refcount block";
    }
    if ((s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) && MEETS(s->bitmap_dir_offset, s->bitmap_dir_size))
        return "bitmap directory";
#undef MEETS
    return NULL;
}

int qcow2_overlap_check(struct bds *bs, uint64_t off, uint64_t len, bool skip_active_l2)
{
    const char *what = qcow2_metadata_overlap(bs, off, len, skip_active_l2);
    if (!what)
        return 0;
    qcow2_signal_corruption(bs, true, "Preventing invalid write on metadata (overlaps with %s)", what);
    return -EIO;
}

int qcow2_pre_write_check(struct bds *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_st(bs);
    const char *what;

    if (qcow2_has_data_file(s))
        return 0;
    what = qcow2_metadata_overlap(bs, off, len, false);
    if (!what)
        return 0;
    qcow2_signal_corruption(bs, true, "Preventing invalid write on metadata (overlaps with %s)", what);
    return -EIO;
}
