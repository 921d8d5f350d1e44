/* QED (QEMU Enhanced Disk) driver: shared state and helpers of qed.c,
 * qed-table.c and qed-check.c (docs/interop/qed_spec.txt, "Header",
 * "Tables", "Consistency checking").
 *
 * Invariants once open succeeded: cluster_size is a power of two in
 * [4 KiB, 64 MiB], table_size a power of two in [1, 16], the L1 table lies
 * inside the file, and file_size is the file length rounded down to a
 * cluster (new clusters are appended there). */
#ifndef QIMG_FORMATS_QED_H
#define QIMG_FORMATS_QED_H

#include <stdbool.h>
#include <stdint.h>

#include "block/driver.h"

#define QED_MAGIC 0x00444551u            /* "QED\0" little-endian */
#define QED_HEADER_LEN 64

/* Header field offsets (all little-endian). */
enum {
    QEDH_MAGIC = 0,
    QEDH_CLUSTER_SIZE = 4,
    QEDH_TABLE_SIZE = 8,
    QEDH_HEADER_SIZE = 12,
    QEDH_FEATURES = 16,
    QEDH_COMPAT_FEATURES = 24,
    QEDH_AUTOCLEAR_FEATURES = 32,
    QEDH_L1_TABLE_OFFSET = 40,
    QEDH_IMAGE_SIZE = 48,
    QEDH_BACKING_NAME_OFFSET = 56,
    QEDH_BACKING_NAME_SIZE = 60,
};

enum {
    QED_F_BACKING_FILE = 0x01,
    QED_F_NEED_CHECK = 0x02,
    QED_F_BACKING_FORMAT_NO_PROBE = 0x04,
    QED_FEATURE_MASK = 0x07,
    QED_COMPAT_FEATURE_MASK = 0,
    QED_AUTOCLEAR_FEATURE_MASK = 0,
};

#define QED_MIN_CLUSTER_SIZE (4u * 1024)
#define QED_MAX_CLUSTER_SIZE (64u * 1024 * 1024)
#define QED_DEFAULT_CLUSTER_SIZE 65536u
#define QED_MIN_TABLE_SIZE 1u
#define QED_MAX_TABLE_SIZE 16u
#define QED_DEFAULT_TABLE_SIZE 4u

/* Data cluster markers in L2 entries. */
#define QED_OFF_UNALLOC 0
#define QED_OFF_ZERO 1

struct qed_header {
    uint32_t magic, cluster_size, table_size, header_size;
    uint64_t features, compat_features, autoclear_features;
    uint64_t l1_table_offset, image_size;
    uint32_t backing_name_offset, backing_name_size;
};

#define QED_L2_CACHE_SIZE 8

struct qed_l2_entry {
    uint64_t offset;          /* 0 = empty slot */
    uint64_t *table;          /* table_nelems entries, host order */
    uint64_t used;            /* LRU stamp */
};

struct qed_state {
    struct qed_header h;
    uint64_t *l1;
    uint32_t table_nelems;
    unsigned l2_shift, l1_shift;
    uint32_t l2_mask;
    uint64_t file_size;
    bool writable;
    struct qed_l2_entry cache[QED_L2_CACHE_SIZE];
    uint64_t clock;
};

/* What a position maps to (qemu's QED_CLUSTER_*). */
enum qed_kind { QED_FOUND, QED_ZERO, QED_NO_L2_ENTRY, QED_NO_L1_ENTRY };

static inline struct qed_state *qed_st(struct bds *bs) { return bs->opaque; }
static inline uint64_t qed_table_bytes(const struct qed_state *s)
{
    return (uint64_t)s->h.cluster_size * s->h.table_size;
}
static inline uint64_t qed_start_of_cluster(const struct qed_state *s, uint64_t off)
{
    return off & ~(uint64_t)(s->h.cluster_size - 1);
}
static inline uint64_t qed_offset_into_cluster(const struct qed_state *s, uint64_t off)
{
    return off & (s->h.cluster_size - 1);
}
static inline uint32_t qed_l1_index(const struct qed_state *s, uint64_t pos)
{
    return (uint32_t)(pos >> s->l1_shift);
}
static inline uint32_t qed_l2_index(const struct qed_state *s, uint64_t pos)
{
    return (uint32_t)(pos >> s->l2_shift) & s->l2_mask;
}
/* A data cluster offset is usable: aligned, after the header, inside the file. */
static inline bool qed_check_cluster_offset(const struct qed_state *s, uint64_t off)
{
    uint64_t hdr = (uint64_t)s->h.header_size * s->h.cluster_size;
    if (off & (s->h.cluster_size - 1))
        return false;
    return off >= hdr && off < s->file_size;
}
/* A table offset is usable: its first and last cluster are. */
static inline bool qed_check_table_offset(const struct qed_state *s, uint64_t off)
{
    uint64_t end;
    /* qemu tests "end <= off" for overflow, which also refuses every table
     * offset of a table_size 1 image; keep that. */
    if (ckd_add(&end, off, (uint64_t)(s->h.table_size - 1) * s->h.cluster_size) || end <= off)
        return false;
    return qed_check_cluster_offset(s, off) && qed_check_cluster_offset(s, end);
}
/* qemu's qed_bytes_to_clusters divides by (cluster_size - 1); the count it
 * gives for the check's bitmap is kept so leaks are counted as qemu does. */
static inline uint64_t qed_bytes_to_clusters_qemu(const struct qed_state *s, uint64_t bytes)
{
    return qed_start_of_cluster(s, bytes + (s->h.cluster_size - 1)) / (s->h.cluster_size - 1);
}

/* qed-table.c */
int qed_read_l1(struct bds *bs);
int qed_write_l1(struct bds *bs, uint32_t index, uint32_t n);
/* The cached L2 table at offset (read on a miss), or NULL with *ret set. */
uint64_t *qed_get_l2(struct bds *bs, uint64_t offset, int *ret);
/* A fresh, zeroed L2 table for offset placed in the cache. */
uint64_t *qed_new_l2(struct bds *bs, uint64_t offset);
int qed_write_l2(struct bds *bs, uint64_t offset, const uint64_t *table, uint32_t index,
                 uint32_t n);
void qed_cache_clear(struct qed_state *s);
/* Translate pos: kind (or -errno), *len shortened to the contiguous run,
 * *host the first cluster's offset for QED_FOUND. */
int qed_find_cluster(struct bds *bs, uint64_t pos, uint64_t *len, uint64_t *host);
int qed_write_header(struct bds *bs);
void qed_header_encode(const struct qed_header *h, uint8_t *buf);

/* qed-check.c */
int qed_check_image(struct bds *bs, struct blk_check_result *res, bool fix);

#endif
