/* qcow2 consistency check and repair (qcow2.txt "Host cluster management",
 * "Cluster mapping", "Snapshots").
 *
 * The check builds an in-memory refcount array (same packing as on-disk
 * refcount blocks) by walking every structure that references clusters,
 * then compares it with the on-disk refcounts. Leaks and missing references
 * are fixed in place where allowed; when the refcount structure itself is
 * unusable it is rebuilt from the in-memory array (a fresh table and blocks
 * placed in free space), after which a second pass recomputes everything.
 * Wording, counting and statistics follow qemu-img 7.2. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/hugemap.h"

struct imrt {
    uint8_t *a;
    uint64_t n;         /* clusters covered */
    int64_t flen;       /* file length, read again where the check can change it */
    bool exact;         /* the last compare_refcounts found the file's refcounts equal */
};

/* The refcount of cluster c on disk: the in-memory one when the last
 * comparison proved them equal (no refcount block read), else read. */
static int disk_refcount(struct bds *bs, const struct imrt *t, uint64_t c, uint64_t *ref)
{
    struct qcow2_state *s = qcow2_st(bs);

    if (t && t->exact && c < t->n) {
        *ref = qcow2_refcount_get(t->a, c, s->refcount_order);
        return 0;
    }
    return qcow2_get_refcount(bs, c, ref);
}

/* how much of the in-memory refcount array is faulted in at once */
#define IMRT_PREFAULT_MAX ((uint64_t)2 << 20)

static uint64_t imrt_bytes(const struct qcow2_state *s, uint64_t entries)
{
    /* whole clusters so refblock-sized slices can be written directly */
    uint64_t bits = entries << s->refcount_order;
    uint64_t bytes = (bits + 7) / 8;
    return align_up_u64(bytes ? bytes : 1, s->cluster_size);
}

static int imrt_resize(struct qcow2_state *s, struct imrt *t, uint64_t n)
{
    uint64_t ob = t->a ? imrt_bytes(s, t->n) : 0, nb = imrt_bytes(s, n);
    if (nb > SIZE_MAX / 2)
        return -ENOMEM;
    if (!t->a) {
        /* calloc: large arrays come zeroed from mmap, and pages that no
         * reference touches are never faulted in. */
        if (!(t->a = calloc(1, nb)))
            return -ENOMEM;
        /* the file's clusters are mostly referenced: fault in the start of
         * the array at once (bounded, so that a huge array stays lazy) */
        mem_prefault(t->a, (size_t)min_u64(nb, IMRT_PREFAULT_MAX));
    } else if (nb != ob) {
        uint8_t *p = realloc(t->a, nb);
        if (!p)
            return -ENOMEM;
        if (nb > ob)
            memset(p + ob, 0, nb - ob);
        t->a = p;
    }
    t->n = n;
    return 0;
}

static uint64_t imrt_get(const struct qcow2_state *s, const struct imrt *t, uint64_t i)
{
    return i < t->n ? qcow2_refcount_get(t->a, i, s->refcount_order) : 0;
}

static int inc_refs(struct bds *bs, struct blk_check_result *res, struct imrt *t,
                    uint64_t offset, uint64_t size)
{
    struct qcow2_state *s = qcow2_st(bs);
    int64_t flen = t->flen;
    uint64_t end;

    if (size == 0)
        return 0;
    if (flen < 0)
        return (int)flen;
    /* The common case, one cluster of the default 16-bit width well inside
     * the file, without the general loop's per-entry width switch. */
    if (s->refcount_order == 4 && size == s->cluster_size && !qcow2_off_in_cluster(s, offset) &&
        offset < (uint64_t)flen && (uint64_t)flen - offset >= size &&
        (offset >> s->cluster_bits) < t->n) {
        uint8_t *p = t->a + 2 * (offset >> s->cluster_bits);
        uint16_t v = get_be16(p);
        if (v != UINT16_MAX) {
            put_be16(p, (uint16_t)(v + 1));
            return 0;
        }
    }
    if (ckd_add(&end, offset, size) || (end > (uint64_t)flen && end - (uint64_t)flen >= s->cluster_size)) {
        blk_check_log(res, "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64,
                      offset, size);
        res->corruptions++;
        return 0;
    }
    for (uint64_t c = offset & ~(s->cluster_size - 1); c < end; c += s->cluster_size) {
        uint64_t k = c >> s->cluster_bits, ref;
        if (k >= t->n && imrt_resize(s, t, k + 1) < 0) {
            res->check_errors++;
            return -ENOMEM;
        }
        ref = qcow2_refcount_get(t->a, k, s->refcount_order);
        if (ref == s->refcount_max) {
            blk_check_log(res, "ERROR: overflow cluster offset=0x%" PRIx64, c);
            blk_check_log(res, "Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing");
            res->corruptions++;
            continue;
        }
        qcow2_refcount_set(t->a, k, s->refcount_order, ref + 1);
    }
    return 0;
}

/* inc_refs for one aligned cluster of the default 16-bit width inside the
 * file, inline in the L2 walk; false when the general path must do it. */
static inline bool inc_cluster_fast(const struct qcow2_state *s, struct imrt *t, uint64_t off)
{
    uint64_t k = off >> s->cluster_bits;
    uint8_t *p;
    uint16_t v;

    if (s->refcount_order != 4 || t->flen < 0 || off >= (uint64_t)t->flen ||
        (uint64_t)t->flen - off < s->cluster_size || k >= t->n)
        return false;
    p = t->a + 2 * k;
    v = get_be16(p);
    if (v == UINT16_MAX)
        return false;
    put_be16(p, (uint16_t)(v + 1));
    return true;
}

/* inc_refs for qcow2-bitmap.c, which does not know struct imrt. */
static int inc_refs_cb(struct bds *bs, struct blk_check_result *res, void *t, uint64_t offset,
                       uint64_t size)
{
    return inc_refs(bs, res, t, offset, size);
}

/* qemu's fix_l2_entry_by_zero: an unaligned preallocated entry becomes a
 * zero cluster, written straight into the table on disk unless that would
 * hit other metadata. Returns 0 when fixed; *overlap when checking this
 * table must stop. */
static int fix_entry_by_zero(struct bds *bs, struct blk_check_result *res, uint64_t l2_offset,
                             uint8_t *l2, uint64_t i, bool active, bool *overlap)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t eoff = l2_offset + i * s->l2_entry_size;
    int r;

    if (s->extl2) {
        uint64_t b = qcow2_l2b_get(s, l2, i);
        b |= b << 32;
        b &= QCOW2_L2_BITMAP_ALL_ZERO;
        qcow2_l2b_set(s, l2, i, b);
        qcow2_l2e_set(s, l2, i, 0);
    } else {
        qcow2_l2e_set(s, l2, i, QCOW2_OFLAG_ZERO);
    }
    *overlap = qcow2_overlap_check(bs, eoff, s->l2_entry_size, active) < 0;
    if (*overlap) {     /* signalled as corruption first, as qemu's pre-write check does */
        blk_check_log(res, "ERROR: Overlap check failed");
        res->check_errors++;
        return -EIO;
    }
    r = blk_pwrite(bs->file, eoff, s->l2_entry_size, l2 + i * s->l2_entry_size, 0);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0) {
        blk_check_log(res, "ERROR: Failed to overwrite L2 table entry: %s", strerror(-r));
        res->check_errors++;
        return r;
    }
    res->corruptions--;
    res->corruptions_fixed++;
    return 0;
}

static int check_l2(struct bds *bs, struct blk_check_result *res, struct imrt *t,
                    uint64_t l2_offset, bool frag, int fix)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *l2 = malloc(s->cluster_size);
    uint64_t next_contig = 0;
    bool hdf = qcow2_has_data_file(s);
    int r;

    if (!l2) {
        res->check_errors++;
        return -ENOMEM;
    }
    mem_prefault(l2, s->cluster_size);      /* filled whole by the read */
    r = blk_pread(bs->file, l2_offset, s->cluster_size, l2);
    if (r < 0) {
        blk_check_log(res, "ERROR: I/O error in check_refcounts_l2");
        res->check_errors++;
        free(l2);
        return r;
    }
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t e = qcow2_l2e_get(s, l2, i), b = qcow2_l2b_get(s, l2, i);
        bool compressed = e & QCOW2_OFLAG_COMPRESSED;

        if (!e && !b)
            continue;           /* unallocated, nothing to count or report */
        if (!s->extl2 && !hdf && !(e & (QCOW2_OFLAG_COMPRESSED | QCOW2_L2E_STD_RESERVED)) &&
            (e & QCOW2_L2E_OFFSET_MASK) && !qcow2_off_in_cluster(s, e & QCOW2_L2E_OFFSET_MASK) &&
            inc_cluster_fast(s, t, e & QCOW2_L2E_OFFSET_MASK)) {
            /* a plain data cluster: what the general path below does for it */
            uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
            if (frag) {
                res->allocated_clusters++;
                if (next_contig && off != next_contig)
                    res->fragmented_clusters++;
                next_contig = off + s->cluster_size;
            }
            continue;
        }
        if (!compressed && (e & QCOW2_L2E_STD_RESERVED)) {
            blk_check_log(res, "ERROR found l2 entry with reserved bits set: %" PRIx64, e);
            res->corruptions++;
        }
        if (compressed) {
            uint64_t host, len;
            if (e & QCOW2_OFLAG_COPIED) {
                blk_check_log(res, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for compressed clusters",
                              e & qcow2_coffset_mask(s->cluster_bits));
                e &= ~QCOW2_OFLAG_COPIED;
                res->corruptions++;
            }
            if (qcow2_has_data_file(s)) {
                blk_check_log(res, "ERROR compressed cluster %d with data file, entry=0x%" PRIx64, (int)i, e);
                res->corruptions++;
                continue;
            }
            if (b) {
                blk_check_log(res, "ERROR compressed cluster %d with non-zero subcluster allocation bitmap, entry=0x%" PRIx64,
                              (int)i, e);
                res->corruptions++;
                continue;
            }
            qcow2_compressed_decode(e, s->cluster_bits, &host, &len);
            if ((r = inc_refs(bs, res, t, host, len)) < 0)
                goto out;
            if (frag) {
                res->allocated_clusters++;
                res->compressed_clusters++;
                res->fragmented_clusters++;
            }
            continue;
        }
        uint64_t off = e & QCOW2_L2E_OFFSET_MASK;
        bool allocated = off || (qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED));
        if (allocated) {
            if ((b >> 32) & b) {
                res->corruptions++;
                blk_check_log(res, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted subcluster allocation bitmap", off);
            }
            if (qcow2_off_in_cluster(s, off)) {
                res->corruptions++;
                bool data = s->extl2 ? (b & QCOW2_L2_BITMAP_ALL_ALLOC) : !(e & QCOW2_OFLAG_ZERO);
                if (!data) {
                    blk_check_log(res, "%s offset=%" PRIx64 ": Preallocated cluster is not properly aligned; L2 entry corrupted.",
                                  fix & BLK_FIX_ERRORS ? "Repairing" : "ERROR", off);
                    if (fix & BLK_FIX_ERRORS) {
                        bool overlap = false;
                        r = fix_entry_by_zero(bs, res, l2_offset, l2, i, frag, &overlap);
                        if (overlap)
                            goto out;
                        if (r == 0)
                            continue;
                    }
                } else {
                    blk_check_log(res, "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; L2 entry corrupted.", off);
                }
            }
            if (frag) {
                res->allocated_clusters++;
                if (next_contig && off != next_contig)
                    res->fragmented_clusters++;
                next_contig = off + s->cluster_size;
            }
            if (!qcow2_has_data_file(s) && (r = inc_refs(bs, res, t, off, s->cluster_size)) < 0)
                goto out;
        } else if (!(s->extl2 == false && (e & QCOW2_OFLAG_ZERO)) && (b & QCOW2_L2_BITMAP_ALL_ALLOC)) {
            res->corruptions++;
            blk_check_log(res, "ERROR: Unallocated cluster has non-zero subcluster allocation map");
        }
    }
    r = 0;
out:
    free(l2);
    return r;
}

static int check_l1(struct bds *bs, struct blk_check_result *res, struct imrt *t,
                    uint64_t l1_offset, uint64_t l1_size, bool frag, int fix)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *raw;
    int r;

    if (!l1_size)
        return 0;
    if ((r = inc_refs(bs, res, t, l1_offset, l1_size * 8)) < 0)
        return r;
    raw = malloc(l1_size * 8);
    if (!raw) {
        res->check_errors++;
        return -ENOMEM;
    }
    r = blk_pread(bs->file, l1_offset, l1_size * 8, raw);
    if (r < 0) {
        blk_check_log(res, "ERROR: I/O error in check_refcounts_l1");
        res->check_errors++;
        free(raw);
        return r;
    }
    for (uint64_t i = 0; i < l1_size; i++) {
        uint64_t e = get_be64(raw + 8 * i), l2;
        if (!e)
            continue;
        if (e & QCOW2_L1E_RESERVED) {
            blk_check_log(res, "ERROR found L1 entry with reserved bits set: %" PRIx64, e);
            res->corruptions++;
        }
        l2 = e & QCOW2_L1E_OFFSET_MASK;
        if ((r = inc_refs(bs, res, t, l2, s->cluster_size)) < 0)
            break;
        if (qcow2_off_in_cluster(s, l2)) {
            blk_check_log(res, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry corrupted", l2);
            res->corruptions++;
        }
        if ((r = check_l2(bs, res, t, l2, frag, fix)) < 0)
            break;
    }
    free(raw);
    return r < 0 ? r : 0;
}

/* Entry i of the refcount table. A read-only open has read only the
 * entries for the file's own clusters (qcow2_refcount_init); the rest,
 * normally all zero, is streamed through a small buffer instead of being
 * read into the table (fresh pages cost a page fault each). */
struct rt_stream {
    uint64_t first, n;          /* entries held in buf */
    uint8_t buf[2048];
};

static int reftable_entry(struct bds *bs, struct rt_stream *st, uint64_t i, uint64_t *e)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if (i < s->reftable_loaded) {
        *e = s->reftable[i];
        return 0;
    }
    if (i < st->first || i - st->first >= st->n) {
        st->first = i;
        st->n = min_u64(s->reftable_size - i, sizeof(st->buf) / 8);
        r = blk_pread(bs->file, s->reftable_offset + i * 8, st->n * 8, st->buf);
        if (r < 0) {
            st->n = 0;
            return r;
        }
    }
    *e = get_be64(st->buf + 8 * (i - st->first));
    return 0;
}

static int check_refblocks(struct bds *bs, struct blk_check_result *res, int fix, bool *rebuild,
                           struct imrt *t)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct rt_stream st;
    int r;

    st.first = st.n = 0;
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t ent, off, c;

        if ((r = reftable_entry(bs, &st, i, &ent)) < 0) {
            blk_check_log(res, "ERROR: Could not read the refcount table: %s", strerror(-r));
            res->check_errors++;
            return r;
        }
        off = ent & QCOW2_REFT_OFFSET_MASK;
        c = off >> s->cluster_bits;
        if (ent & QCOW2_REFT_RESERVED) {
            blk_check_log(res, "ERROR refcount table entry %" PRId64 " has reserved bits set", (int64_t)i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (qcow2_off_in_cluster(s, off)) {
            blk_check_log(res, "ERROR refcount block %" PRId64 " is not cluster aligned; refcount table entry corrupted", (int64_t)i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (c >= t->n) {
            res->corruptions++;
            blk_check_log(res, "%s refcount block %" PRId64 " is outside image",
                          fix & BLK_FIX_ERRORS ? "Repairing" : "ERROR", (int64_t)i);
            if (fix & BLK_FIX_ERRORS) {
                struct err e2;
                err_init(&e2);
                r = blk_truncate(bs->file, off + s->cluster_size, false, BLK_PREALLOC_OFF, &e2);
                if (r == 0) {
                    int64_t fl = blk_getlength(bs->file);
                    t->flen = fl;
                    if (fl >= 0 && (r = imrt_resize(s, t, qcow2_size_to_clusters(s, (uint64_t)fl))) < 0) {
                        res->check_errors++;
                        return r;
                    }
                    if (c < t->n) {
                        res->corruptions--;
                        res->corruptions_fixed++;
                        if ((r = inc_refs(bs, res, t, off, s->cluster_size)) < 0)
                            return r;
                        continue;
                    }
                    r = -EINVAL;
                }
                *rebuild = true;
                blk_check_log(res, "ERROR could not resize image: %s", strerror(-r));
            }
            continue;
        }
        if (off) {
            if ((r = inc_refs(bs, res, t, off, s->cluster_size)) < 0)
                return r;
            if (imrt_get(s, t, c) != 1) {
                blk_check_log(res, "ERROR refcount block %" PRId64 " refcount=%" PRIu64, (int64_t)i, imrt_get(s, t, c));
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

static int calculate_refcounts(struct bds *bs, struct blk_check_result *res, int fix,
                               bool *rebuild, struct imrt *t)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if ((t->flen = blk_getlength(bs->file)) < 0)
        return (int)t->flen;
    if ((r = inc_refs(bs, res, t, 0, s->cluster_size)) < 0)
        return r;
    if ((r = check_l1(bs, res, t, s->l1_offset, s->l1_size, true, fix)) < 0)
        return r;
    if (qcow2_has_data_file(s) && s->nb_snapshots) {
        blk_check_log(res, "ERROR %u snapshots in image with data file", s->nb_snapshots);
        res->corruptions++;
    }
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        if (qcow2_off_in_cluster(s, sn->l1_offset)) {
            blk_check_log(res, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not cluster aligned; snapshot table entry corrupted",
                          sn->id_str, sn->name, sn->l1_offset);
            res->corruptions++;
            continue;
        }
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
            blk_check_log(res, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too large; snapshot table entry corrupted",
                          sn->id_str, sn->name, sn->l1_size);
            res->corruptions++;
            continue;
        }
        if ((r = check_l1(bs, res, t, sn->l1_offset, sn->l1_size, false, fix)) < 0)
            return r;
    }
    if ((r = inc_refs(bs, res, t, s->snapshots_offset, s->snapshots_size)) < 0)
        return r;
    if ((r = inc_refs(bs, res, t, s->reftable_offset, s->reftable_size * 8)) < 0)
        return r;
    if (s->crypto_hdr_len && (r = inc_refs(bs, res, t, s->crypto_hdr_offset, s->crypto_hdr_len)) < 0)
        return r;
    if ((r = qcow2_check_bitmaps_refcounts(bs, res, inc_refs_cb, t)) < 0)
        return r;
    return check_refblocks(bs, res, fix, rebuild, t);
}

/* One piece of a refcount block against the in-memory array. */
struct piece_cmp {
    const uint8_t *mem;         /* in-memory refcounts of entry `first` on */
    uint64_t first;             /* block entry the comparison starts at */
    unsigned order;
};

static bool piece_equal(void *opaque, const uint8_t *p, uint64_t pos, uint64_t n)
{
    const struct piece_cmp *pc = opaque;
    return !memcmp(p, pc->mem + (((pos - pc->first) << pc->order) >> 3), (n << pc->order) >> 3);
}

/* Clusters [from, to) of one refcount block whose on-disk refcounts match
 * the in-memory ones byte for byte (both use the on-disk packing): nothing
 * to report; *highest moves to the last cluster referenced. Returns false
 * when the block must be compared cluster by cluster. */
static bool refblock_matches(struct bds *bs, const struct imrt *t, uint64_t from, uint64_t to,
                             uint64_t *highest)
{
    struct qcow2_state *s = qcow2_st(bs);
    unsigned order = s->refcount_order;
    uint64_t rb_first = from & ~((1ULL << s->rb_bits) - 1);
    uint64_t bits = (to - from) << order, bytes;
    const uint8_t *mem = t->a + ((from << order) >> 3);
    uint64_t rb_off;

    /* whole bytes only (refcounts narrower than a byte share them) */
    if (((from << order) & 7) || (bits & 7))
        return false;
    bytes = bits >> 3;
    /* An unaligned block is a corruption event: leave it to the slow path,
     * which reports it (once per cluster, as before). */
    if ((from >> s->rb_bits) < s->reftable_size &&
        (qcow2_reftable_load(bs, (from >> s->rb_bits) + 1) < 0 ||
         qcow2_off_in_cluster(s, s->reftable[from >> s->rb_bits] & QCOW2_REFT_OFFSET_MASK)))
        return false;
    if ((from >> s->rb_bits) < s->reftable_size &&
        (rb_off = s->reftable[from >> s->rb_bits] & QCOW2_REFT_OFFSET_MASK)) {
        /* piece by piece, without faulting in a cache buffer */
        struct piece_cmp pc = { mem, from - rb_first, order };
        if (qcow2_scan_refblock(bs, rb_off, from - rb_first, to - rb_first, piece_equal, &pc) != 0)
            return false;       /* different, or the slow path reports the error */
    } else {
        for (uint64_t b = 0; b < bytes; b++)
            if (mem[b])
                return false;
    }
    for (uint64_t b = bytes; b-- > 0;) {
        if (mem[b]) {
            uint64_t first = from + ((b << 3) >> order);
            uint64_t last = first + (8 >> order ? (8 >> order) : 1) - 1;
            while (last > first && !qcow2_refcount_get(t->a, last, order))
                last--;
            *highest = last;
            break;
        }
    }
    return true;
}

static void compare_refcounts(struct bds *bs, struct blk_check_result *res, int fix,
                              bool *rebuild, uint64_t *highest, struct imrt *t)
{
    struct qcow2_state *s = qcow2_st(bs);

    *highest = 0;
    t->exact = true;
    for (uint64_t i = 0; i < t->n; i++) {
        if (!(i & ((1ULL << s->rb_bits) - 1))) {
            uint64_t to = min_u64(t->n, i + (1ULL << s->rb_bits));
            if (refblock_matches(bs, t, i, to, highest)) {
                i = to - 1;
                continue;
            }
            t->exact = false;
        }
        uint64_t r1, r2 = imrt_get(s, t, i);
        int r = qcow2_get_refcount(bs, i, &r1);
        int64_t *fixed = NULL;

        if (r < 0) {
            blk_check_log(res, "Can't get refcount for cluster %" PRId64 ": %s", (int64_t)i, strerror(-r));
            res->check_errors++;
            continue;
        }
        if (r1 || r2)
            *highest = i;
        if (r1 == r2)
            continue;
        if (r1 == 0)
            *rebuild = true;
        else if (r1 > r2 && (fix & BLK_FIX_LEAKS))
            fixed = &res->leaks_fixed;
        else if (r1 < r2 && (fix & BLK_FIX_ERRORS))
            fixed = &res->corruptions_fixed;
        blk_check_log(res, "%s cluster %" PRId64 " refcount=%" PRIu64 " reference=%" PRIu64,
                      fixed ? "Repairing" : r1 < r2 ? "ERROR" : "Leaked", (int64_t)i, r1, r2);
        if (fixed) {
            uint64_t d = r1 > r2 ? r1 - r2 : r2 - r1;
            if (qcow2_update_refcount(bs, i << s->cluster_bits, 1, d, r1 > r2, QCOW2_DISCARD_ALWAYS) >= 0) {
                (*fixed)++;
                continue;
            }
        }
        if (r1 < r2)
            res->corruptions++;
        else
            res->leaks++;
    }
}

/* Find cnt free clusters in the in-memory table from *first on, growing it
 * past the end when needed; marks them used. */
static int64_t imrt_alloc(struct qcow2_state *s, struct imrt *t, uint64_t cnt, uint64_t *first)
{
    uint64_t c = *first, run = 0;
    bool first_gap = true;

    for (; c < t->n && run < cnt; c++) {
        if (!imrt_get(s, t, c)) {
            run++;
            if (first_gap) {
                *first = c;
                first_gap = false;
            }
        } else {
            run = 0;
        }
    }
    if (run < cnt && imrt_resize(s, t, c + cnt - run) < 0)
        return -ENOMEM;
    c -= run;
    for (uint64_t i = 0; i < cnt; i++)
        qcow2_refcount_set(t->a, c + i, s->refcount_order, 1);
    return (int64_t)(c << s->cluster_bits);
}

/* Write refblocks for allocated clusters in [first, end); returns 1 when the
 * on-disk reftable array grew, 0 if not, or -errno. */
static int write_refblocks(struct bds *bs, struct imrt *t, uint64_t first, uint64_t end,
                           uint64_t **rt, uint64_t *rt_n)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t rbsize = 1ULL << s->rb_bits, first_free = 0;
    int grown = 0, r;

    for (uint64_t c = first; c < end; c++) {
        if (!imrt_get(s, t, c))
            continue;
        uint64_t idx = c >> s->rb_bits, start = idx << s->rb_bits, rb_off;
        if (*rt_n > idx && (*rt)[idx]) {
            rb_off = (*rt)[idx];
        } else {
            if (first_free < start)
                first_free = start;
            int64_t a = imrt_alloc(s, t, 1, &first_free);
            if (a < 0)
                return (int)a;
            rb_off = (uint64_t)a;
            if ((rb_off >> s->cluster_bits) >= end)
                end = (rb_off >> s->cluster_bits) + 1;
            if (*rt_n <= idx) {
                uint64_t nn = align_up_u64((idx + 1) * 8, s->cluster_size) / 8;
                uint64_t *p = realloc(*rt, nn * 8);
                if (!p)
                    return -ENOMEM;
                memset(p + *rt_n, 0, (nn - *rt_n) * 8);
                *rt = p;
                *rt_n = nn;
                grown = 1;
            }
            (*rt)[idx] = rb_off;
        }
        /* The slice of the in-memory array is exactly the block. */
        if (imrt_bytes(s, t->n) < (idx + 1) * s->cluster_size &&
            imrt_resize(s, t, (idx + 1) * rbsize) < 0)
            return -ENOMEM;
        /* Against the old structures still in memory, like qemu: an old
         * refblock entry the new block would overwrite (even a corrupt,
         * unaligned one) fails the rebuild. */
        r = qcow2_overlap_check(bs, rb_off, s->cluster_size, false);
        if (r == 0)
            r = blk_pwrite(bs->file, rb_off, s->cluster_size, t->a + idx * s->cluster_size, 0);
        if (r < 0)
            return r;
        c = start + rbsize - 1;
    }
    return grown;
}

static int rebuild_refcounts(struct bds *bs, struct blk_check_result *res, struct imrt *t,
                             struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t *rt = NULL, rt_n = 0, rt_off = 0, rt_clusters = 0;
    int grown, r;

    qcow2_cache_drop_all(&s->rb_cache);
    grown = write_refblocks(bs, t, 0, t->n, &rt, &rt_n);
    if (grown < 0) {
        res->check_errors++;
        r = err_set_errno(err, -grown, "ERROR writing refblock");
        goto fail;
    }
    do {
        uint64_t first_free = 0;
        rt_clusters = qcow2_size_to_clusters(s, rt_n * 8);
        int64_t a = imrt_alloc(s, t, rt_clusters, &first_free);
        if (a < 0) {
            res->check_errors++;
            r = err_set_errno(err, (int)-a, "ERROR allocating reftable");
            goto fail;
        }
        rt_off = (uint64_t)a;
        uint64_t sc = rt_off >> s->cluster_bits;
        grown = write_refblocks(bs, t, sc, sc + rt_clusters, &rt, &rt_n);
        if (grown < 0) {
            res->check_errors++;
            r = err_set_errno(err, -grown, "ERROR writing refblock");
            goto fail;
        }
    } while (grown);
    {
        uint8_t *raw = calloc(rt_n, 8), hdr[12];
        if (!raw) {
            r = -ENOMEM;
            goto fail;
        }
        for (uint64_t i = 0; i < rt_n; i++)
            put_be64(raw + 8 * i, rt[i]);
        r = qcow2_overlap_check(bs, rt_off, rt_n * 8, false);
        if (r == 0)
            r = blk_pwrite(bs->file, rt_off, rt_n * 8, raw, 0);
        free(raw);
        if (r < 0) {
            err_set_errno(err, -r, "ERROR writing reftable");
            goto fail;
        }
        put_be64(hdr, rt_off);
        put_be32(hdr + 8, (uint32_t)rt_clusters);
        r = blk_pwrite(bs->file, QH_REFTABLE_OFFSET, 12, hdr, 0);
        if (r == 0)
            r = blk_flush(bs->file);
        if (r < 0) {
            err_set_errno(err, -r, "ERROR setting reftable");
            goto fail;
        }
    }
    free(s->reftable);
    s->reftable = rt;
    s->reftable_size = s->reftable_loaded = rt_n;
    s->reftable_offset = rt_off;
    s->free_cluster_index = 0;
    return 0;
fail:
    free(rt);
    return r;
}

static int check_oflag_copied(struct bds *bs, struct blk_check_result *res, int fix,
                              const struct imrt *t)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *l2 = malloc(s->cluster_size);
    bool repair, fast;
    int r = 0;

    if (!l2)
        return -ENOMEM;
    fast = t->exact && s->refcount_order == 4 && !qcow2_has_data_file(s);
    if (fix & BLK_FIX_ERRORS)
        repair = true;
    else if (fix & BLK_FIX_LEAKS)
        repair = !res->check_errors && !res->corruptions && !res->leaks;
    else
        repair = false;

    /* Refcount repairs stay cached (read back through the cache): as in
     * qemu they reach the disk only when the check completes. */
    r = qcow2_cache_flush(bs, &s->l2_cache);
    if (r < 0)
        goto out;
    /* The loop reads and repairs L2 tables on disk, past the cache: drop
     * every cached table once here (nothing in the loop caches one), not
     * table by table, which cost L1 entries times cache slots (a fuzzed
     * image with 512-byte clusters and a 32768-entry L1: 10^9 steps). */
    qcow2_cache_drop_all(&s->l2_cache);
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e1 = s->l1[i], l2off = e1 & QCOW2_L1E_OFFSET_MASK, ref;
        uint64_t rb_idx = UINT64_MAX;   /* refcount block in rb (none yet) */
        uint8_t *rb = NULL;
        int dirty = 0;
        if (!l2off)
            continue;
        if (disk_refcount(bs, t, l2off >> s->cluster_bits, &ref) < 0)
            continue;
        if ((ref == 1) != ((e1 & QCOW2_OFLAG_COPIED) != 0)) {
            res->corruptions++;
            blk_check_log(res, "%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%" PRIx64 " refcount=%" PRIu64,
                          repair ? "Repairing" : "ERROR", (int)i, e1, ref);
            if (repair) {
                s->l1[i] = ref == 1 ? e1 | QCOW2_OFLAG_COPIED : e1 & ~QCOW2_OFLAG_COPIED;
                if ((r = qcow2_write_l1_entry(bs, i)) < 0) {
                    res->check_errors++;
                    goto out;
                }
                res->corruptions--;
                res->corruptions_fixed++;
            }
        }
        r = blk_pread(bs->file, l2off, s->cluster_size, l2);
        if (r < 0) {
            blk_check_log(res, "ERROR: Could not read L2 table: %s", strerror(-r));
            res->check_errors++;
            goto out;
        }
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2e_get(s, l2, j), d = e & QCOW2_L2E_OFFSET_MASK;
            if (!e || (e & QCOW2_OFLAG_COMPRESSED))
                continue;
            /* the common case, decided from the in-memory refcounts */
            if (fast && d && (d >> s->cluster_bits) < t->n &&
                (get_be16(t->a + 2 * (d >> s->cluster_bits)) == 1) == ((e & QCOW2_OFLAG_COPIED) != 0))
                continue;
            bool alloc = d || (qcow2_has_data_file(s) && (e & QCOW2_OFLAG_COPIED));
            if (!alloc)
                continue;
            if (qcow2_has_data_file(s)) {
                ref = 1;
            } else if (t->exact && (d >> s->cluster_bits) < t->n) {
                ref = qcow2_refcount_get(t->a, d >> s->cluster_bits, s->refcount_order);
            } else {
                /* One cache lookup per refcount block, not per cluster:
                 * nothing else uses the refcount cache in this loop. */
                uint64_t c = d >> s->cluster_bits;
                if (c >> s->rb_bits != rb_idx) {
                    rb_idx = UINT64_MAX;
                    if (qcow2_get_refblock(bs, c, &rb) < 0)
                        continue;
                    rb_idx = c >> s->rb_bits;
                }
                c &= (1ULL << s->rb_bits) - 1;
                ref = !rb ? 0 : s->refcount_order == 4 ? get_be16(rb + 2 * c)
                                                       : qcow2_refcount_get(rb, c, s->refcount_order);
            }
            if ((ref == 1) != ((e & QCOW2_OFLAG_COPIED) != 0)) {
                res->corruptions++;
                blk_check_log(res, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
                              repair ? "Repairing" : "ERROR", e, ref);
                if (repair) {
                    qcow2_l2e_set(s, l2, j, ref == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED);
                    dirty++;
                }
            }
        }
        if (dirty) {
            r = qcow2_overlap_check(bs, l2off, s->cluster_size, true);
            if (r < 0) {
                blk_check_log(res, "ERROR: Could not write L2 table; metadata overlap check failed: %s",
                              strerror(-r));
                res->check_errors++;
                goto out;
            }
            r = blk_pwrite(bs->file, l2off, s->cluster_size, l2, 0);
            if (r < 0) {
                blk_check_log(res, "ERROR: Could not write L2 table: %s", strerror(-r));
                res->check_errors++;
                goto out;
            }
            res->corruptions -= dirty;
            res->corruptions_fixed += dirty;
        }
    }
    r = 0;
out:
    free(l2);
    return r;
}

static int check_refcounts(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct imrt t = { NULL, 0, 0, false };
    struct blk_check_result pre;
    bool rebuild = false;
    uint64_t highest = 0;
    int64_t flen;
    int r;

    flen = blk_getlength(bs->file);
    if (flen < 0) {
        res->check_errors++;
        return (int)flen;
    }
    if (qcow2_size_to_clusters(s, (uint64_t)flen) > INT32_MAX) {
        res->check_errors++;
        return -EFBIG;
    }
    res->total_clusters = qcow2_size_to_clusters(s, bs->total_size);
    res->has_total_clusters = true;
    if ((r = imrt_resize(s, &t, qcow2_size_to_clusters(s, (uint64_t)flen))) < 0) {
        res->check_errors++;
        return r;
    }
    r = calculate_refcounts(bs, res, fix, &rebuild, &t);
    if (r < 0)
        goto out;
    pre = *res;
    compare_refcounts(bs, res, 0, &rebuild, &highest, &t);

    if (rebuild && (fix & BLK_FIX_ERRORS)) {
        struct blk_check_result old = *res;
        int64_t fresh_leaks = 0;

        blk_check_log(res, "Rebuilding refcount structure");
        r = rebuild_refcounts(bs, res, &t, err);
        if (r < 0)
            goto out;
        res->corruptions = 0;
        res->leaks = 0;
        rebuild = false;
        memset(t.a, 0, imrt_bytes(s, t.n));
        /* count clusters again from scratch (statistics too) */
        res->allocated_clusters = res->fragmented_clusters = res->compressed_clusters = 0;
        r = calculate_refcounts(bs, res, 0, &rebuild, &t);
        if (r < 0)
            goto out;
        if (fix & BLK_FIX_LEAKS) {
            struct blk_check_result saved = *res, tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.log = res->log;
            tmp.log_opaque = res->log_opaque;
            compare_refcounts(bs, &tmp, BLK_FIX_LEAKS, &rebuild, &highest, &t);
            if (rebuild)
                blk_check_log(res, "ERROR rebuilt refcount structure is still broken");
            fresh_leaks = tmp.leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions)
            res->corruptions_fixed += old.corruptions - res->corruptions;
        if (res->leaks < old.leaks)
            res->leaks_fixed += old.leaks - res->leaks;
        res->leaks += fresh_leaks;
    } else if (fix) {
        if (rebuild) {
            blk_check_log(res, "ERROR need to rebuild refcount structures");
            res->check_errors++;
            r = -EIO;
            goto out;
        }
        if (res->leaks || res->corruptions) {
            *res = pre;
            compare_refcounts(bs, res, fix, &rebuild, &highest, &t);
        }
    }
    r = check_oflag_copied(bs, res, fix, &t);
    if (r < 0)
        goto out;
    res->image_end_offset = (int64_t)((highest + 1) * s->cluster_size);
    r = 0;
out:
    free(t.a);
    return r;
}

/* qemu's check begins by reading the snapshot table itself (a check open
 * leaves it unvalidated): a table it cannot use ends the check with an
 * "ERROR ..." line and "Check failed", and v3 entries without the disk size
 * in their extra data are corruptions. qemu's -r repairs of an oversized
 * table (dropping entries or extra data) are not done here: with fix those
 * images fail the check like without. */
static int check_snapshot_table(struct bds *bs, struct blk_check_result *res, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t p[12];
    struct err e;
    int r;

    r = blk_pread(bs->file, QH_NB_SNAPSHOTS, sizeof(p), p);
    if (r < 0) {
        res->check_errors++;
        return err_set(err, -r, "ERROR failed to read the snapshot table pointer from the "
                       "image header: %s", strerror(-r));
    }
    uint32_t nb = get_be32(p);
    uint64_t off = get_be64(p + 4);

    err_init(&e);
    r = qcow2_validate_table(s, off, nb, QCOW2_SNAPSHOT_HEADER_LEN,
                             (uint64_t)QCOW2_SNAPSHOT_HEADER_LEN * QCOW2_MAX_SNAPSHOTS,
                             "snapshot table", &e);
    if (r < 0) {
        res->check_errors++;
        qcow2_free_snapshots(s);
        s->nb_snapshots = 0;
        s->snapshots_offset = 0;
        if (nb > QCOW2_MAX_SNAPSHOTS)
            return err_set(err, -r, "ERROR %s\nYou can force-remove all %" PRIu32
                           " overhanging snapshots with qemu-img check -r all", e.msg,
                           nb - QCOW2_MAX_SNAPSHOTS);
        return err_set(err, -r, "ERROR %s", e.msg);
    }
    if (!s->snapshots && nb) {
        /* open read it and failed: read it again for the message */
        s->nb_snapshots = nb;
        s->snapshots_offset = off;
        r = qcow2_read_snapshots(bs, &e);
        if (r < 0) {
            res->check_errors++;
            s->nb_snapshots = 0;
            s->snapshots_offset = 0;
            return err_set(err, -r, "ERROR failed to read the snapshot table: %s", e.msg);
        }
    }
    if (s->version >= 3) {
        for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
            if (s->snapshots[i].extra_size < 16) {
                res->corruptions++;
                blk_check_log(res, "ERROR snapshot table entry %" PRIu32 " is incomplete", i);
            }
        }
    }
    return 0;
}

int qcow2_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if (fix && !s->writable)
        fix = 0;
    r = check_snapshot_table(bs, res, err);
    if (r < 0)
        return r;
    r = qcow2_meta_flush(bs);
    if (r < 0) {
        res->check_errors++;
        return r;
    }
    r = check_refcounts(bs, res, fix, err);
    if (r < 0)
        return r;
    r = qcow2_meta_flush(bs);
    if (r < 0)
        return r;
    if (fix && res->check_errors == 0 && res->corruptions == 0) {
        r = qcow2_mark_clean(bs);
        if (r < 0)
            return r;
        return qcow2_mark_consistent(bs);
    }
    return 0;
}
