/* Creation options as qemu-img handles them: the format's option table
 * merged with the protocol's, validated, printed for "-o help" and in the
 * "Formatting ..." line. */
#ifndef QIMG_CMD_CREATEOPTS_H
#define QIMG_CMD_CREATEOPTS_H

#include "block/blk.h"
#include "util/kvopts.h"

#define CREATE_OPTS_MAX 64

struct create_opts {
    const struct opt_desc *desc[CREATE_OPTS_MAX];
    size_t n;
};

/* qemu's bdrv_find_protocol() for a file to create: a name whose first ':'
 * comes before any '/' names its protocol by that prefix ("file:", "nbd:",
 * "https:"), and a prefix qemu does not know is "Unknown protocol 'x'".
 * Returns the protocol driver, or NULL after setting err. */
const struct blk_driver *create_find_protocol(const char *filename, struct err *err);
/* Merge the format's and (when filename is non-NULL) the protocol's tables. */
void create_opts_merge(struct create_opts *co, const struct blk_driver *fmt, const char *filename);
/* Print "-o help" as qemu-img does; returns the exit code. */
int create_opts_print_help(const char *fmt, const char *filename);
/* qemu_opts_print_help without caption: "  name=<type>   - help", sorted. */
void opts_print_sorted(const struct opt_desc *const *desc, size_t n);
/* Check every key exists and parses for its type; -1 after setting err. */
int create_opts_validate(const struct create_opts *co, const struct kvopts *o, struct err *err);
/* "Formatting 'f', fmt=x k=v ..." without the newline. */
void create_opts_format_line(const struct create_opts *co, const struct kvopts *o,
                             char *buf, size_t size);

#endif
