/* qcow2 cluster mapping: L1/L2 lookup, L2 allocation, data cluster
 * allocation with copy-on-write, zero clusters and discard (qcow2.txt
 * "Cluster mapping", "Extended L2 Entries").
 *
 * Write ordering (crash safety): guest data is written before the L2 entry
 * mapping it (the cache writes L2 tables only after a file flush when data
 * was written); refcount increases before L2 entries (cache dependency);
 * a new L2 table is on disk before the L1 entry pointing to it; when an
 * entry drops a reference, the L2 table is written before the refcount
 * decrease. L2 tables are allocated before the data clusters they map, as
 * qemu does, so the host layout matches qemu's for the same writes.
 *
 * Extended L2: a write fills owned clusters in place and allocates only
 * where needed; the copy-on-write extent follows qemu's calculate_l2_meta
 * (only the subclusters a write partly covers are padded from the old guest
 * view), and the written subclusters get their allocation bit set and zero
 * bit cleared. Zero writes of whole subclusters set zero bits. Guest data
 * never goes to host ranges that hold metadata (qemu's overlap check). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

/* Most clusters one allocation step handles (bounds the entry arrays). */
#define MAX_RUN 512u

int qcow2_get_host_offset(struct bds *bs, uint64_t off, uint64_t *len, uint64_t *host,
                          enum qcow2_sc_type *type, uint64_t *entry_out)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t l1i = qcow2_l1_index(s, off);
    uint64_t l2i = qcow2_l2_index(s, off);
    uint64_t in_cl = qcow2_off_in_cluster(s, off);
    uint64_t avail = ((s->l2_entries - l2i) << s->cluster_bits) - in_cl;
    uint64_t want = min_u64(*len, avail);
    uint64_t l2off, entry, bitmap, expect = 0;
    unsigned scn = s->extl2 ? QCOW2_SUBCLUSTERS : 1;
    unsigned sc = s->extl2 ? (unsigned)(in_cl >> s->subcluster_bits) : 0;
    enum qcow2_sc_type t, t0;
    uint8_t *l2;
    uint64_t done;
    int r;

    *host = 0;
    if (entry_out)
        *entry_out = 0;
    if (l1i >= s->l1_size || !(l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK)) {
        *type = QCOW2_SC_UNALLOC_PLAIN;
        *len = want;
        return 0;
    }
    if (qcow2_off_in_cluster(s, l2off)) {
        qcow2_signal_corruption(bs, true, "L2 table offset %#" PRIx64 " unaligned (L1 index: %#"
                                PRIx64 ")", l2off, l1i);
        return -EIO;
    }
    r = qcow2_cache_get(bs, &s->l2_cache, l2off, false, &l2);
    if (r < 0)
        return r;
    entry = qcow2_l2e_get(s, l2, l2i);
    bitmap = qcow2_l2b_get(s, l2, l2i);
    t0 = qcow2_classify(entry, bitmap, sc, s->extl2, qcow2_has_data_file(s));
    if (s->version < 3 && (t0 == QCOW2_SC_ZERO_PLAIN || t0 == QCOW2_SC_ZERO_ALLOC)) {
        qcow2_signal_corruption(bs, true, "Zero cluster entry found in pre-v3 image (L2 offset: %#"
                                PRIx64 ", L2 index: %#x)", l2off, (unsigned)l2i);
        return -EIO;
    }
    if (t0 == QCOW2_SC_COMPRESSED && qcow2_has_data_file(s)) {
        qcow2_signal_corruption(bs, true, "Compressed cluster entry found in image with external "
                                "data file (L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                l2off, (unsigned)l2i);
        return -EIO;
    }
    if (entry_out)
        *entry_out = entry;
    if (t0 == QCOW2_SC_NORMAL || t0 == QCOW2_SC_ZERO_ALLOC || t0 == QCOW2_SC_UNALLOC_ALLOC) {
        uint64_t hc = entry & QCOW2_L2E_OFFSET_MASK;
        if (qcow2_off_in_cluster(s, hc)) {
            qcow2_signal_corruption(bs, true, "Cluster allocation offset %#" PRIx64 " unaligned "
                                    "(L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                    hc, l2off, (unsigned)l2i);
            return -EIO;
        }
        if (qcow2_has_data_file(s) && hc != off - in_cl) {
            qcow2_signal_corruption(bs, true, "External data file host cluster offset %#" PRIx64
                                    " does not match guest cluster offset: %#" PRIx64
                                    ", L2 index: %#x)", hc, off - in_cl, (unsigned)l2i);
            return -EIO;
        }
        *host = hc + in_cl;
        expect = hc;
    }
    if (t0 == QCOW2_SC_INVALID) {
        qcow2_signal_corruption(bs, true, "Invalid cluster entry found  (L2 offset: %#" PRIx64
                                ", L2 index: %#x)", l2off, (unsigned)l2i);
        return -EIO;
    }
    if (t0 == QCOW2_SC_COMPRESSED) {
        *type = t0;
        *len = min_u64(want, s->cluster_size - in_cl);
        return 0;
    }

    /* Count how far the same type (and contiguous host clusters) reaches. */
    done = 0;
    if (!s->extl2) {
        /* One entry per cluster: the run goes on while an entry's offset
         * and type bits are exactly what the run predicts (map and measure
         * scan whole tables this way). Bits qcow2_classify ignores stay out
         * of the comparison; with a data file, COPIED on an entry without
         * offset means allocated. */
        bool alloc = t0 == QCOW2_SC_NORMAL || t0 == QCOW2_SC_ZERO_ALLOC;
        uint64_t mask = QCOW2_L2E_OFFSET_MASK | QCOW2_OFLAG_COMPRESSED | QCOW2_OFLAG_ZERO;
        uint64_t step = alloc ? s->cluster_size : 0;
        uint64_t next, n, k;

        if (!alloc && qcow2_has_data_file(s))
            mask |= QCOW2_OFLAG_COPIED;
        next = (alloc ? expect + step : 0) |
               (t0 == QCOW2_SC_ZERO_ALLOC || t0 == QCOW2_SC_ZERO_PLAIN ? QCOW2_OFLAG_ZERO : 0);
        n = min_u64(s->l2_entries - l2i, div_round_up_u64(want + in_cl, s->cluster_size));
        for (k = 1; k < n; k++, next += step)
            if ((get_be64(l2 + (l2i + k) * 8) & mask) != next)
                break;
        done = k << s->cluster_bits;
    }
    for (uint64_t i = l2i; s->extl2 && i < s->l2_entries && done < want + in_cl; i++) {
        uint64_t e = qcow2_l2e_get(s, l2, i), b = qcow2_l2b_get(s, l2, i);
        unsigned first = i == l2i ? sc : 0, j;
        if (i != l2i && (t0 == QCOW2_SC_NORMAL || t0 == QCOW2_SC_ZERO_ALLOC ||
                         t0 == QCOW2_SC_UNALLOC_ALLOC)) {
            expect += s->cluster_size;
            if ((e & QCOW2_L2E_OFFSET_MASK) != expect || (e & QCOW2_OFLAG_COMPRESSED))
                break;
        }
        for (j = first; j < scn; j++) {
            t = qcow2_classify(e, b, j, s->extl2, qcow2_has_data_file(s));
            if (t != t0)
                break;
        }
        if (i == l2i)
            done += (uint64_t)(j - first) << s->subcluster_bits;
        else
            done += (uint64_t)j << s->subcluster_bits;
        if (j < scn)
            break;
    }
    /* done counts from the start of off's subcluster */
    done -= in_cl & ((1ULL << s->subcluster_bits) - 1);
    *type = t0;
    *len = min_u64(want, done);
    if (*len == 0)
        *len = min_u64(want, (1ULL << s->subcluster_bits) - (in_cl & ((1ULL << s->subcluster_bits) - 1)));
    return 0;
}

int qcow2_write_l1_entry(struct bds *bs, uint64_t index)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t be[8];
    put_be64(be, s->l1[index]);
    return blk_pwrite(bs->file, s->l1_offset + index * 8, 8, be, 0);
}

int qcow2_grow_l1(struct bds *bs, uint64_t min_size, bool exact)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t new_size, *nl;
    uint8_t *raw;
    int64_t new_off;
    int r;

    if (min_size <= s->l1_size)
        return 0;
    if (min_size > QCOW2_MAX_L1_BYTES / 8)
        return -EFBIG;
    if (exact) {
        new_size = min_size;
    } else {
        new_size = s->l1_size ? s->l1_size : 1;
        while (min_size > new_size)
            new_size = div_round_up_u64(new_size * 3, 2);
    }
    if (new_size > QCOW2_MAX_L1_BYTES / 8)
        return -EFBIG;
    nl = calloc(new_size, 8);
    raw = calloc(new_size, 8);
    if (!nl || !raw) {
        free(nl);
        free(raw);
        return -ENOMEM;
    }
    memcpy(nl, s->l1, (size_t)s->l1_size * 8);
    new_off = qcow2_alloc_clusters(bs, new_size * 8);
    if (new_off < 0) {
        free(nl);
        free(raw);
        return (int)new_off;
    }
    r = qcow2_cache_flush(bs, &s->rb_cache);
    for (uint64_t i = 0; i < new_size; i++)
        put_be64(raw + 8 * i, nl[i]);
    if (r == 0)
        r = blk_pwrite(bs->file, (uint64_t)new_off, new_size * 8, raw, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r == 0) {
        uint8_t hdr[12];
        put_be32(hdr, (uint32_t)new_size);
        put_be64(hdr + 4, (uint64_t)new_off);
        r = blk_pwrite(bs->file, QH_L1_SIZE, 12, hdr, 0);
        if (r == 0)
            r = blk_flush(bs->file);
    }
    free(raw);
    if (r < 0) {
        free(nl);
        qcow2_free_clusters(bs, (uint64_t)new_off, new_size * 8, QCOW2_DISCARD_OTHER);
        return r;
    }
    uint64_t old_off = s->l1_offset, old_size = s->l1_size;
    free(s->l1);
    s->l1 = nl;
    s->l1_offset = (uint64_t)new_off;
    s->l1_size = (uint32_t)new_size;
    qcow2_free_clusters(bs, old_off, old_size * 8, QCOW2_DISCARD_OTHER);
    return 0;
}

/* Allocate a fresh L2 table for l1 index i (copying the old one if it was
 * shared), write it, then point the L1 entry at it. */
static int l2_allocate(struct bds *bs, uint64_t i)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t old = s->l1[i] & QCOW2_L1E_OFFSET_MASK;
    uint8_t *tbl, *copy = NULL;
    int64_t off;
    int r;

    if (old) {
        uint8_t *ot;
        copy = malloc(s->cluster_size);
        if (!copy)
            return -ENOMEM;
        r = qcow2_cache_get(bs, &s->l2_cache, old, false, &ot);
        if (r < 0) {
            free(copy);
            return r;
        }
        memcpy(copy, ot, s->cluster_size);
    }
    off = qcow2_alloc_clusters(bs, s->cluster_size);
    if (off < 0) {
        free(copy);
        return (int)off;
    }
    if (off == 0) {
        free(copy);
        qcow2_signal_corruption(bs, true, "Preventing invalid allocation of L2 table at offset 0");
        return -EIO;
    }
    r = qcow2_cache_get(bs, &s->l2_cache, (uint64_t)off, true, &tbl);
    if (r < 0) {
        free(copy);
        return r;
    }
    if (copy)
        memcpy(tbl, copy, s->cluster_size);
    free(copy);
    qcow2_cache_mark_dirty(&s->l2_cache, tbl);
    r = qcow2_cache_flush(bs, &s->l2_cache);
    if (r < 0)
        return r;
    s->l1[i] = (uint64_t)off | QCOW2_OFLAG_COPIED;
    r = qcow2_write_l1_entry(bs, i);
    if (r < 0)
        return r;
    if (old)
        qcow2_free_clusters(bs, old, s->cluster_size, QCOW2_DISCARD_OTHER);
    return 0;
}

int qcow2_get_l2(struct bds *bs, uint64_t off, bool alloc, uint8_t **table)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t l1i = qcow2_l1_index(s, off), l2off;
    int r;

    *table = NULL;
    if (l1i >= s->l1_size) {
        if (!alloc)
            return 0;
        r = qcow2_grow_l1(bs, l1i + 1, false);
        if (r < 0)
            return r;
    }
    l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
    if (qcow2_off_in_cluster(s, l2off)) {
        qcow2_signal_corruption(bs, true, "L2 table offset %#" PRIx64 " unaligned (L1 index: %#"
                                PRIx64 ")", l2off, l1i);
        return -EIO;
    }
    /* An entry with COPIED but no table (a hostile image; qemu asserts
     * there) gets a table like an empty entry: callers that allocate rely
     * on getting one. */
    if (alloc && (!(s->l1[l1i] & QCOW2_OFLAG_COPIED) || !l2off)) {
        r = l2_allocate(bs, l1i);
        if (r < 0)
            return r;
        l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
    }
    if (!l2off)
        return 0;
    return qcow2_cache_get(bs, &s->l2_cache, l2off, false, table);
}

/* Can this cluster be written in place (its host cluster is ours alone)?
 * With extended L2 the subcluster bitmap does not matter: unallocated or
 * zero subclusters of an owned cluster are filled in place (qemu's
 * handle_copied). */
static bool writable_in_place(const struct qcow2_state *s, uint64_t e, uint64_t b)
{
    (void)b;
    if (e & QCOW2_OFLAG_COMPRESSED)
        return false;
    if (!(e & QCOW2_OFLAG_COPIED))
        return false;
    if (!(e & QCOW2_L2E_OFFSET_MASK) && !qcow2_has_data_file(s))
        return false;
    if (s->extl2)
        return true;
    return !(e & QCOW2_OFLAG_ZERO);
}

static int mark_lazy_dirty(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    if (s->version >= 3 && s->use_lazy_refcounts &&
        !(s->incompat & QCOW2_INCOMPAT_DIRTY))
        return qcow2_mark_dirty(bs);
    return 0;
}

static int invalid_entry(struct bds *bs, uint64_t off, uint64_t l2i)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t l2off = s->l1[qcow2_l1_index(s, off)] & QCOW2_L1E_OFFSET_MASK;
    qcow2_signal_corruption(bs, true, "Invalid cluster entry found (L2 offset: %#" PRIx64
                            ", L2 index: %#x)", l2off, (unsigned)l2i);
    return -EIO;
}

static unsigned ctz32_or32(uint32_t v) { return v ? (unsigned)__builtin_ctz(v) : 32; }
static unsigned clz32_or32(uint32_t v) { return v ? (unsigned)__builtin_clz(v) : 32; }

/* The copy-on-write extent of a write of [off, off+len) over n clusters
 * (qemu's calculate_l2_meta): *from and *to, relative to the first
 * cluster's start, bound what gets written to the host clusters. keep_old:
 * the host clusters stay (in-place write into owned clusters). */
static int cow_extent(struct bds *bs, const uint8_t *l2, uint64_t off, uint64_t len, uint64_t n,
                      bool keep_old, uint64_t *from, uint64_t *to)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size, scs = 1ULL << s->subcluster_bits;
    uint64_t l2i = qcow2_l2_index(s, off);
    uint64_t head = qcow2_off_in_cluster(s, off), end = head + len;
    bool hdf = qcow2_has_data_file(s);
    unsigned sc_first = (unsigned)(head >> s->subcluster_bits);
    unsigned sc_last = (unsigned)(((end - 1) & (cs - 1)) >> s->subcluster_bits);
    uint64_t e, b;
    enum qcow2_sc_type t;

    if (!l2) {
        *from = align_down_u64(head, scs);
        *to = align_up_u64(end, scs);
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        e = qcow2_l2e_get(s, l2, l2i + i);
        b = qcow2_l2b_get(s, l2, l2i + i);
        if (qcow2_classify(e, b, 0, s->extl2, hdf) == QCOW2_SC_INVALID)
            return invalid_entry(bs, off, l2i + i);
    }
    e = qcow2_l2e_get(s, l2, l2i);
    b = qcow2_l2b_get(s, l2, l2i);
    t = qcow2_classify(e, b, sc_first, s->extl2, hdf);
    if (!keep_old) {
        if (t == QCOW2_SC_COMPRESSED)
            *from = 0;
        else if (t == QCOW2_SC_NORMAL || t == QCOW2_SC_ZERO_ALLOC || t == QCOW2_SC_UNALLOC_ALLOC)
            *from = s->extl2 ? (uint64_t)min_u64(sc_first, ctz32_or32((uint32_t)b)) << s->subcluster_bits : 0;
        else
            *from = (uint64_t)sc_first << s->subcluster_bits;
    } else {
        *from = t == QCOW2_SC_NORMAL ? head : (uint64_t)sc_first << s->subcluster_bits;
    }
    e = qcow2_l2e_get(s, l2, l2i + n - 1);
    b = qcow2_l2b_get(s, l2, l2i + n - 1);
    t = qcow2_classify(e, b, sc_last, s->extl2, hdf);
    if (!keep_old) {
        if (t == QCOW2_SC_COMPRESSED) {
            *to = align_up_u64(end, cs);
        } else if (t == QCOW2_SC_NORMAL || t == QCOW2_SC_ZERO_ALLOC || t == QCOW2_SC_UNALLOC_ALLOC) {
            *to = align_up_u64(end, cs);
            if (s->extl2)
                *to -= (uint64_t)min_u64(QCOW2_SUBCLUSTERS - sc_last - 1,
                                         clz32_or32((uint32_t)b)) << s->subcluster_bits;
        } else {
            *to = align_up_u64(end, scs);
        }
    } else {
        *to = t == QCOW2_SC_NORMAL ? end : align_up_u64(end, scs);
    }
    return 0;
}

/* Write [off, off+len) (inside n clusters from off's cluster) to host
 * clusters at host..., padded to [from, to) with the current guest view. */
static int write_cow(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf,
                     uint64_t n, uint64_t host, uint64_t from, uint64_t to)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    uint64_t cstart = off - qcow2_off_in_cluster(s, off);
    uint64_t head = off - cstart, end = head + len;
    uint64_t fend = n == 1 ? to : cs;             /* first piece [from, fend) */
    uint64_t lstart = n == 1 ? to : (n - 1) * cs; /* last piece [lstart, to) */
    uint8_t *fb = NULL, *lb = NULL;
    int r = 0;

    if (from < head || (n == 1 && to > end)) {
        fb = malloc(fend - from);
        if (!fb)
            return -ENOMEM;
        if (from < head && (r = qcow2_do_pread(bs, cstart + from, head - from, fb)) < 0)
            goto out;
        memcpy(fb + (head - from), buf, min_u64(end, fend) - head);
        if (n == 1 && to > end && (r = qcow2_do_pread(bs, cstart + end, to - end, fb + (end - from))) < 0)
            goto out;
    }
    if (n > 1 && to > end) {
        lb = malloc(to - lstart);
        if (!lb) {
            r = -ENOMEM;
            goto out;
        }
        memcpy(lb, buf + (lstart - head), end - lstart);
        if ((r = qcow2_do_pread(bs, cstart + end, to - end, lb + (end - lstart))) < 0)
            goto out;
    }
    /* All copy-on-write material is read; now write. */
    if ((r = qcow2_pre_write_check(bs, host + from, to - from)) < 0)
        goto out;
    if (fb) {
        r = qcow2_crypt_pwrite(bs, host + from, cstart + from, fend - from, fb);
    } else {
        uint64_t stop = lb ? lstart : to;
        r = qcow2_crypt_pwrite(bs, host + head, off, stop - head, buf);
    }
    if (r == 0 && fb && n > 1) {
        uint64_t stop = lb ? lstart : to;
        if (stop > fend)
            r = qcow2_crypt_pwrite(bs, host + fend, cstart + fend, stop - fend, buf + (fend - head));
    }
    if (r == 0 && lb)
        r = qcow2_crypt_pwrite(bs, host + lstart, cstart + lstart, to - lstart, lb);
    if (r == 0)
        s->need_file_flush = true;
out:
    free(fb);
    free(lb);
    return r;
}

/* Mark the subclusters of [from, to) (relative to off's cluster) of n
 * clusters allocated, not zero. */
static void bitmap_mark_written(struct qcow2_state *s, uint8_t *l2, uint64_t l2i, uint64_t n,
                                uint64_t from, uint64_t to)
{
    if (!s->extl2)
        return;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t wf = max_u64(from, i << s->cluster_bits);
        uint64_t wt = min_u64(to, (i + 1) << s->cluster_bits);
        unsigned f = (unsigned)((wf & (s->cluster_size - 1)) >> s->subcluster_bits);
        unsigned l = (unsigned)(((wt - 1) & (s->cluster_size - 1)) >> s->subcluster_bits);
        uint64_t range = ((l == 31 ? 0xffffffffULL : ((1ULL << (l + 1)) - 1))) & ~((1ULL << f) - 1);
        uint64_t b = qcow2_l2b_get(s, l2, l2i + i);
        b |= range;
        b &= ~(range << 32);
        qcow2_l2b_set(s, l2, l2i + i, b);
    }
}

/* Allocating write of [off, off+len) covering n whole clusters starting at
 * the cluster of off, all of which need new host clusters. */
static int write_alloc(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf,
                       uint64_t n, const uint64_t *old)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    uint64_t cstart = off & ~(cs - 1);
    uint64_t from, to;
    uint8_t *l2;
    int64_t host;
    bool need_free = false;
    int r;

    if ((r = mark_lazy_dirty(bs)) < 0)
        return r;
    /* The L2 table comes before the data clusters it maps (qemu's order,
     * hence the same layout). The pointer is fetched again below. */
    r = qcow2_get_l2(bs, cstart, true, &l2);
    if (r < 0)
        return r;
    r = cow_extent(bs, l2, off, len, n, false, &from, &to);
    if (r < 0)
        return r;
    if (qcow2_has_data_file(s)) {
        host = (int64_t)cstart;   /* identity mapping, refcounts not kept */
    } else {
        host = qcow2_alloc_clusters(bs, n * cs);
        if (host < 0)
            return (int)host;
        if (host == 0) {
            qcow2_signal_corruption(bs, true, "Preventing invalid write on metadata (overlaps with qcow2_header)");
            return -EIO;
        }
    }

    /* Data first, then the mapping. */
    r = write_cow(bs, off, len, buf, n, (uint64_t)host, from, to);
    if (r < 0)
        goto undo;
    r = qcow2_get_l2(bs, cstart, true, &l2);
    if (r < 0)
        goto undo;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t idx = qcow2_l2_index(s, cstart) + i;
        qcow2_l2e_set(s, l2, idx, ((uint64_t)host + i * cs) | QCOW2_OFLAG_COPIED);
        uint64_t e = old[i];
        if ((e & QCOW2_OFLAG_COMPRESSED) || (e & QCOW2_L2E_OFFSET_MASK))
            need_free = true;
    }
    bitmap_mark_written(s, l2, qcow2_l2_index(s, cstart), n, from, to);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    if (need_free && !qcow2_has_data_file(s)) {
        r = qcow2_cache_flush(bs, &s->l2_cache);
        if (r < 0)
            return r;
        for (uint64_t i = 0; i < n; i++)
            qcow2_free_any_cluster(bs, old[i], QCOW2_DISCARD_NEVER);
    }
    return 0;

undo:
    if (!qcow2_has_data_file(s))
        qcow2_free_clusters(bs, (uint64_t)host, n * cs, QCOW2_DISCARD_NEVER);
    return r;
}

int qcow2_write_data(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    uint64_t old[MAX_RUN];
    int r = 0;

    while (len) {
        uint64_t l2i = qcow2_l2_index(s, off);
        uint64_t in_cl = qcow2_off_in_cluster(s, off);
        uint64_t max_cl = min_u64(s->l2_entries - l2i, MAX_RUN);
        uint64_t ncl = min_u64(max_cl, div_round_up_u64(in_cl + len, cs));
        uint8_t *l2;
        uint64_t e0, b0, n = 1, step;

        r = qcow2_get_l2(bs, off, false, &l2);
        if (r < 0)
            break;
        e0 = l2 ? qcow2_l2e_get(s, l2, l2i) : 0;
        b0 = l2 ? qcow2_l2b_get(s, l2, l2i) : 0;
        if (l2 && writable_in_place(s, e0, b0)) {
            uint64_t host = e0 & QCOW2_L2E_OFFSET_MASK;
            while (n < ncl) {
                uint64_t e = qcow2_l2e_get(s, l2, l2i + n), b = qcow2_l2b_get(s, l2, l2i + n);
                if (!writable_in_place(s, e, b) || (e & QCOW2_L2E_OFFSET_MASK) != host + n * cs)
                    break;
                n++;
            }
            step = min_u64(len, n * cs - in_cl);
            if (s->extl2) {
                uint64_t from, to;
                r = cow_extent(bs, l2, off, step, n, true, &from, &to);
                if (r == 0)
                    r = write_cow(bs, off, step, buf, n, host, from, to);
                if (r == 0) {
                    r = qcow2_get_l2(bs, off, false, &l2);
                    if (r == 0 && l2) {
                        uint64_t before[MAX_RUN];
                        bool changed = false;
                        for (uint64_t i = 0; i < n; i++)
                            before[i] = qcow2_l2b_get(s, l2, l2i + i);
                        bitmap_mark_written(s, l2, l2i, n, from, to);
                        for (uint64_t i = 0; i < n; i++)
                            changed |= before[i] != qcow2_l2b_get(s, l2, l2i + i);
                        if (changed)
                            qcow2_cache_mark_dirty(&s->l2_cache, l2);
                    }
                }
            } else {
                r = qcow2_pre_write_check(bs, host + in_cl, step);
                if (r == 0)
                    r = qcow2_crypt_pwrite(bs, host + in_cl, off, step, buf);
            }
            if (r < 0)
                break;
        } else {
            old[0] = e0;
            while (l2 && n < ncl) {
                uint64_t e = qcow2_l2e_get(s, l2, l2i + n), b = qcow2_l2b_get(s, l2, l2i + n);
                if (writable_in_place(s, e, b))
                    break;
                old[n++] = e;
            }
            if (!l2) {
                n = ncl;
                memset(old, 0, n * sizeof(*old));
            }
            step = min_u64(len, n * cs - in_cl);
            r = write_alloc(bs, off, step, buf, n, old);
            if (r < 0)
                break;
        }
        off += step;
        buf += step;
        len -= step;
    }
    return r;
}

/* Zero the subclusters of [off, off+len), all inside one cluster and not
 * the whole of it (extended L2): set their zero bits, drop their allocation
 * bits; a compressed cluster cannot be split (-ENOTSUP). */
static int qcow2_zeroize_clusters(struct bds *bs, uint64_t off, uint64_t len, bool unmap);

static int zero_subclusters(struct bds *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t l2i = qcow2_l2_index(s, off), e, b, nb, range;
    unsigned f = (unsigned)(qcow2_off_in_cluster(s, off) >> s->subcluster_bits);
    unsigned cnt = (unsigned)div_round_up_u64(len, 1ULL << s->subcluster_bits);
    uint8_t *l2;
    int r;

    r = qcow2_get_l2(bs, off, true, &l2);
    if (r < 0)
        return r;
    e = qcow2_l2e_get(s, l2, l2i);
    b = qcow2_l2b_get(s, l2, l2i);
    if (e & QCOW2_OFLAG_COMPRESSED)
        return -ENOTSUP;
    range = (((f + cnt) >= 32 ? 0xffffffffULL : (1ULL << (f + cnt)) - 1)) & ~((1ULL << f) - 1);
    nb = (b | (range << 32)) & ~range;
    if (nb != b) {
        qcow2_l2b_set(s, l2, l2i, nb);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
    }
    return 0;
}

static int zeroize(struct bds *bs, uint64_t off, uint64_t len, bool unmap)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    int r;

    if (s->version < 3)
        return -ENOTSUP;
    if ((r = mark_lazy_dirty(bs)) < 0)
        return r;
    if (s->extl2) {
        /* qemu's head and tail: partial clusters get zero subclusters; a
         * tail reaching the image end counts as a whole cluster. */
        uint64_t end = off + len, tail = 0;
        if (qcow2_off_in_cluster(s, off)) {
            uint64_t head = min_u64(len, cs - qcow2_off_in_cluster(s, off));
            r = zero_subclusters(bs, off, head);
            if (r < 0)
                return r;
            off += head;
            len -= head;
        }
        if (len && end < bs->total_size)
            tail = qcow2_off_in_cluster(s, end);
        if (tail) {
            r = qcow2_zeroize_clusters(bs, off, len - tail, unmap);
            if (r < 0)
                return r;
            return zero_subclusters(bs, end - tail, tail);
        }
    }
    return qcow2_zeroize_clusters(bs, off, len, unmap);
}

/* Whole clusters of [off, off+len) (the last one may end at the image
 * end) become zero clusters. */
static int qcow2_zeroize_clusters(struct bds *bs, uint64_t off, uint64_t len, bool unmap)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    int r;

    while (len) {
        uint64_t l2i = qcow2_l2_index(s, off);
        uint64_t n = min_u64(s->l2_entries - l2i, div_round_up_u64(len, cs));
        uint64_t *old = NULL;
        bool any_free = false;
        uint8_t *l2;

        old = calloc(n, sizeof(*old));
        if (!old)
            return -ENOMEM;
        r = qcow2_get_l2(bs, off, true, &l2);
        if (r < 0) {
            free(old);
            return r;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t e = qcow2_l2e_get(s, l2, l2i + i), b = qcow2_l2b_get(s, l2, l2i + i);
            bool allocated = (e & QCOW2_OFLAG_COMPRESSED) || (e & QCOW2_L2E_OFFSET_MASK);
            bool drop = (e & QCOW2_OFLAG_COMPRESSED) || (unmap && allocated);
            uint64_t ne = drop ? 0 : e, nb = b;
            if (s->extl2)
                nb = QCOW2_L2_BITMAP_ALL_ZERO;
            else
                ne |= QCOW2_OFLAG_ZERO;
            if (ne == e && nb == b)
                continue;
            qcow2_l2e_set(s, l2, l2i + i, ne);
            qcow2_l2b_set(s, l2, l2i + i, nb);
            if (drop) {
                old[i] = e;
                any_free = true;
            }
        }
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        if (any_free && !qcow2_has_data_file(s)) {
            r = qcow2_cache_flush(bs, &s->l2_cache);
            if (r < 0) {
                free(old);
                return r;
            }
            for (uint64_t i = 0; i < n; i++)
                if (old[i])
                    qcow2_free_any_cluster(bs, old[i], QCOW2_DISCARD_REQUEST);
        }
        free(old);
        uint64_t step = min_u64(len, n * cs);
        off += step;
        len -= step;
    }
    return 0;
}

static int discard_clusters(struct bds *bs, uint64_t off, uint64_t len, bool full,
                            enum qcow2_discard_type type)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    int r;

    while (len) {
        uint64_t l2i = qcow2_l2_index(s, off);
        uint64_t n = min_u64(s->l2_entries - l2i, div_round_up_u64(len, cs));
        uint64_t step = min_u64(len, n * cs);
        uint64_t *old;
        bool any = false;
        uint8_t *l2;

        /* Nothing to discard where no L2 table exists and nothing could
         * show through. */
        if (qcow2_l1_index(s, off) >= s->l1_size ||
            (!(s->l1[qcow2_l1_index(s, off)] & QCOW2_L1E_OFFSET_MASK) && (full || !bs->backing))) {
            off += step;
            len -= step;
            continue;
        }
        old = calloc(n, sizeof(*old));
        if (!old)
            return -ENOMEM;
        r = qcow2_get_l2(bs, off, true, &l2);
        if (r < 0) {
            free(old);
            return r;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t e = qcow2_l2e_get(s, l2, l2i + i), b = qcow2_l2b_get(s, l2, l2i + i);
            bool allocated = (e & QCOW2_OFLAG_COMPRESSED) || (e & QCOW2_L2E_OFFSET_MASK) ||
                             (qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED));
            uint64_t ne = e, nb = b;
            if (full) {
                ne = nb = 0;
            } else if (bs->backing || allocated) {
                if (s->extl2) {
                    ne = 0;
                    nb = QCOW2_L2_BITMAP_ALL_ZERO;
                } else {
                    ne = s->version >= 3 ? QCOW2_OFLAG_ZERO : 0;
                }
            }
            if (ne == e && nb == b)
                continue;
            qcow2_l2e_set(s, l2, l2i + i, ne);
            qcow2_l2b_set(s, l2, l2i + i, nb);
            old[i] = e;
            any = true;
        }
        if (any) {
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            r = qcow2_cache_flush(bs, &s->l2_cache);
            if (r < 0) {
                free(old);
                return r;
            }
            for (uint64_t i = 0; i < n; i++)
                if (old[i])
                    qcow2_free_any_cluster(bs, old[i], type);
        }
        free(old);
        off += step;
        len -= step;
    }
    return 0;
}

/* Runs the frees of one request as a batch: the file gets one discard per
 * contiguous host range afterwards (even after a failure part way, like
 * qemu; a failed request discards nothing). */
static bool batch_begin(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    bool outer = s->cache_discards;
    s->cache_discards = true;
    return outer;
}

static int batch_end(struct bds *bs, bool outer, int r)
{
    struct qcow2_state *s = qcow2_st(bs);
    if (!outer) {
        s->cache_discards = false;
        qcow2_process_discards(bs, r);
    }
    return r;
}

int qcow2_discard_clusters(struct bds *bs, uint64_t off, uint64_t len, bool full,
                           enum qcow2_discard_type type)
{
    bool outer = batch_begin(bs);
    return batch_end(bs, outer, discard_clusters(bs, off, len, full, type));
}

int qcow2_zeroize(struct bds *bs, uint64_t off, uint64_t len, bool unmap)
{
    bool outer = batch_begin(bs);
    return batch_end(bs, outer, zeroize(bs, off, len, unmap));
}

/* Preallocate clusters for [from, to): metadata always; the file is then
 * extended over the last allocated cluster (with mode's allocation). */
int qcow2_preallocate(struct bds *bs, uint64_t from, uint64_t to, enum blk_prealloc mode,
                      struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size, end_host = 0;
    uint64_t off = from & ~(cs - 1);
    int r;

    while (off < to) {
        uint64_t l2i = qcow2_l2_index(s, off);
        uint64_t n = min_u64(s->l2_entries - l2i, div_round_up_u64(to - off, cs));
        uint8_t *l2;
        uint64_t i = 0;

        r = qcow2_get_l2(bs, off, true, &l2);
        if (r < 0)
            return err_set_errno(err, -r, "Allocating clusters failed");
        while (i < n) {
            uint64_t e = qcow2_l2e_get(s, l2, l2i + i);
            if ((e & QCOW2_L2E_OFFSET_MASK) || (e & QCOW2_OFLAG_COMPRESSED) ||
                (qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED))) {
                i++;
                continue;
            }
            uint64_t k = 1;
            while (i + k < n) {
                uint64_t e2 = qcow2_l2e_get(s, l2, l2i + i + k);
                if ((e2 & QCOW2_L2E_OFFSET_MASK) || (e2 & QCOW2_OFLAG_COMPRESSED))
                    break;
                k++;
            }
            int64_t host;
            if (qcow2_has_data_file(s)) {
                host = (int64_t)(off + i * cs);
            } else {
                host = qcow2_alloc_clusters(bs, k * cs);
                if (host < 0)
                    return err_set_errno(err, (int)-host, "Allocating clusters failed");
            }
            r = qcow2_get_l2(bs, off, false, &l2);
            if (r < 0 || !l2)
                return err_set_errno(err, r < 0 ? -r : EIO, "Mapping clusters failed");
            for (uint64_t j = 0; j < k; j++) {
                uint64_t e2 = qcow2_l2e_get(s, l2, l2i + i + j);
                /* Keep the zero flag meaning of a v3 zero cluster. */
                qcow2_l2e_set(s, l2, l2i + i + j,
                              ((uint64_t)host + j * cs) | QCOW2_OFLAG_COPIED | (e2 & QCOW2_OFLAG_ZERO));
            }
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            end_host = max_u64(end_host, (uint64_t)host + k * cs);
            i += k;
        }
        off += n * cs;
    }
    r = qcow2_meta_flush(bs);
    if (r < 0)
        return err_set_errno(err, -r, "Mapping clusters failed");
    if (end_host) {
        int64_t flen = blk_getlength(s->data_file);
        if (flen < 0)
            return err_set_errno(err, (int)-flen, "Could not get file size");
        if (end_host > (uint64_t)flen) {
            r = blk_truncate(s->data_file, end_host, false,
                             mode == BLK_PREALLOC_METADATA ? BLK_PREALLOC_OFF : mode, err);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* --- Allocating writes in two steps (driver.h pwrite_map/pwrite_commit) ---
 *
 * qemu's qcow2_co_pwritev_part allocates under the image lock, drops the
 * lock for the guest data and takes it again to link the L2 entries. The
 * same here, for the simple case only: whole clusters that are not
 * allocated (entry 0, or a plain zero flag), in an image whose data goes
 * unchanged to bs->file (no encryption, no external data file, no
 * subclusters). Anything else answers 0 and goes through pwrite. The
 * ordering rules hold: the allocation is in the refcount cache before the
 * L2 entry exists; the entry is set only after the data was written, with
 * need_file_flush raised so that the L2 table is written after a flush. A
 * crash in between leaks the clusters (check repairs leaks). */
static bool entry_unallocated(const struct qcow2_state *s, uint64_t e)
{
    return e == 0 || (s->version >= 3 && e == QCOW2_OFLAG_ZERO);
}

int qcow2_pwrite_map(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                     uint64_t *host, struct bds **file)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size;
    uint64_t in_cl = qcow2_off_in_cluster(s, off), l2i, n;
    uint8_t *l2;
    int64_t h;
    int r;

    if (s->unusable)
        return -ENOMEDIUM;
    if (off + len > bs->total_size)
        return -EINVAL;
    if (bs->encrypted || s->crypt || s->extl2 || qcow2_has_data_file(s) || s->data_file != bs->file) {
        *pnum = len;
        return 0;
    }
    if (in_cl || len < cs) {
        *pnum = min_u64(len, cs - in_cl);
        return 0;
    }
    l2i = qcow2_l2_index(s, off);
    n = min_u64(min_u64(len / cs, s->l2_entries - l2i), MAX_RUN);
    if ((r = mark_lazy_dirty(bs)) < 0)
        return r;
    /* The L2 table before the data clusters it maps, as write_alloc. */
    r = qcow2_get_l2(bs, off, true, &l2);
    if (r < 0)
        return r;
    if (!l2)
        return -EIO;
    for (uint64_t i = 0; i < n; i++) {
        if (!entry_unallocated(s, qcow2_l2e_get(s, l2, l2i + i))) {
            n = i;
            break;
        }
    }
    if (n == 0) {
        *pnum = cs;
        return 0;
    }
    h = qcow2_alloc_clusters(bs, n * cs);
    if (h < 0)
        return (int)h;
    if (h == 0) {
        qcow2_signal_corruption(bs, true, "Preventing invalid write on metadata (overlaps with qcow2_header)");
        return -EIO;
    }
    r = qcow2_pre_write_check(bs, (uint64_t)h, n * cs);
    if (r < 0) {
        qcow2_free_clusters(bs, (uint64_t)h, n * cs, QCOW2_DISCARD_NEVER);
        return r;
    }
    qcow2_bitmap_note_write(bs, off, n * cs);
    *pnum = n * cs;
    *host = (uint64_t)h;
    *file = bs->file;
    return 1;
}

int qcow2_pwrite_commit(struct bds *bs, uint64_t off, uint64_t len, uint64_t host, int ret)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t cs = s->cluster_size, l2i = qcow2_l2_index(s, off), n = len / cs;
    uint8_t *l2 = NULL;
    int r = ret;

    if (r == 0)
        r = qcow2_get_l2(bs, off, false, &l2);
    if (r == 0 && !l2)
        r = -EIO;
    /* Nobody else writes a mapped range; check anyway before linking. */
    for (uint64_t i = 0; r == 0 && i < n; i++)
        if (!entry_unallocated(s, qcow2_l2e_get(s, l2, l2i + i)))
            r = -EIO;
    if (r < 0) {
        qcow2_free_clusters(bs, host, n * cs, QCOW2_DISCARD_NEVER);
        return r;
    }
    s->need_file_flush = true;
    for (uint64_t i = 0; i < n; i++)
        qcow2_l2e_set(s, l2, l2i + i, (host + i * cs) | QCOW2_OFLAG_COPIED);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    return 0;
}
