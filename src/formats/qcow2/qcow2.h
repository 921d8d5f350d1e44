/* qcow2 driver state and the functions the qcow2 files share.
 *
 * Invariants while open: l1 holds l1_size host-endian entries; reftable holds
 * reftable_size entries; every table offset was checked to be cluster aligned
 * and inside the limits when read. Metadata changes go through the two caches
 * (L2 tables, refcount blocks); the ordering rules (refcount blocks reach the
 * disk before the L2 entries that depend on them, L2 tables before the L1
 * entries that point to them, and decreases after the L2 change) are kept by
 * qcow2_meta_flush() and by the callers noted in qcow2-cluster.c. */
#ifndef QIMG_QCOW2_H
#define QIMG_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#include "block/driver.h"
#include "formats/qcow2/qcow2-layout.h"

extern const struct blk_driver qcow2_driver;

/* --- metadata cache (qcow2-cache.c) --- */
struct qcow2_cache_entry {
    uint64_t offset;        /* host offset of the cached cluster, 0 = free slot */
    uint8_t *buf;
    bool dirty;
    uint64_t lru;
};

struct qcow2_cache {
    struct qcow2_cache_entry *e;
    unsigned n;
    unsigned hwm;           /* slots [hwm, n) were never used: scans stop at hwm */
    size_t size;            /* bytes per entry (one cluster) */
    uint64_t tick;
};

struct qcow2_unknown_ext {
    uint32_t magic, len;
    uint8_t *data;
};

struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id_str, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;
    bool has_disk_size, has_icount;
    uint32_t extra_size;
    uint8_t *extra;         /* unknown extra data beyond what we decode */
};

/* Why clusters are freed, which decides whether the file gets a discard
 * (hole punch) for them: qemu's enum qcow2_discard_type and its
 * pass-discard-* defaults (see qcow2_open). */
enum qcow2_discard_type {
    QCOW2_DISCARD_NEVER,
    QCOW2_DISCARD_ALWAYS,
    QCOW2_DISCARD_REQUEST,      /* guest discard / zero write that may unmap */
    QCOW2_DISCARD_SNAPSHOT,     /* snapshot delete/apply, make_empty */
    QCOW2_DISCARD_OTHER,        /* old metadata tables */
    QCOW2_DISCARD_MAX
};

struct qcow2_discard {
    uint64_t offset, len;
};

struct qcow2_state {
    /* header */
    uint32_t version;
    unsigned cluster_bits;
    uint64_t cluster_size;
    uint32_t header_length;
    uint64_t incompat, compat, autoclear;
    unsigned refcount_order;
    uint64_t refcount_max;
    uint8_t compression_type;
    uint32_t crypt_method;

    bool extl2;
    unsigned l2_bits;           /* log2 of entries per L2 table */
    uint64_t l2_entries;
    unsigned l2_entry_size;     /* 8 or 16 */
    unsigned subcluster_bits;
    unsigned rb_bits;           /* log2 of refcount entries per block */

    uint64_t *l1;
    uint32_t l1_size;
    uint64_t l1_offset;

    uint64_t *reftable;         /* allocated for reftable_size entries */
    uint64_t reftable_size;     /* entries */
    uint64_t reftable_loaded;   /* entries read so far (a prefix; all when writable) */
    uint64_t reftable_offset;

    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;    /* bytes, computed when read */
    struct qcow2_snapshot *snapshots;

    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_offset, bitmap_dir_size;
    uint64_t crypto_hdr_offset, crypto_hdr_len;
    struct qcow2_crypt *crypt;  /* qcow2-crypt.c: cipher state, NULL if none */
    struct qcow2_bitmaps *bitmaps; /* qcow2-bitmap.c: loaded bitmaps, NULL if none */

    char *image_backing_file;
    char *image_backing_format;
    char *image_data_file;
    struct bds *data_file;      /* bs->file or the external data file */
    bool own_data_file;

    uint8_t *unknown_fields;    /* header bytes between 112 and header_length */
    uint32_t unknown_fields_len;
    struct qcow2_unknown_ext *uexts;
    unsigned n_uexts;

    struct qcow2_cache l2_cache;
    struct qcow2_cache rb_cache;
    bool need_file_flush;       /* data written since the last flush barrier */
    bool meta_prealloc_checked; /* meta_prealloc below is valid */
    bool meta_prealloc;         /* file looks metadata-preallocated (qemu heuristic) */

    bool discard_pass[QCOW2_DISCARD_MAX];
    struct qcow2_discard *discards; /* freed host ranges waiting for a discard */
    size_t n_discards, cap_discards;
    bool cache_discards;        /* batch: queue until qcow2_process_discards */

    uint64_t free_cluster_index;
    uint64_t free_byte_offset;  /* for compressed clusters */

    /* last decompressed cluster */
    uint8_t *cbuf;              /* decompressed data, one cluster */
    uint8_t *cin;               /* compressed input, up to 2 clusters */
    uint64_t cbuf_entry;        /* L2 entry cbuf holds, 0 = none */

    bool writable;
    bool wrote_compressed;      /* round the file to 512 bytes at close */
    bool lazy_refcounts_dirty;  /* we set the dirty bit for lazy refcounts */
    bool use_lazy_refcounts;    /* the header's bit, or the lazy-refcounts option */
    bool corrupt_signalled;
    bool unusable;              /* a fatal corruption event happened (qemu: drv = NULL) */
};

static inline struct qcow2_state *qcow2_st(struct bds *bs) { return bs->opaque; }
static inline uint64_t qcow2_off_in_cluster(const struct qcow2_state *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}
static inline uint64_t qcow2_size_to_clusters(const struct qcow2_state *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}
static inline uint64_t qcow2_l1_index(const struct qcow2_state *s, uint64_t off)
{
    return off >> (s->l2_bits + s->cluster_bits);
}
static inline uint64_t qcow2_l2_index(const struct qcow2_state *s, uint64_t off)
{
    return (off >> s->cluster_bits) & (s->l2_entries - 1);
}
static inline uint64_t qcow2_l2e_get(const struct qcow2_state *s, const uint8_t *t, uint64_t i)
{
    return get_be64(t + i * s->l2_entry_size);
}
static inline uint64_t qcow2_l2b_get(const struct qcow2_state *s, const uint8_t *t, uint64_t i)
{
    return s->extl2 ? get_be64(t + i * 16 + 8) : 0;
}
static inline void qcow2_l2e_set(const struct qcow2_state *s, uint8_t *t, uint64_t i, uint64_t v)
{
    put_be64(t + i * s->l2_entry_size, v);
}
static inline void qcow2_l2b_set(const struct qcow2_state *s, uint8_t *t, uint64_t i, uint64_t v)
{
    if (s->extl2)
        put_be64(t + i * 16 + 8, v);
}
static inline bool qcow2_has_data_file(const struct qcow2_state *s)
{
    return s->incompat & QCOW2_INCOMPAT_DATA_FILE;
}
/* Number of L1 entries needed to map size bytes. */
static inline uint64_t qcow2_size_to_l1(unsigned cluster_bits, unsigned l2_bits, uint64_t size)
{
    unsigned shift = cluster_bits + l2_bits;
    return (size + (1ULL << shift) - 1) >> shift;
}

/* qcow2-cache.c */
int qcow2_cache_init(struct qcow2_cache *c, unsigned n, size_t size);
void qcow2_cache_release(struct qcow2_cache *c);
/* Returns the cached cluster at offset (read from disk unless empty). */
int qcow2_cache_get(struct bds *bs, struct qcow2_cache *c, uint64_t offset, bool empty,
                    uint8_t **buf);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, const uint8_t *buf);
/* The cached cluster at offset, or NULL (nothing is read or evicted). */
uint8_t *qcow2_cache_lookup(struct qcow2_cache *c, uint64_t offset);
int qcow2_cache_flush(struct bds *bs, struct qcow2_cache *c);
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset);
void qcow2_cache_drop_all(struct qcow2_cache *c);
/* Write all dirty metadata in crash-safe order. */
int qcow2_meta_flush(struct bds *bs);

/* qcow2-refcount.c */
int qcow2_refcount_init(struct bds *bs, struct err *err);

/* qcow2-options.c: validate the node's runtime options as qemu does at open
 * (its messages) and apply lazy-refcounts and pass-discard-*. opts may be
 * NULL. */
int qcow2_runtime_options(struct bds *bs, const struct kvopts *opts, uint64_t virtual_size,
                          struct err *err);
/* Make sure reftable entries [0, n) are read (read-only nodes read the
 * table lazily). */
int qcow2_reftable_load(struct bds *bs, uint64_t n);
int qcow2_get_refcount(struct bds *bs, uint64_t cluster, uint64_t *ref);
/* The refcount block that holds cluster's refcount, NULL when there is none
 * (refcount 0), with qcow2_get_refcount's errors. The buffer belongs to
 * the refcount cache: valid until its next get or drop. */
int qcow2_get_refblock(struct bds *bs, uint64_t cluster, uint8_t **blk);
/* *count = clusters in [start, end) with a nonzero refcount, counted one
 * refcount block at a time until it reaches limit (it may pass it). */
int qcow2_count_referenced(struct bds *bs, uint64_t start, uint64_t end, uint64_t limit,
                           uint64_t *count);
/* Call fn on the refcount entries [from, to) of the refcount block at
 * offset rb_off (entry indices within the block), piece by piece: from the
 * refcount cache when the block is there (it may be newer than the disk),
 * else read from the file through a small buffer, so that a scan that
 * reads each block once does not fault in a cache buffer for it (fresh
 * pages cost more than the reads). pos is the first entry of each piece;
 * fn returns false to stop (then 1 is returned). */
typedef bool (*qcow2_rb_scan_fn)(void *opaque, const uint8_t *p, uint64_t pos, uint64_t n);
int qcow2_scan_refblock(struct bds *bs, uint64_t rb_off, uint64_t from, uint64_t to,
                        qcow2_rb_scan_fn fn, void *opaque);
int qcow2_update_refcount(struct bds *bs, uint64_t offset, uint64_t len, uint64_t addend,
                          bool decrease, enum qcow2_discard_type type);
int64_t qcow2_alloc_clusters(struct bds *bs, uint64_t size);
int64_t qcow2_alloc_clusters_at(struct bds *bs, uint64_t offset, uint64_t n);
int64_t qcow2_alloc_bytes(struct bds *bs, uint64_t size);
/* Frees: clusters whose refcount reaches 0 are discarded on the file when
 * type passes (at once, or at qcow2_process_discards while cache_discards
 * is set; ret < 0 drops the queue without discarding). */
void qcow2_free_clusters(struct bds *bs, uint64_t offset, uint64_t size,
                         enum qcow2_discard_type type);
void qcow2_free_any_cluster(struct bds *bs, uint64_t l2_entry, enum qcow2_discard_type type);
void qcow2_process_discards(struct bds *bs, int ret);
int64_t qcow2_refcount_area(struct bds *bs, uint64_t start, uint64_t additional,
                            bool exact, uint64_t new_rb_index, uint64_t new_rb_offset);
uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      unsigned refcount_order, bool generous,
                                      uint64_t *refblock_count);
int64_t qcow2_last_cluster(struct bds *bs, uint64_t file_size);
/* The metadata [off, off+len) of the file would overwrite (qemu's default
 * overlap-check set), or NULL. */
const char *qcow2_metadata_overlap(struct bds *bs, uint64_t off, uint64_t len, bool skip_active_l2);
/* Before guest data goes to host [off, off+len): -EIO with a corruption
 * event when it would hit metadata. */
int qcow2_pre_write_check(struct bds *bs, uint64_t off, uint64_t len);
/* The same for a metadata write (always checked; the corruption event too). */
int qcow2_overlap_check(struct bds *bs, uint64_t off, uint64_t len, bool skip_active_l2);

/* qcow2-cluster.c */
/* Look up [off, off+*len): type, host offset of off (when applicable) and the
 * length of the run with the same type (and contiguous host offsets). */
int qcow2_get_host_offset(struct bds *bs, uint64_t off, uint64_t *len, uint64_t *host,
                          enum qcow2_sc_type *type, uint64_t *entry);
int qcow2_grow_l1(struct bds *bs, uint64_t min_size, bool exact);
int qcow2_write_l1_entry(struct bds *bs, uint64_t index);
/* L2 table for guest offset off, allocating it if alloc; *table NULL when
 * absent and !alloc. */
int qcow2_get_l2(struct bds *bs, uint64_t off, bool alloc, uint8_t **table);
int qcow2_write_data(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf);
/* driver.h pwrite_map/pwrite_commit: whole unallocated clusters of a plain
 * image allocated under the lock, their data written by the caller. */
int qcow2_pwrite_map(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                     uint64_t *host, struct bds **file);
int qcow2_pwrite_commit(struct bds *bs, uint64_t off, uint64_t len, uint64_t host, int ret);
int qcow2_zeroize(struct bds *bs, uint64_t off, uint64_t len, bool unmap);
int qcow2_discard_clusters(struct bds *bs, uint64_t off, uint64_t len, bool full,
                           enum qcow2_discard_type type);
int qcow2_preallocate(struct bds *bs, uint64_t from, uint64_t to, enum blk_prealloc mode,
                      struct err *err);

/* qcow2.c */
int qcow2_do_pread(struct bds *bs, uint64_t off, uint64_t len, uint8_t *buf);
int qcow2_update_header(struct bds *bs);
int qcow2_mark_dirty(struct bds *bs);
int qcow2_mark_clean(struct bds *bs);
/* Like qcow2_mark_clean, but rewrites only the incompatible-features field
 * (as qcow2_mark_dirty sets it), not the whole header cluster: for a window
 * qimg guards where qemu does not, so the file's allocation stays qemu's. */
int qcow2_clear_dirty(struct bds *bs);
int qcow2_mark_corrupt(struct bds *bs);
int qcow2_mark_consistent(struct bds *bs);
/* qemu's corruption event: message through blk_message(); when fatal and
 * the image is writable, set the corrupt bit and refuse further I/O. */
void qcow2_signal_corruption(struct bds *bs, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), nonnull(1, 3)));
int qcow2_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                   struct err *err);

/* qcow2-compress.c */
/* Decompress src into exactly dlen bytes of dst; -EIO on bad data. */
int qcow2_decompress(int type, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen);
/* Compress; returns the compressed length, or -ENOSPC when it would not be
 * smaller than dlen. */
long qcow2_compress(int type, int level, const uint8_t *src, size_t slen, uint8_t *dst,
                    size_t dlen);
int qcow2_read_compressed(struct bds *bs, uint64_t entry, uint8_t *out);
/* The same without the one-cluster cache or any node state: cin holds
 * 2 clusters. For reads outside the node lock. */
int qcow2_read_compressed_into(struct bds *bs, uint64_t entry, uint8_t *out, uint8_t *cin);
int qcow2_write_compressed(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf);
/* The driver's two-step compressed write (driver.h compress/pwrite_compressed). */
long qcow2_compress_op(struct bds *bs, const void *buf, size_t len, void *dst, size_t cap);
int qcow2_pwrite_compressed_op(struct bds *bs, uint64_t off, uint64_t len, const void *buf,
                               const void *payload, long plen);

/* qcow2-create.c */
extern const struct opt_desc qcow2_create_opts[];
extern const struct opt_desc qcow2_amend_opts[];
int qcow2_create(const char *filename, struct kvopts *opts, struct err *err);
int qcow2_measure(struct kvopts *opts, struct bds *in, uint64_t size, struct blk_measure *out,
                  struct err *err);

/* qcow2.c: a table of ENTRIES * ENTRY_LEN bytes at OFFSET must stay under
 * MAX_BYTES, end below INT64_MAX and start on a cluster boundary ("<NAME> too
 * large" / "<NAME> offset invalid"). */
int qcow2_validate_table(struct qcow2_state *s, uint64_t offset, uint64_t entries,
                         uint64_t entry_len, uint64_t max_bytes, const char *name,
                         struct err *err);

/* qcow2-check.c */
int qcow2_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err);

/* qcow2-snapshot.c */
int qcow2_read_snapshots(struct bds *bs, struct err *err);
void qcow2_free_snapshots(struct qcow2_state *s);
/* Rewrite the in-memory table (s->snapshots) to new clusters, always with
 * at least the 24 known extra bytes, switch the header, free the old one
 * (qemu's qcow2_write_snapshots; amend uses it to upgrade v2 tables). */
int qcow2_write_snapshots(struct bds *bs);
extern const struct blk_snapshot_ops qcow2_snapshot_ops;

/* qcow2-bitmap.c (persistent dirty bitmaps) */
extern const struct blk_bitmap_ops qcow2_bitmap_ops;
/* Open: validate the directory, load the bitmaps, flag them in_use when
 * writable. Close: store them (no message; the bitmaps are lost on error). */
int qcow2_bitmaps_load(struct bds *bs, struct err *err);
int qcow2_bitmaps_store(struct bds *bs, struct err *err);
int qcow2_bitmaps_close(struct bds *bs);
void qcow2_bitmaps_free(struct qcow2_state *s);
/* Guest write/zero/discard of [off, off+len): mark the enabled bitmaps. */
void qcow2_bitmap_note_write(struct bds *bs, uint64_t off, uint64_t len);
/* Resize: refuse with inconsistent bitmaps; resize the loaded ones after. */
int qcow2_bitmaps_truncate_check(struct bds *bs, struct err *err);
void qcow2_bitmaps_resize(struct bds *bs, uint64_t size);
/* info: add the "bitmaps" member to the specific info object when any. */
void qcow2_bitmaps_info(struct bds *bs, json_t *o);
/* check: count the references of the directory, tables and data clusters. */
typedef int (*qcow2_check_inc_fn)(struct bds *bs, struct blk_check_result *res, void *opaque,
                                  uint64_t offset, uint64_t size);
int qcow2_check_bitmaps_refcounts(struct bds *bs, struct blk_check_result *res,
                                  qcow2_check_inc_fn inc, void *opaque);
/* measure: does in (a qcow2 v3 node) carry bitmaps, and their copy's size. */
bool qcow2_bitmaps_supported(struct bds *bs);
uint64_t qcow2_bitmaps_size(struct bds *in, uint64_t cluster_size);

/* qcow2-crypt.c */
struct qcow2_crypt_create {
    uint32_t method;                /* QCOW2_CRYPT_*, NONE = no encryption */
    const char *key_secret;         /* owned by opts */
    const struct kvopts *opts;
};
/* After the header extensions are read: check the encrypt.* runtime
 * options, set up the cipher (header only with BLK_O_NO_IO). */
int qcow2_crypt_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err);
void qcow2_crypt_close(struct qcow2_state *s);
/* Data cluster I/O on s->data_file, deciphered/enciphered when the image
 * is encrypted (512-byte aligned host, guest and len). */
int qcow2_crypt_pread(struct bds *bs, uint64_t host, uint64_t guest, uint64_t len, uint8_t *buf);
int qcow2_crypt_pwrite(struct bds *bs, uint64_t host, uint64_t guest, uint64_t len,
                       const uint8_t *buf);
/* The "encrypt" member of the specific info, or NULL. */
json_t *qcow2_crypt_info(struct bds *bs);
int qcow2_crypt_create_parse(const struct kvopts *o, struct qcow2_crypt_create *out,
                             struct err *err);
/* On the freshly created, sized image: set up encryption as asked. */
int qcow2_crypt_create(struct bds *bs, const struct qcow2_crypt_create *p, struct err *err);
/* LUKS header bytes (cluster aligned) that creation would add. */
int qcow2_crypt_measure(const struct kvopts *opts, uint64_t cluster_size, uint64_t *payload,
                        struct err *err);
/* encrypt.* amend options (LUKS key slots); 0 without any. */
int qcow2_crypt_amend(struct bds *bs, struct kvopts *opts, bool force, struct err *err);

/* qcow2-amend.c */
int qcow2_amend(struct bds *bs, struct kvopts *opts, bool force, struct err *err);

#endif
