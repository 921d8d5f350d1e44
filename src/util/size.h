/* Size strings as qemu parses and prints them. */
#ifndef QIMG_UTIL_SIZE_H
#define QIMG_UTIL_SIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* qemu_strtosz: "1.5G", "64k", "512b"; default_suffix is 'B' or 'M' etc.
 * Returns 0, -EINVAL (syntax) or -ERANGE (too big). Accepts the whole string only. */
int size_parse(const char *s, char default_suffix, uint64_t *out);
/* size_parse with the rest of qemu's do_strtosz knobs: unit is 1024 (binary,
 * qemu_strtosz) or 1000 (qemu_strtosz_metric); when end is non-NULL parsing
 * may stop early and *end points past the consumed text (on -EINVAL it is s);
 * *hex_suffix (may be NULL) is set when a suffix followed a hex number, which
 * qemu accepts with the warning
 * "Using a multiplier suffix on hex numbers is deprecated: <s>". */
int size_parse_full(const char *s, const char **end, char default_suffix,
                    unsigned unit, uint64_t *out, bool *hex_suffix);
/* qemu's size_to_str(): "%0.3g %sB" with binary units ("1.27 MiB", "0 B"). */
void size_to_human(uint64_t v, char *buf, size_t len);
/* Plain unsigned decimal/hex (qemu_strtou64-style, base 0 allowed): leading
 * white space and '+' accepted, trailing garbage -EINVAL, overflow -ERANGE,
 * and unlike qemu_strtou64 any '-' sign is -EINVAL. */
int parse_u64(const char *s, int base, uint64_t *out);
/* Exactly qemu_strtou64(s, NULL, base, out): like parse_u64 but a minus sign
 * wraps as strtoull does ("-1" is UINT64_MAX). This is what QemuOpts number
 * options and qemu_strtoul callers see. */
int parse_u64_wrapping(const char *s, int base, uint64_t *out);

#endif
