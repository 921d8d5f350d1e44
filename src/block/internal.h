/* Core-internal helpers shared by the files of src/block/. */
#ifndef QIMG_BLOCK_INTERNAL_H
#define QIMG_BLOCK_INTERNAL_H

#include "block/blk.h"

struct bds *bds_new(const struct blk_driver *drv, const char *filename, int flags);
void bds_free(struct bds *bs);

extern const struct blk_driver blk_dead_driver;

#endif
