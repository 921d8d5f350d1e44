/* The copy engine behind convert (and later dd, commit, rebase): walks the
 * sources by block status so holes and zero extents cost neither reads nor
 * writes, detects zero runs in data (-S), and writes the target sparsely.
 * No argv, no printing: progress goes through a callback, errors into err. */
#ifndef QIMG_ENGINE_COPY_H
#define QIMG_ENGINE_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blk.h"

#define COPY_MAX_WORKERS 16

struct copy_job {
    struct bds **src;           /* sources, concatenated in order */
    uint64_t *src_size;         /* bytes, multiple of 512 except maybe the last */
    int nsrc;
    struct bds *target;
    bool target_has_backing;    /* keep source-unallocated ranges unallocated */
    int64_t target_backing_size;/* bytes, -1 if unknown */
    bool has_zero_init;         /* target reads as zeros where not written */
    uint64_t min_sparse;        /* bytes; 0 = write everything (fully allocated) */
    uint64_t alignment;         /* bytes, power of two */
    bool compressed;
    bool copy_range;            /* try blk_copy_range for data (qemu-img -C) */
    uint64_t rate_limit;        /* bytes per second of data copied, 0 = none (-r) */
    uint64_t cluster_size;      /* target cluster size (compressed writes) */
    uint64_t buf_size;          /* bytes per request */
    bool salvage;
    int workers;                /* threads doing reads and writes (qemu-img -m) */
    bool in_order;              /* writes in offset order (qemu-img without -W) */
    /* Called with a percentage; opaque passed back. */
    void (*progress)(void *opaque, double percent);
    void *progress_opaque;
    /* Warnings in salvage mode. */
    void (*warn)(void *opaque, const char *msg);
};

/* Returns 0 or -errno with qemu-img's message ("error while reading at byte N: ...") */
int copy_run(struct copy_job *job, struct err *err);

/* Safe-mode rebase: every range that bs does not allocate itself and whose
 * content differs between the old backing (bs->backing) and new_backing is
 * written into bs, in runs of differing sectors, as qemu-img rebase does.
 * Ranges are walked in qemu-img's order (IO_BUF_SIZE steps trimmed by
 * allocation and the backing sizes); reads and comparisons run on several
 * threads, writes stay in offset order so the image's layout is the one
 * qemu-img makes. Zero ranges (by block status) cost no reads. */
struct rebase_job {
    struct bds *bs;
    struct bds *prefix;         /* new backing inside bs's chain, or NULL */
    struct bds *new_backing;    /* prefix, a newly opened node, or NULL */
    uint64_t size, old_size, new_size;
    uint64_t buf_size;          /* bytes per step (qemu-img: 2 MiB) */
    int workers;
    /* Called once per step that was compared, in offset order. */
    void (*step_done)(void *opaque);
    void *opaque;
};

/* Returns 0 or -errno with qemu-img's message in err. */
int rebase_run(struct rebase_job *job, struct err *err);

#endif
