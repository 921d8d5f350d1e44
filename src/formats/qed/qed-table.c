/* QED tables: header encoding, L1/L2 table I/O with a small L2 cache, and
 * the logical-to-file translation (qed_spec.txt "Tables", "Logical offset
 * translation").
 *
 * Tables are kept in host order; writes re-encode only the 512-byte
 * sectors that hold the changed entries, as qemu does, so the bytes on disk
 * match qemu's for the same sequence of writes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qed/qed.h"

void qed_header_encode(const struct qed_header *h, uint8_t *buf)
{
    put_le32(buf + QEDH_MAGIC, h->magic);
    put_le32(buf + QEDH_CLUSTER_SIZE, h->cluster_size);
    put_le32(buf + QEDH_TABLE_SIZE, h->table_size);
    put_le32(buf + QEDH_HEADER_SIZE, h->header_size);
    put_le64(buf + QEDH_FEATURES, h->features);
    put_le64(buf + QEDH_COMPAT_FEATURES, h->compat_features);
    put_le64(buf + QEDH_AUTOCLEAR_FEATURES, h->autoclear_features);
    put_le64(buf + QEDH_L1_TABLE_OFFSET, h->l1_table_offset);
    put_le64(buf + QEDH_IMAGE_SIZE, h->image_size);
    put_le32(buf + QEDH_BACKING_NAME_OFFSET, h->backing_name_offset);
    put_le32(buf + QEDH_BACKING_NAME_SIZE, h->backing_name_size);
}

/* Rewrite the known header fields in place; the backing name and anything
 * else after them stay untouched. */
int qed_write_header(struct bds *bs)
{
    uint8_t buf[QED_HEADER_LEN];
    qed_header_encode(&qed_st(bs)->h, buf);
    return blk_pwrite(bs->file, 0, sizeof(buf), buf, 0);
}

static int read_table(struct bds *bs, uint64_t offset, uint64_t *table)
{
    struct qed_state *s = qed_st(bs);
    uint64_t bytes = qed_table_bytes(s);
    int r = blk_pread(bs->file, offset, bytes, table);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < s->table_nelems; i++)
        table[i] = get_le64(&table[i]);
    return 0;
}

static int write_table(struct bds *bs, uint64_t offset, const uint64_t *table, uint32_t index,
                       uint32_t n)
{
    struct qed_state *s = qed_st(bs);
    const uint32_t per_sector = 512 / sizeof(uint64_t);
    uint32_t start = index & ~(per_sector - 1);
    uint32_t end = (index + n + per_sector - 1) & ~(per_sector - 1);
    uint8_t *buf;
    int r;

    if (end > s->table_nelems)
        end = s->table_nelems;
    buf = malloc((size_t)(end - start) * 8);
    if (!buf)
        return -ENOMEM;
    for (uint32_t i = start; i < end; i++)
        put_le64(buf + (size_t)(i - start) * 8, table[i]);
    r = blk_pwrite(bs->file, offset + (uint64_t)start * 8, (uint64_t)(end - start) * 8, buf, 0);
    free(buf);
    return r;
}

int qed_read_l1(struct bds *bs)
{
    struct qed_state *s = qed_st(bs);
    return read_table(bs, s->h.l1_table_offset, s->l1);
}

int qed_write_l1(struct bds *bs, uint32_t index, uint32_t n)
{
    struct qed_state *s = qed_st(bs);
    return write_table(bs, s->h.l1_table_offset, s->l1, index, n);
}

int qed_write_l2(struct bds *bs, uint64_t offset, const uint64_t *table, uint32_t index,
                 uint32_t n)
{
    return write_table(bs, offset, table, index, n);
}

void qed_cache_clear(struct qed_state *s)
{
    for (int i = 0; i < QED_L2_CACHE_SIZE; i++) {
        free(s->cache[i].table);
        s->cache[i].table = NULL;
        s->cache[i].offset = 0;
    }
}

/* The slot to reuse: an empty one, else the least recently used. */
static struct qed_l2_entry *victim(struct qed_state *s)
{
    struct qed_l2_entry *v = &s->cache[0];
    /* Tables reach 1 GiB (64 MiB clusters x 16): keep only two of those. */
    int slots = qed_table_bytes(s) >= (64u << 20) ? 2 : QED_L2_CACHE_SIZE;
    for (int i = 0; i < slots; i++) {
        if (!s->cache[i].offset)
            return &s->cache[i];
        if (s->cache[i].used < v->used)
            v = &s->cache[i];
    }
    return v;
}

static uint64_t *slot_table(struct qed_state *s, struct qed_l2_entry *e)
{
    if (!e->table)
        e->table = malloc((size_t)qed_table_bytes(s));
    return e->table;
}

uint64_t *qed_get_l2(struct bds *bs, uint64_t offset, int *ret)
{
    struct qed_state *s = qed_st(bs);
    struct qed_l2_entry *e;

    for (int i = 0; i < QED_L2_CACHE_SIZE; i++) {
        if (s->cache[i].offset == offset) {
            s->cache[i].used = ++s->clock;
            return s->cache[i].table;
        }
    }
    e = victim(s);
    e->offset = 0;
    if (!slot_table(s, e)) {
        *ret = -ENOMEM;
        return NULL;
    }
    *ret = read_table(bs, offset, e->table);
    if (*ret < 0)
        return NULL;
    e->offset = offset;
    e->used = ++s->clock;
    return e->table;
}

uint64_t *qed_new_l2(struct bds *bs, uint64_t offset)
{
    struct qed_state *s = qed_st(bs);
    struct qed_l2_entry *e = NULL;

    for (int i = 0; i < QED_L2_CACHE_SIZE && !e; i++)
        if (s->cache[i].offset == offset)
            e = &s->cache[i];
    if (!e)
        e = victim(s);
    e->offset = 0;
    if (!slot_table(s, e))
        return NULL;
    memset(e->table, 0, (size_t)qed_table_bytes(s));
    e->offset = offset;
    e->used = ++s->clock;
    return e->table;
}

int qed_find_cluster(struct bds *bs, uint64_t pos, uint64_t *len, uint64_t *host)
{
    struct qed_state *s = qed_st(bs);
    uint64_t l2_end = ((pos >> s->l1_shift) + 1) << s->l1_shift;
    uint64_t l2_offset, first, last, want;
    uint32_t index, end, i;
    uint64_t *table;
    int r;

    /* One request touches one L2 table at a time. */
    if (l2_end > pos && *len > l2_end - pos)
        *len = l2_end - pos;
    *host = 0;
    l2_offset = s->l1[qed_l1_index(s, pos)];
    if (l2_offset == 0)
        return QED_NO_L1_ENTRY;
    if (!qed_check_table_offset(s, l2_offset))
        return -EINVAL;
    table = qed_get_l2(bs, l2_offset, &r);
    if (!table)
        return r;

    index = qed_l2_index(s, pos);
    want = div_round_up_u64(qed_offset_into_cluster(s, pos) + *len, s->h.cluster_size);
    end = (uint32_t)min_u64((uint64_t)index + want, s->table_nelems);
    first = last = table[index];
    for (i = index + 1; i < end; i++) {
        uint64_t o = table[i];
        if (first == QED_OFF_UNALLOC || first == QED_OFF_ZERO) {
            if (o != first)
                break;
        } else {
            if (o != last + s->h.cluster_size)
                break;
            last = o;
        }
    }
    *len = min_u64(*len, (uint64_t)(i - index) * s->h.cluster_size -
                         qed_offset_into_cluster(s, pos));
    *host = first;
    if (first == QED_OFF_UNALLOC)
        return QED_NO_L2_ENTRY;
    if (first == QED_OFF_ZERO)
        return QED_ZERO;
    if (!qed_check_cluster_offset(s, first))
        return -EINVAL;
    return QED_FOUND;
}
