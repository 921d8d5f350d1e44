/* Deflate compression for image writers (qcow2 and qcow clusters, vmdk
 * grains) through libdeflate: faster than zlib at the same level, with
 * output any inflater reads; and zlib itself where a format's reader needs
 * a small window. Thread-safe; compressors and streams are pooled. */
#ifndef QIMG_UTIL_DEFLATE_H
#define QIMG_UTIL_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>

#define DEFLATE_DEFAULT_LEVEL 6     /* zlib's Z_DEFAULT_COMPRESSION, as qemu */
#define DEFLATE_MAX_LEVEL 12
#define DEFLATE_LEVEL_STORED (-1)   /* a valid stream of uncompressed blocks */

enum deflate_wrap { DEFLATE_RAW, DEFLATE_ZLIB };

/* Compress n bytes into out (cap bytes) at level 1..12 (0: default,
 * DEFLATE_LEVEL_STORED: stored blocks only).
 * Returns the compressed length, -ENOSPC when it does not fit, -ENOMEM. */
long deflate_compress(enum deflate_wrap wrap, int level, const void *in, size_t n, void *out,
                      size_t cap);

/* True when n bytes of in certainly do not deflate into cap bytes: their
 * byte histogram is flat (random or already compressed data) and either no
 * 4-byte string repeats within 32 KiB (cap < n) or a fast level-1 pass with
 * a 32 KiB window does not fit either. Lets a caller whose
 * format requires a slower encoder (zlib with a small window) skip data that
 * would be stored uncompressed anyway. */
bool deflate_incompressible(const void *in, size_t n, size_t cap);

/* zlib's own deflate (level -1 for its default, 0..9) with a window of
 * 2^|window_bits| bytes (negative: raw deflate, no zlib header), for
 * formats whose readers require a small window. Returns the compressed
 * length, -ENOSPC when it does not fit in cap, -ENOMEM, -EINVAL. */
long deflate_zlib_window(int level, int window_bits, const void *in, size_t n, void *out,
                         size_t cap);

/* Inflate with zlib (window_bits as for inflateInit2) until out holds
 * exactly len bytes; input after the end of that output is ignored.
 * Returns 0, or -EIO when the stream is bad or ends short. */
int inflate_window_exact(int window_bits, const void *in, size_t n, void *out, size_t len);

/* What zlib's uncompress() does: one zlib stream (header, deflate data,
 * Adler-32) inflated into out; input after the stream's end is ignored.
 * Through libdeflate, about twice zlib's speed with its checksum. Returns
 * the output length, or -EIO (a bad stream, or one that does not fit). */
long inflate_zlib_stream(const void *in, size_t n, void *out, size_t cap);

#endif
