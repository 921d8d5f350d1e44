/* key=value option lists as qemu's QemuOpts parses them ("-o a=1,b=x,,y"):
 * ",," escapes a comma, later values override earlier ones, "help" and "?"
 * ask for help. Typed getters check values against an opt_desc table. */
#ifndef QIMG_UTIL_KVOPTS_H
#define QIMG_UTIL_KVOPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/strbuf.h"

enum opt_type { OPT_STRING, OPT_BOOL, OPT_NUMBER, OPT_SIZE };

/* One row of a driver's create/amend option table (qemu's QemuOptDesc). */
struct opt_desc {
    const char *name;
    enum opt_type type;
    const char *help;
    const char *def;        /* default shown in "Formatting ..." lines, or NULL */
};

struct kvopt {
    char *key;
    char *val;
    /* The JSON type a json:{...} filename gave the value ('i' integer,
     * 'r' real, 'b' boolean as on/off; 0 text): node names print it back
     * with that type, as qemu does. */
    char json_type;
};

struct kvopts {
    struct kvopt *v;
    size_t n, cap;
    bool help;              /* "help" or "?" was among the options */
};

void kvopts_init(struct kvopts *o);
void kvopts_release(struct kvopts *o);
/* Parse and append; returns 0 or -EINVAL with qemu's message. When
 * implied_key is non-NULL a first element without '=' is its value
 * (as for --image-opts "file.filename").
 * Like qemu, an element without '=' is a flag: "foo" stores foo=on and
 * "nofoo" foo=off; "help"/"?" in flag form also set o->help (and store
 * help=on, as qemu does). Parsing itself never rejects a string: unknown
 * keys and bad values are found by kvopts_validate()/the typed getters. */
int kvopts_parse(struct kvopts *o, const char *str, const char *implied_key, struct err *err);
int kvopts_set(struct kvopts *o, const char *key, const char *val);
/* kvopts_set with the value's JSON type (struct kvopt.json_type). */
int kvopts_set_json(struct kvopts *o, const char *key, const char *val, char json_type);
const char *kvopts_get(const struct kvopts *o, const char *key);
bool kvopts_has(const struct kvopts *o, const char *key);
void kvopts_del(struct kvopts *o, const char *key);
/* Remove and return (caller frees) the value, or NULL. */
char *kvopts_take(struct kvopts *o, const char *key);
int kvopts_copy(struct kvopts *dst, const struct kvopts *src);

/* Typed getters: return 0 and *out (def when absent), or -EINVAL with a
 * qemu-style message ("Parameter 'x' expects ..."). */
int kvopts_get_bool(const struct kvopts *o, const char *key, bool def, bool *out, struct err *err);
int kvopts_get_size(const struct kvopts *o, const char *key, uint64_t def, uint64_t *out, struct err *err);
int kvopts_get_number(const struct kvopts *o, const char *key, uint64_t def, uint64_t *out, struct err *err);

/* The first key not described by any of the NULL-terminated tables, or NULL. */
const char *kvopts_find_unknown(const struct kvopts *o, const struct opt_desc *const *tables);
const struct opt_desc *opt_desc_find(const struct opt_desc *table, const char *name);

/* Append "name=value" with qemu's escaping (',' doubled) to a buffer. */
void kvopts_escape_append(char *buf, size_t size, const char *s);

/* --- additions --- */

/* qemu-img's is_valid_option_list() for one -o argument: non-empty, not
 * starting with ',', not ending in an odd run of commas. The caller reports
 * "Invalid option list: <arg>" and joins accepted arguments with ','. */
bool kvopts_list_valid(const char *s);
/* Check every stored option, in order, as qemu_opts_do_parse() does against
 * an option list: an unknown key gives "Invalid parameter '<key>'", a bad
 * value the typed messages below. "id" is skipped (qemu drops it). The
 * tables are a NULL-terminated array, searched in order. */
int kvopts_validate(const struct kvopts *o, const struct opt_desc *const *tables, struct err *err);
/* qemu's value parsers with their messages:
 *  bool:   on/yes/true/y, off/no/false/n; "Parameter 'x' expects 'on' or 'off'"
 *  number: qemu_strtou64 base 0 ("-1" wraps to UINT64_MAX);
 *          "Value 'v' is too large for parameter 'x'" / "Parameter 'x' expects a number"
 *  size:   qemu_strtosz; "Value 'v' is out of range for parameter 'x'" /
 *          "Parameter 'x' expects a non-negative number below 2^64" followed by
 *          qemu's two-line hint, all in the one message (no trailing newline). */
int kvopts_parse_bool(const char *name, const char *value, bool *out, struct err *err);
int kvopts_parse_number(const char *name, const char *value, uint64_t *out, struct err *err);
int kvopts_parse_size(const char *name, const char *value, uint64_t *out, struct err *err);
/* qemu_opts_print(opts, sep) over the merged tables (a name already in an
 * earlier table is skipped, as qemu_opts_append does): for each described
 * option with a value or a default, "name=value"; strings have ',' doubled,
 * set sizes/numbers print as their parsed value in %PRId64, everything else
 * verbatim. This is the tail of create's "Formatting '...', fmt=..." line. */
void kvopts_print(struct strbuf *sb, const struct kvopts *o,
                  const struct opt_desc *const *tables, const char *sep);
/* Append s with ',' doubled to a strbuf. */
void kvopts_escape_strbuf(struct strbuf *sb, const char *s);

#endif
