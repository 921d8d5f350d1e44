/* Zero detection over byte buffers (also declared in block/driver.h). */
#ifndef QIMG_UTIL_ZERO_H
#define QIMG_UTIL_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/* True when buf[0..len) is all zero bytes; len 0 is true. Any alignment. */
bool buffer_is_zero(const void *buf, size_t len);

#endif
