/* The block layer's public API: what commands and the engine use.
 *
 * An image is a graph of nodes (struct bds): a format node on top of a
 * protocol node (bs->file), with an optional backing node (bs->backing).
 * All offsets and lengths are bytes. int functions return 0 (or a count) or
 * -errno; messages go into the trailing struct err. */
#ifndef QIMG_BLOCK_BLK_H
#define QIMG_BLOCK_BLK_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"
#include "util/kvopts.h"

struct blk_driver;

/* Open flags. */
enum {
    BLK_O_RDWR        = 1 << 0,
    BLK_O_NOCACHE     = 1 << 1,   /* O_DIRECT (cache=none/directsync) */
    BLK_O_NO_BACKING  = 1 << 2,   /* do not open the backing chain */
    BLK_O_SHARE       = 1 << 3,   /* -U: tolerate other writers, take no locks that block them */
    BLK_O_NO_FLUSH    = 1 << 4,   /* cache=unsafe: flushes are no-ops */
    BLK_O_NO_IO       = 1 << 5,   /* metadata only (info of an encrypted image without key) */
    BLK_O_CHECK       = 1 << 6,   /* opened for check: tolerate repairable damage */
    BLK_O_WRITETHROUGH = 1 << 7,  /* flush after every write */
    BLK_O_PROBE_WARN  = 1 << 8,   /* internal: warn when probing guesses raw */
    BLK_O_NO_SHARE    = 1 << 9,   /* let no other process write or resize (convert's sources) */
    BLK_O_LATE_SHARE  = 1 << 10,  /* internal: the format decides what the file shares */
};

/* Write flags. */
enum {
    BLK_WRITE_MAY_UNMAP   = 1 << 0,  /* zeroes may be a hole / deallocated */
    BLK_WRITE_NO_FALLBACK = 1 << 1,  /* fail with -ENOTSUP instead of writing zero buffers */
    BLK_WRITE_COMPRESSED  = 1 << 2,  /* write as a compressed cluster (whole clusters only) */
};

/* block_status answers. */
enum {
    BLK_STATUS_DATA         = 1 << 0,  /* reads come from an allocated range */
    BLK_STATUS_ZERO         = 1 << 1,  /* reads as zero */
    BLK_STATUS_OFFSET_VALID = 1 << 2,  /* *map is the host offset in *file */
    BLK_STATUS_ALLOCATED    = 1 << 3,  /* this layer answers (no backing fall-through) */
    BLK_STATUS_EOF          = 1 << 4,  /* range reaches end of the node */
    BLK_STATUS_COMPRESSED   = 1 << 5,  /* host data is compressed (no offset) */
    BLK_STATUS_RECURSE      = 1 << 6,  /* driver asks the core to look for holes in the
                                          host range (qemu's BDRV_BLOCK_RECURSE) */
};

/* qemu's BDRV_MAX_LENGTH: INT64_MAX aligned down to 1 GiB. No request may
 * reach past it (EIO), and no image may be longer. */
#define BLK_MAX_LENGTH ((uint64_t)INT64_MAX & ~((UINT64_C(1) << 30) - 1))

enum blk_prealloc { BLK_PREALLOC_OFF, BLK_PREALLOC_METADATA, BLK_PREALLOC_FALLOC, BLK_PREALLOC_FULL };

/* A node. Fields marked (core) are managed by block/open.c. */
struct bds {
    const struct blk_driver *drv;   /* (core) */
    void *opaque;                   /* (core) zeroed driver state of drv->instance_size */
    struct bds *file;               /* protocol child of a format node, or NULL */
    struct bds *backing;            /* (core) opened backing node, or NULL */
    char *filename;                 /* (core) as given by the user */
    int flags;                      /* (core) BLK_O_* */
    bool read_only;                 /* (core) */
    uint64_t total_size;            /* virtual size in bytes; set by open/truncate */
    uint32_t request_alignment;     /* smallest I/O unit; io.c aligns requests */
    bool encrypted;                 /* image is encrypted */
    int compress_level;             /* compressed writes: level asked for, 0 = the format's default */
    bool probed;                    /* (core) format was guessed */
    /* What the image says about its backing file (formats fill these). */
    char *backing_file;             /* as stored in the image, or NULL */
    char *backing_format;           /* as stored, or NULL */
    char *full_backing_filename;    /* (core) resolved against the image's folder */
    dev_t dev;                      /* (core) device and inode of the file, for loop checks */
    ino_t ino;
    pthread_mutex_t lock;           /* (core) serializes a BLK_THREAD_SERIALIZE driver */
};

/* Information for "info" beyond what struct bds holds. */
struct blk_info {
    uint64_t cluster_size;          /* 0 = none */
    bool is_dirty;
    bool has_dirty_flag;            /* print "dirty-flag" (all but parallels) */
    bool needs_compressed_writes;   /* e.g. vmdk streamOptimized */
};

struct blk_check_result {
    int64_t corruptions, leaks, check_errors;
    int64_t corruptions_fixed, leaks_fixed;
    int64_t image_end_offset;
    uint64_t total_clusters, allocated_clusters, fragmented_clusters, compressed_clusters;
    bool has_total_clusters;        /* the format reports cluster statistics */
    /* Per-problem lines ("Leaked cluster 3 refcount=1 reference=0") go here;
     * the command prints them on stderr. */
    void (*log)(void *opaque, const char *line);
    void *log_opaque;
};

enum { BLK_FIX_LEAKS = 1, BLK_FIX_ERRORS = 2 };

struct blk_snapshot {
    char id_str[128];
    char name[1024];
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;                /* UINT64_MAX = none */
};

struct blk_measure {
    uint64_t required, fully_allocated;
    bool has_bitmaps;
    uint64_t bitmaps;
};

/* --- driver lookup --- */
const struct blk_driver *blk_find_format(const char *name);
/* Does qemu 7.2 (Debian's build) have a block driver of this name? Its
 * bdrv_find_format() refuses any other as "Unknown driver '<name>'". */
bool blk_qemu_has_driver(const char *name);
/* The protocol driver for a name, as qemu's bdrv_find_protocol picks it: a
 * prefix before the first ':' (when no '/' comes first) must name one of
 * qemu's protocols, else NULL and "Unknown protocol 'foo'" in err; names
 * without a prefix are files. Protocols qemu has and qimg lacks get a
 * driver whose open/create fail with qemu's message where it can be told. */
const struct blk_driver *blk_find_protocol(const char *filename, struct err *err);
/* Same, never NULL: an unknown prefix gets a driver whose open and create
 * fail with "Unknown protocol 'foo'". */
const struct blk_driver *blk_find_protocol_for(const char *filename);
/* qemu's path_has_protocol(): a ':' before any '/'. */
bool blk_path_has_protocol(const char *filename);
const char *blk_driver_name(const struct blk_driver *drv);
const struct opt_desc *blk_driver_create_opts(const struct blk_driver *drv);
const struct opt_desc *blk_driver_amend_opts(const struct blk_driver *drv);
bool blk_driver_can_create(const struct blk_driver *drv);
bool blk_driver_supports_backing(const struct blk_driver *drv);
bool blk_driver_can_compress(const struct blk_driver *drv);

/* --- open / close --- */
/* Open filename (fmt NULL = probe). opts may carry driver options
 * (--image-opts); it is consumed. Opens the backing chain unless
 * BLK_O_NO_BACKING. Warnings (probing guessed raw) are printed by the
 * command layer from *warn_probed_raw when non-NULL. */
struct bds *blk_open(const char *filename, const char *fmt, struct kvopts *opts,
                     int flags, struct err *err);
void blk_close(struct bds *bs);
/* Open just the protocol node for filename. */
struct bds *blk_open_protocol(const char *filename, int flags, struct err *err);
/* Open the backing chain of an already opened node (after rebase, -u). */
int blk_open_backing(struct bds *bs, int flags, struct err *err);

/* Reopen a node with new flags (e.g. BLK_O_RDWR), keeping its backing node. */
int blk_reopen(struct bds *bs, int flags, struct err *err);

/* --- create --- */
/* Creates filename with driver fmt and options (must contain "size"). */
int blk_create(const char *fmt, const char *filename, struct kvopts *opts, struct err *err);

/* --- data --- */
int blk_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf);
int blk_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags);
int blk_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags);
/* Two-step compressed writes (see driver.h): blk_can_precompress() says
 * whether the node offers them; blk_compress() is thread-safe and lock-free;
 * blk_pwrite_compressed() stores its result (plen < 0: incompressible). */
bool blk_can_precompress(struct bds *bs);
long blk_compress(struct bds *bs, const void *buf, size_t len, void *dst, size_t cap);
int blk_pwrite_compressed(struct bds *bs, uint64_t off, uint64_t len, const void *buf,
                          const void *payload, long plen);
int blk_discard(struct bds *bs, uint64_t off, uint64_t len);
/* Copy [soff, soff+len) of src to dst at doff without moving the data
 * through this process (qemu-img convert -C): the source resolves through
 * block status to host ranges, the target through pass-through formats
 * (raw) to its protocol node. Returns -ENOTSUP (nothing copied) when some
 * part cannot be offloaded (compressed or zero ranges, other drivers). */
int blk_copy_range(struct bds *src, uint64_t soff, struct bds *dst, uint64_t doff, uint64_t len);
/* Allocating writes in two steps, so that the data of several writes can
 * be in flight at once (the copy engine with O_DIRECT targets):
 * blk_pwrite_map() allocates host space for [off, off+*pnum) under the
 * node lock and returns 1 with the host offset in *host of *file, where
 * the caller writes the data itself (blk_pwrite on *file, no lock on bs);
 * blk_pwrite_commit() then maps the range (or, with ret < 0, releases the
 * allocation). It returns 0 when the first *pnum bytes must go through
 * blk_pwrite (partial clusters, allocated ranges, formats without the
 * operation). Ranges mapped and not committed must not be touched. */
int blk_pwrite_map(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum, uint64_t *host,
                   struct bds **file);
int blk_pwrite_commit(struct bds *bs, uint64_t off, uint64_t len, uint64_t host, int ret);
int blk_flush(struct bds *bs);
int64_t blk_getlength(struct bds *bs);
/* Bytes used on the host (disk size) of the node and its children, or -errno. */
int64_t blk_get_allocated_size(struct bds *bs);
int blk_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                 struct err *err);

/* Status of [off, off+len) for this node's own layer. *pnum > 0 on success. */
int blk_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                     uint64_t *map, struct bds **file);
/* Status through the chain from bs down to (not including) base: the first
 * layer that allocates the range answers; *depth says which (0 = bs). Ranges
 * allocated nowhere read as zero (ZERO set, ALLOCATED clear, *depth = chain
 * length). */
int blk_block_status_above(struct bds *bs, struct bds *base, uint64_t off, uint64_t len,
                           uint64_t *pnum, uint64_t *map, struct bds **file, int *depth);
/* Whether [off, off+len) is allocated in some layer above base; like qemu's
 * bdrv_is_allocated_above. Returns 1/0 or -errno. */
int blk_is_allocated_above(struct bds *bs, struct bds *base, uint64_t off, uint64_t len,
                           uint64_t *pnum);

/* --- metadata --- */
int blk_get_info(struct bds *bs, struct blk_info *bi);
json_t *blk_specific_info(struct bds *bs, struct err *err);
int blk_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err);
int blk_change_backing(struct bds *bs, const char *file, const char *fmt, struct err *err);
bool blk_has_zero_init(struct bds *bs);
bool blk_driver_is_format(const struct blk_driver *drv);
int blk_make_empty(struct bds *bs, struct err *err);
/* Amend format options; status (may be NULL) is told the progress of long
 * amendments as work done out of a total (qemu's BlockDriverAmendStatusCB). */
typedef void blk_amend_status_fn(void *opaque, int64_t offset, int64_t total);
int blk_amend(struct bds *bs, struct kvopts *opts, bool force, blk_amend_status_fn *status,
              void *status_opaque, struct err *err);
int blk_measure(const struct blk_driver *drv, struct kvopts *opts, struct bds *in,
                uint64_t size, struct blk_measure *out, struct err *err);

/* --- snapshots --- */
int blk_snapshot_list(struct bds *bs, struct blk_snapshot **list, struct err *err);
int blk_snapshot_create(struct bds *bs, struct blk_snapshot *sn, struct err *err);
int blk_snapshot_goto(struct bds *bs, const char *id_or_name, struct err *err);
int blk_snapshot_delete(struct bds *bs, const char *id, const char *name, struct err *err);
int blk_snapshot_load_tmp(struct bds *bs, const char *id, const char *name, struct err *err);

/* Parse "preallocation=" against the allowed set (bitmask of 1 << mode). */
int blk_parse_prealloc(const char *s, unsigned allowed, enum blk_prealloc *out, struct err *err);
const char *blk_prealloc_name(enum blk_prealloc p);
bool blk_supports_bitmaps(struct bds *bs);

/* --- persistent dirty bitmaps --- */
struct blk_bitmap_info {
    char name[1024];
    uint32_t granularity;
    bool enabled;                   /* tracks writes ("auto") */
    bool inconsistent;              /* found in use: not saved properly */
};
/* The node's persistent bitmaps (qemu's in-memory order, newest first):
 * returns the count and a malloc'ed array the caller frees. */
int blk_bitmap_list(struct bds *bs, struct blk_bitmap_info **list, struct err *err);
/* granularity 0: the format's default. */
int blk_bitmap_add(struct bds *bs, const char *name, uint32_t granularity, bool disabled,
                   struct err *err);
int blk_bitmap_remove(struct bds *bs, const char *name, struct err *err);
int blk_bitmap_clear(struct bds *bs, const char *name, struct err *err);
int blk_bitmap_enable(struct bds *bs, const char *name, bool enable, struct err *err);
int blk_bitmap_merge(struct bds *bs, const char *dst, struct bds *src_bs, const char *src,
                     struct err *err);

/* Where drivers' own messages go (block/message.c); NULL: stderr. */
void blk_set_message_sink(void (*fn)(const char *line));

/* Resolve a backing file name relative to the image that names it. */
char *blk_resolve_backing(const char *image, const char *backing);

/* Safe mode (block/safe.c, docs/safety.md): --safe or QIMG_SAFE=1. When on,
 * blk_safe_check_ref refuses (-EPERM, message in err) a reference path named
 * by image (already resolved against it) that is json:, a protocol, not a
 * regular file, or resolves outside image's directory; 0 otherwise or when
 * safe mode is off. blk_open_ref checks, then opens the protocol node. */
void blk_safe_enable(void);
bool blk_safe_enabled(void);
int blk_safe_check_ref(const char *image, const char *path, const char *what,
                       struct err *err);
struct bds *blk_open_ref(const char *image, const char *path, const char *what, int flags,
                         struct err *err);
/* Every format's probe score for head (>0 only, best first, at most max);
 * returns how many formats scored. */
size_t blk_probe_all(const uint8_t *head, size_t len, const char *filename,
                     const char **names, int *scores, size_t max);

/* Files this run created (block/created.c): blk_create and blk_create_file
 * note a name that did not exist before; blk_created_remove() unlinks them
 * (async-signal-safe) unless blk_created_keep() said the run succeeded. */
void blk_created_note(const char *filename);
void blk_created_keep(void);
void blk_created_remove(void);

#endif
