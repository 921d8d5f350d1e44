/* QED consistency check and repair (qed_spec.txt "Consistency checking").
 *
 * Every L1 and L2 offset must be cluster aligned and inside the file, and
 * every cluster referenced once; unreferenced clusters are leaks. Repair
 * clears invalid offsets (the data they named is lost either way); leaks
 * are only counted, as qemu 7.2 does. The cluster numbering of the
 * reference bitmap follows qemu's qed_bytes_to_clusters exactly, so leak
 * counts match qemu's on every image. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qed/qed.h"

struct qed_check {
    struct bds *bs;
    struct blk_check_result *res;
    bool fix;
    uint64_t nclusters;
    uint32_t *used;
};

static bool test_bit(const struct qed_check *c, uint64_t n)
{
    return n < c->nclusters && (c->used[n / 32] >> (n % 32)) & 1;
}

static void set_bit(struct qed_check *c, uint64_t n)
{
    if (n < c->nclusters)
        c->used[n / 32] |= 1u << (n % 32);
}

/* Mark n clusters from offset referenced; false when one already was. */
static bool set_used(struct qed_check *c, uint64_t offset, uint32_t n)
{
    uint64_t cluster = qed_bytes_to_clusters_qemu(qed_st(c->bs), offset);
    int64_t dup = 0;

    while (n--) {
        if (test_bit(c, cluster))
            dup++;
        set_bit(c, cluster);
        cluster++;
    }
    c->res->corruptions += dup;
    return dup == 0;
}

static uint32_t check_l2(struct qed_check *c, uint64_t *table)
{
    struct qed_state *s = qed_st(c->bs);
    uint64_t last = 0;
    uint32_t invalid = 0;

    for (uint32_t i = 0; i < s->table_nelems; i++) {
        uint64_t off = table[i];
        if (off == QED_OFF_UNALLOC || off == QED_OFF_ZERO)
            continue;
        c->res->allocated_clusters++;
        if (last && last + s->h.cluster_size != off)
            c->res->fragmented_clusters++;
        last = off;
        if (!qed_check_cluster_offset(s, off)) {
            if (c->fix) {
                table[i] = QED_OFF_UNALLOC;
                c->res->corruptions_fixed++;
            } else {
                c->res->corruptions++;
            }
            invalid++;
            continue;
        }
        set_used(c, off, 1);
    }
    return invalid;
}

static int check_l1(struct qed_check *c)
{
    struct bds *bs = c->bs;
    struct qed_state *s = qed_st(bs);
    uint32_t invalid_l1 = 0;
    int r, last_error = 0;

    set_used(c, s->h.l1_table_offset, s->h.table_size);
    for (uint32_t i = 0; i < s->table_nelems; i++) {
        uint64_t off = s->l1[i];
        uint64_t *table;

        if (off == QED_OFF_UNALLOC)
            continue;
        if (!qed_check_table_offset(s, off)) {
            if (c->fix) {
                s->l1[i] = QED_OFF_UNALLOC;
                c->res->corruptions_fixed++;
            } else {
                c->res->corruptions++;
            }
            invalid_l1++;
            continue;
        }
        if (!set_used(c, off, s->h.table_size))
            continue;       /* a table referenced twice is not descended again */
        table = qed_get_l2(bs, off, &r);
        if (!table) {
            c->res->check_errors++;
            last_error = r;
            continue;
        }
        if (check_l2(c, table) > 0 && c->fix) {
            r = qed_write_l2(bs, off, table, 0, s->table_nelems);
            if (r < 0) {
                c->res->check_errors++;
                last_error = r;
            }
        }
    }
    if (invalid_l1 > 0 && c->fix) {
        r = qed_write_l1(bs, 0, s->table_nelems);
        if (r < 0) {
            c->res->check_errors++;
            last_error = r;
        }
    }
    return last_error;
}

int qed_check_image(struct bds *bs, struct blk_check_result *res, bool fix)
{
    struct qed_state *s = qed_st(bs);
    struct qed_check c = { .bs = bs, .res = res, .fix = fix };
    int r;

    c.nclusters = qed_bytes_to_clusters_qemu(s, s->file_size);
    c.used = calloc((size_t)(c.nclusters / 32 + 1), sizeof(uint32_t));
    if (!c.used)
        return -ENOMEM;
    res->total_clusters = div_round_up_u64(s->h.image_size, s->h.cluster_size);
    res->has_total_clusters = true;
    r = check_l1(&c);
    if (r == 0) {
        /* Leaks are only meaningful after a complete scan. */
        for (uint64_t i = s->h.header_size; i < c.nclusters; i++)
            if (!test_bit(&c, i))
                res->leaks++;
        if (fix && res->corruptions == 0 && res->check_errors == 0 &&
            (s->h.features & QED_F_NEED_CHECK)) {
            blk_flush(bs->file);
            s->h.features &= ~(uint64_t)QED_F_NEED_CHECK;
            qed_write_header(bs);
        }
    }
    free(c.used);
    return r;
}
