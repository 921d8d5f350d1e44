/* Core-internal view of the driver table. */
#ifndef QIMG_BLOCK_REGISTRY_H
#define QIMG_BLOCK_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct blk_driver;

const struct blk_driver *const *blk_drivers(size_t *n);
const struct blk_driver *blk_probe_format(const uint8_t *head, size_t len, const char *filename);

#endif
