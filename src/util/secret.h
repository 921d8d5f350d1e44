/* The secrets given with --object secret,...: a process-wide table that
 * the command layer fills and encrypted formats read by id. */
#ifndef QIMG_UTIL_SECRET_H
#define QIMG_UTIL_SECRET_H

#include <stddef.h>

#include "util/err.h"

/* Takes ownership of data (len bytes, NUL-terminated for convenience). */
void secret_add(const char *id, char *data, size_t len);
/* The secret's bytes, or NULL with qemu's message in err. */
const char *secret_get(const char *id, size_t *len, struct err *err);

#endif
