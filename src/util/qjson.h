/* qemu-exact JSON output. Values are held in jansson trees; objects print
 * their keys in the order qemu's QDict hash table iterates them (bucket
 * order of qemu's tdb-style hash modulo 512, newest insertion first within a
 * bucket), so builders insert keys in QAPI field order and the emitter
 * reproduces qemu's byte order. */
#ifndef QIMG_UTIL_QJSON_H
#define QIMG_UTIL_QJSON_H

#include <jansson.h>
#include <stdio.h>

#include "util/strbuf.h"

/* Pretty output like qemu's qobject_to_json_pretty() (4-space indent).
 * Appends to sb, with no trailing newline. Integers are json_int_t, so a
 * uint64 above INT64_MAX cannot be represented (qemu has none in the
 * structures qemu-img prints). */
void qjson_pretty(struct strbuf *sb, const json_t *v);
/* Human rendering as qemu's "Format specific information" dump, starting at
 * the given indent level (qemu's dump_qobject / dump_qdict). */
void qjson_human(struct strbuf *sb, const json_t *v, int indent);
/* The order qemu would iterate an object's keys; returns a malloc'ed array of
 * n key pointers owned by the object. */
const char **qjson_key_order(const json_t *obj, size_t *n);
unsigned qjson_qdict_bucket(const char *key);

/* --- additions --- */

/* Compact output like qemu's qobject_to_json(): no newlines, ", " between
 * members, same key order and escapes (used for "json:{...}" filenames). */
void qjson_compact(struct strbuf *sb, const json_t *v);

struct kvopt;
/* An option's value as a JSON value of the type it was given in (a
 * json:{...} filename) or a string: node names show it as qemu does. */
json_t *qjson_opt_value(const struct kvopt *kv);

#endif
