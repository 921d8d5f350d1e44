/* Diagnose `json:` filenames the way qemu 7.2's own JSON reader would
 * (lexer -> streamer -> parser, first error wins), so qimg can print the
 * same "Could not parse the JSON options: <reason>" message. */
#ifndef QIMG_UTIL_JSONDIAG_H
#define QIMG_UTIL_JSONDIAG_H

/* NULL when qemu accepts text as exactly one JSON value; otherwise a
 * malloc'ed copy of qemu's message (e.g. "JSON parse error, premature
 * EOI", "Expecting at most one JSON value"). The caller frees it. */
char *json_diag(const char *text);

/* For text json_diag() accepted: a malloc'ed copy in strict JSON that
 * jansson reads: qemu's extensions (single-quoted strings, the \' escape)
 * are rewritten as double-quoted strings, U+0000 (\u0000 or the bytes
 * C0 80) as a stand-in that json_diag_unmask() turns back; everything
 * else is unchanged. */
char *json_diag_normalize(const char *text);

/* A key or string value jansson read from json_diag_normalize()'s text,
 * malloc'ed, with U+0000 as qemu holds it: the two bytes C0 80. */
char *json_diag_unmask(const char *s);

#endif
