/* The block-driver interface: what a format or protocol implements.
 *
 * One `static const struct blk_driver` per driver, filled with designated
 * initializers and listed in registry.c. A NULL operation means "not
 * supported": the core answers -ENOTSUP with qemu-img's message. Data
 * operations receive requests already validated by io.c (inside the node,
 * len > 0) and return 0 or -errno without a message. */
#ifndef QIMG_BLOCK_DRIVER_H
#define QIMG_BLOCK_DRIVER_H

#include "block/blk.h"
#include "util/ckd.h"
#include "util/endian.h"
#include "util/err.h"
#include "util/kvopts.h"

enum blk_kind { BLK_KIND_FORMAT, BLK_KIND_PROTOCOL };
/* How the core serializes a node's operations (bs->lock):
 * SERIALIZE: every operation under the node lock;
 * PARALLEL: none (the driver keeps no state that changes);
 * READS_UNLOCKED_RO: as SERIALIZE, except that pread of a read-only node
 * runs without the lock: the driver takes bs->lock itself around what it
 * shares (metadata caches) and reads data and decompresses outside it, so
 * the engines' workers read one source image at once. */
enum blk_thread_model { BLK_THREAD_SERIALIZE, BLK_THREAD_PARALLEL, BLK_THREAD_READS_UNLOCKED_RO };

struct blk_snapshot_ops {
    /* Returns the number of entries and a malloc'ed array (caller frees). */
    int (*list)(struct bds *bs, struct blk_snapshot **list, struct err *err);
    int (*create)(struct bds *bs, struct blk_snapshot *sn, struct err *err);
    int (*apply)(struct bds *bs, const char *id_or_name, struct err *err);
    int (*remove)(struct bds *bs, const char *id, const char *name, struct err *err);
    /* Make the read-only node show the snapshot's contents. */
    int (*load_tmp)(struct bds *bs, const char *id, const char *name, struct err *err);
};

struct blk_bitmap_ops {
    /* Can the image store persistent bitmaps (qcow2: v3)? NULL: yes. */
    bool (*supported)(struct bds *bs);
    /* Returns the count and a malloc'ed array in qemu's order (caller frees). */
    int (*list)(struct bds *bs, struct blk_bitmap_info **list, struct err *err);
    int (*add)(struct bds *bs, const char *name, uint32_t granularity, bool disabled, struct err *err);
    int (*remove)(struct bds *bs, const char *name, struct err *err);
    int (*clear)(struct bds *bs, const char *name, struct err *err);
    int (*enable)(struct bds *bs, const char *name, bool enable, struct err *err);
    int (*merge)(struct bds *bs, const char *dst, struct bds *src_bs, const char *src, struct err *err);
};

struct blk_driver {
    const char *name;
    enum blk_kind kind;
    size_t instance_size;
    enum blk_thread_model thread_model;
    bool supports_backing;
    bool supports_compressed_writes;        /* pwrite honours BLK_WRITE_COMPRESSED */
    bool write_passthrough;                 /* writes at off land at off of bs->file (raw) */
    const struct opt_desc *create_opts;    /* {NULL}-terminated, qemu's order */
    const struct opt_desc *amend_opts;

    /* life */
    int (*probe)(const uint8_t *head, size_t len, const char *filename);  /* 0..100 */
    /* Protocols: does this driver serve the filename (prefix "nbd:" etc.)? */
    bool (*claims)(const char *filename);
    int (*open)(struct bds *bs, struct kvopts *opts, int flags, struct err *err);
    /* Protocols with image locking: a node opened with BLK_O_LATE_SHARE has
     * taken its permissions but refuses nothing to other processes; the
     * core then refuses what the format on top cannot share (qemu's child
     * permissions: a format with metadata refuses writes and resizes, raw
     * with an offset or size resizes, plain raw nothing). */
    int (*unshare)(struct bds *bs, bool write, bool resize, struct err *err);
    void (*close)(struct bds *bs);
    /* Formats create through blk_create_file()/blk_open_protocol(). */
    int (*create)(const char *filename, struct kvopts *opts, struct err *err);

    /* data */
    int (*pread)(struct bds *bs, uint64_t off, uint64_t len, void *buf);
    int (*pwrite)(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags);
    int (*pwrite_zeroes)(struct bds *bs, uint64_t off, uint64_t len, int flags);
    /* Compressed writes in two steps, so that callers can compress on many
     * threads: compress() touches no node state and is called without the
     * node lock; it returns the payload length, or -ENOSPC when the data does
     * not shrink. pwrite_compressed() stores one whole cluster (or the tail
     * cluster) from compress()'s payload; plen < 0 means "store buf as the
     * driver stores incompressible data". */
    long (*compress)(struct bds *bs, const void *buf, size_t len, void *dst, size_t cap);
    int (*pwrite_compressed)(struct bds *bs, uint64_t off, uint64_t len, const void *buf,
                             const void *payload, long plen);
    /* blk_pwrite_map()/blk_pwrite_commit() (blk.h), both called under the
     * node lock; NULL: every write goes through pwrite. */
    int (*pwrite_map)(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                      uint64_t *host, struct bds **file);
    int (*pwrite_commit)(struct bds *bs, uint64_t off, uint64_t len, uint64_t host, int ret);
    int (*discard)(struct bds *bs, uint64_t off, uint64_t len);
    int (*flush)(struct bds *bs);
    /* Protocols: copy len bytes from src at soff to dst (a node of the same
     * driver) at doff inside the host (copy_file_range); -ENOTSUP or
     * -EXDEV when it cannot, and the caller copies by reading. */
    int (*copy_range)(struct bds *src, uint64_t soff, struct bds *dst, uint64_t doff,
                      uint64_t len);
    int (*block_status)(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                        uint64_t *map, struct bds **file);

    /* size */
    int64_t (*get_length)(struct bds *bs);           /* NULL: bs->total_size */
    int64_t (*get_allocated_size)(struct bds *bs);   /* NULL: sum over children */
    int (*truncate)(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                    struct err *err);

    /* upkeep */
    int (*get_info)(struct bds *bs, struct blk_info *bi);
    json_t *(*specific_info)(struct bds *bs, struct err *err);   /* the "data" object */
    int (*check)(struct bds *bs, struct blk_check_result *res, int fix, struct err *err);
    int (*measure)(struct kvopts *opts, struct bds *in, uint64_t size,
                   struct blk_measure *out, struct err *err);
    int (*amend)(struct bds *bs, struct kvopts *opts, bool force, struct err *err);
    int (*change_backing)(struct bds *bs, const char *file, const char *fmt, struct err *err);
    int (*make_empty)(struct bds *bs, struct err *err);
    /* Does a freshly created image read as zeros everywhere? NULL: formats
     * answer no, protocols yes. */
    bool (*has_zero_init)(struct bds *bs);

    const struct blk_snapshot_ops *snapshot;
    const struct blk_bitmap_ops *bitmap;
};

/* --- helpers the core offers drivers --- */

/* Read [off, off+len) of bs's backing view into buf: from bs->backing where it
 * exists, zeros past its end or with no backing. */
int blk_read_backing(struct bds *bs, uint64_t off, uint64_t len, void *buf);

/* For the pread of a BLK_THREAD_READS_UNLOCKED_RO driver: whether the core
 * called it without the node lock (a read-only node), and the lock the
 * driver then holds around what it caches; both calls do nothing when the
 * core holds the lock already. */
bool blk_pread_unlocked(const struct bds *bs);
void blk_pread_lock(struct bds *bs);
void blk_pread_unlock(struct bds *bs);
/* Create the protocol-level file for a format image (prealloc off, size 0). */
int blk_create_file(const char *filename, struct kvopts *opts, struct err *err);
/* Log one check line through res->log. */
void blk_check_log(struct blk_check_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* get_info for formats qemu gives no bdrv_get_info (dmg, bochs, cloop):
 * -ENOTSUP, instead of the core's default of answering with the file's. */
int blk_get_info_unsupported(struct bds *bs, struct blk_info *bi);
/* A line qemu's driver would print on stderr by itself (corruption
 * notices and the like); see block/message.c. */
void blk_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same without the final newline (qemu's error_printf after a
 * warn_report: the next output continues the line). */
void blk_message_partial(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "qemu-img" when qimg runs under that name, else "qimg": the prefix of
 * qemu's warn_report lines. */
const char *blk_prog_name(void);
/* True when buf[0..len) is all zero (word at a time). */
bool buffer_is_zero(const void *buf, size_t len);
/* Inside an amend operation: report progress (offset of total work) to the
 * command's status callback, if any. */
void blk_amend_status(struct bds *bs, int64_t offset, int64_t total);

#endif
