/* The comparison engine behind "qemu-img compare": walks two images by
 * block status so that ranges both sides report as zero cost no reads,
 * compares data in 512-byte sectors and checks the tail of a longer image
 * for data. No argv and no printing: the outcome is returned as a kind plus
 * an offset, progress goes through a callback. */
#ifndef QIMG_ENGINE_COMPARE_H
#define QIMG_ENGINE_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

#include "block/blk.h"

/* The block-status bits qemu's bdrv_block_status_above() would report,
 * as qemu numbers them (strict mode compares these words for equality). */
enum {
    QSTATUS_DATA         = 0x01,
    QSTATUS_ZERO         = 0x02,
    QSTATUS_OFFSET_VALID = 0x04,
    QSTATUS_ALLOCATED    = 0x10,
    QSTATUS_EOF          = 0x20,
};

enum compare_kind {
    COMPARE_IDENTICAL,
    COMPARE_CONTENT_MISMATCH,   /* first differing sector at .offset */
    COMPARE_STATUS_MISMATCH,    /* strict mode: statuses differ at .offset */
    COMPARE_STATUS_ERROR,       /* block status of image .which failed (.err) */
    COMPARE_READ_ERROR,         /* reading image .which at .offset failed (.err) */
};

struct compare_result {
    enum compare_kind kind;
    int which;                  /* 0 or 1 */
    uint64_t offset;
    int err;                    /* positive errno for the error kinds */
};

struct compare_job {
    struct bds *bs[2];
    uint64_t size[2];           /* virtual sizes (blk_getlength) */
    bool strict;                /* compare block status words too */
    uint64_t buf_size;          /* bytes per read; 0 = 2 MiB as qemu-img */
    /* Called after each step with the bytes the step covered. */
    void (*progress)(void *opaque, uint64_t bytes);
    void *opaque;
    uint64_t offset;            /* (engine) where the walk stands */
};

/* qemu's bdrv_block_status_above(bs, NULL, off, len): the first layer of
 * the chain that allocates the range answers. Returns the QSTATUS_* word
 * or -errno; *pnum > 0 on success (off must be below the size). */
int compare_status_above(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum);

/* Index of the first non-zero 512-byte sector of buf (in bytes), or -1;
 * qemu-img's find_nonzero(). */
int64_t compare_find_nonzero(const uint8_t *buf, uint64_t len);

/* Sector-granular buffer comparison as qemu-img's compare_buffers():
 * returns whether the first sector differs and sets *pnum to the length of
 * the prefix (whole sectors, the last may be short) sharing that state. */
bool compare_sectors(const uint8_t *a, const uint8_t *b, uint64_t len, uint64_t *pnum);

/* Compare [job->offset, min(size)) of both images. Returns 0 with
 * res->kind set (IDENTICAL means "no difference so far"), or -ENOMEM. */
int compare_common(struct compare_job *job, struct compare_result *res);

/* After compare_common found no difference: check [min, max) of the
 * longer image for data, as qemu-img does when the sizes differ. */
int compare_tail(struct compare_job *job, struct compare_result *res);

#endif
