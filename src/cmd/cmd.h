/* What the subcommands share: the command table, qemu-img's error
 * reporting (the only place that prints), option helpers and image opening
 * with -f / --image-opts / -U / -t. */
#ifndef QIMG_CMD_CMD_H
#define QIMG_CMD_CMD_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include "block/blk.h"
#include "util/err.h"
#include "util/kvopts.h"

struct cmd_entry {
    const char *name;
    int (*fn)(int argc, char **argv);
};

const struct cmd_entry *cmd_find(const char *name);

int cmd_info(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_amend(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_dd(int argc, char **argv);
int cmd_inspect(int argc, char **argv);   /* qimg only: docs/safety.md */

/* The name messages start with: "qemu-img" when invoked under that name. */
extern const char *prog_name;

void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* error_report + "Try '<prog> --help' for more information", exit 1. */
noreturn void error_exit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void missing_argument(const char *option);
noreturn void unrecognized_option(const char *option);
/* The global help text before "Supported formats:" and qimg's additions
 * ({NULL}-terminated; the row kinds are described in help.c): read by the
 * docs generator (src/tools/gendocs.c). */
extern const char help_head[];
struct help_ext {
    const char *cmd, *opt, *arg, *help;
};
extern const struct help_ext help_extensions[];
/* Print the global help text and exit 0. */
noreturn void help(void);
void print_version(void);
/* The global -T option (qemu's trace_opt_parse); may print and exit. */
void trace_opt_parse(const char *arg);

enum output_format { OFORMAT_HUMAN, OFORMAT_JSON };
/* Returns 0 or -1 after reporting qemu-img's message. */
int parse_output_format(const char *s, enum output_format *out);

/* Cache modes (-t/-T): sets BLK_O_NOCACHE / BLK_O_NO_FLUSH / BLK_O_WRITETHROUGH. */
int parse_cache_mode(const char *mode, int *flags);

/* --object secret,id=...,data=...|file=...[,format=base64] */
int object_add(const char *spec);
/* The secret's bytes (NUL-terminated), or NULL with a message in err. */
const char *secret_lookup(const char *id, struct err *err);

struct img_open_args {
    const char *filename;
    const char *fmt;         /* NULL: probe */
    bool image_opts;         /* filename is an option string */
    int flags;               /* BLK_O_* */
    bool quiet;
    /* Options of a just-created image whose names end in "key-secret" are
     * passed to the driver's open (qemu's img_add_key_secrets); may be NULL. */
    const struct kvopts *key_secrets;
};
/* Open an image as qemu-img's img_open: reports "Could not open '<f>': ..." */
struct bds *img_open(const struct img_open_args *a);

/* A cvtnum-style size argument: reports and returns -1 on error. */
int64_t cvtnum(const char *name, const char *value);

/* bdrv_img_create: checks, the "Formatting ..." line, then the driver's create. */
int img_create_common(const char *filename, const char *fmt, const char *base_filename,
                      const char *base_fmt, struct kvopts *opts, int64_t img_size,
                      bool unsafe, bool quiet, struct err *err);

/* Print helpers that route check lines etc. to stderr. */
void log_to_stderr(void *opaque, const char *line);

#endif
