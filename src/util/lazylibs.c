/* The decompressors (zlib, zstd, libdeflate, bzip2), loaded on first use.
 *
 * Linked as DT_NEEDED libraries, they were mapped and relocated at every
 * start: about 26 page faults and 40 system calls out of a `qimg info`
 * that needs none of them (docs/performance.md, "Start-up"). Their callers
 * (qcow2, qcow, vmdk, cloop, dmg, util/deflate.c) still include the
 * libraries' own headers and call their functions by name: this file
 * defines those functions, with the headers' prototypes, as forwarders to
 * the system's shared library, loaded by dlopen (util/dynlib.h) the first
 * time one of them is called. The libraries stay the system's, so a
 * security update still reaches qimg without a rebuild.
 *
 * The executable exports none of these names (nothing it links against
 * refers to them), so a library loaded later binds to its own functions,
 * not to these.
 *
 * A library that cannot be loaded fails the call that starts its work
 * (stream init, context or compressor allocation, uncompress) the way a
 * failed allocation would; every other function only runs on a stream or
 * context such a call made.
 *
 * Not built with -Dprefer_static=true, which links the archives instead. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>
#include <libdeflate.h>

#include "config.h"
#include "util/dynlib.h"

#ifdef HAVE_BZIP2
#include <bzlib.h>
#endif

/* Loads lib once; ready caches success for the calls that follow. */
static bool lib_ready(struct dynlib *lib, int *ready)
{
    if (__atomic_load_n(ready, __ATOMIC_ACQUIRE))
        return true;
    if (dynlib_load(lib, NULL) < 0)
        return false;
    __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
    return true;
}

/* For functions that only run on something a successful init made. */
static void need(bool ok)
{
    if (!ok)
        abort();
}

/* --- zlib --- */

#define ZLIB_FUNCS(X)                                                             \
    X(inflateInit_) X(inflateInit2_) X(inflate) X(inflateEnd) X(inflateReset)     \
    X(deflateInit2_) X(deflate) X(deflateEnd) X(deflateReset) X(uncompress)

static struct { ZLIB_FUNCS(DYNLIB_FIELD) } zl;
static int zl_ready;

static int zl_resolve(void *h, struct err *err)
{
    void *sym;
#define ZL_RESOLVE(f) DYNLIB_RESOLVE_INTO(zl, f)
    ZLIB_FUNCS(ZL_RESOLVE)
#undef ZL_RESOLVE
    return 0;
}

static struct dynlib zl_lib = DYNLIB_INIT("libz.so.1", zl_resolve);

static bool zl_ok(void) { return lib_ready(&zl_lib, &zl_ready); }

int inflateInit_(z_streamp strm, const char *version, int stream_size)
{
    return zl_ok() ? zl.inflateInit_(strm, version, stream_size) : Z_MEM_ERROR;
}

int inflateInit2_(z_streamp strm, int window_bits, const char *version, int stream_size)
{
    return zl_ok() ? zl.inflateInit2_(strm, window_bits, version, stream_size) : Z_MEM_ERROR;
}

int inflate(z_streamp strm, int flush)
{
    need(zl_ok());
    return zl.inflate(strm, flush);
}

int inflateEnd(z_streamp strm)
{
    need(zl_ok());
    return zl.inflateEnd(strm);
}

int inflateReset(z_streamp strm)
{
    need(zl_ok());
    return zl.inflateReset(strm);
}

int deflateInit2_(z_streamp strm, int level, int method, int window_bits, int mem_level,
                  int strategy, const char *version, int stream_size)
{
    if (!zl_ok())
        return Z_MEM_ERROR;
    return zl.deflateInit2_(strm, level, method, window_bits, mem_level, strategy, version,
                            stream_size);
}

int deflate(z_streamp strm, int flush)
{
    need(zl_ok());
    return zl.deflate(strm, flush);
}

int deflateEnd(z_streamp strm)
{
    need(zl_ok());
    return zl.deflateEnd(strm);
}

int deflateReset(z_streamp strm)
{
    need(zl_ok());
    return zl.deflateReset(strm);
}

int uncompress(Bytef *dest, uLongf *dest_len, const Bytef *source, uLong source_len)
{
    return zl_ok() ? zl.uncompress(dest, dest_len, source, source_len) : Z_MEM_ERROR;
}

/* --- zstd --- */

#define ZSTD_FUNCS(X)                                                             \
    X(ZSTD_createCCtx) X(ZSTD_freeCCtx) X(ZSTD_CCtx_setParameter)                 \
    X(ZSTD_compressStream2) X(ZSTD_CCtx_reset) X(ZSTD_createDCtx) X(ZSTD_freeDCtx) \
    X(ZSTD_DCtx_reset) X(ZSTD_decompressStream) X(ZSTD_isError)

static struct { ZSTD_FUNCS(DYNLIB_FIELD) } zs;
static int zs_ready;

static int zs_resolve(void *h, struct err *err)
{
    void *sym;
#define ZS_RESOLVE(f) DYNLIB_RESOLVE_INTO(zs, f)
    ZSTD_FUNCS(ZS_RESOLVE)
#undef ZS_RESOLVE
    return 0;
}

static struct dynlib zs_lib = DYNLIB_INIT("libzstd.so.1", zs_resolve);

static bool zs_ok(void) { return lib_ready(&zs_lib, &zs_ready); }

ZSTD_CCtx *ZSTD_createCCtx(void)
{
    return zs_ok() ? zs.ZSTD_createCCtx() : NULL;
}

size_t ZSTD_freeCCtx(ZSTD_CCtx *cctx)
{
    if (!cctx)
        return 0;
    need(zs_ok());
    return zs.ZSTD_freeCCtx(cctx);
}

size_t ZSTD_CCtx_setParameter(ZSTD_CCtx *cctx, ZSTD_cParameter param, int value)
{
    need(zs_ok());
    return zs.ZSTD_CCtx_setParameter(cctx, param, value);
}

size_t ZSTD_compressStream2(ZSTD_CCtx *cctx, ZSTD_outBuffer *output, ZSTD_inBuffer *input,
                            ZSTD_EndDirective end_op)
{
    need(zs_ok());
    return zs.ZSTD_compressStream2(cctx, output, input, end_op);
}

size_t ZSTD_CCtx_reset(ZSTD_CCtx *cctx, ZSTD_ResetDirective reset)
{
    need(zs_ok());
    return zs.ZSTD_CCtx_reset(cctx, reset);
}

ZSTD_DCtx *ZSTD_createDCtx(void)
{
    return zs_ok() ? zs.ZSTD_createDCtx() : NULL;
}

size_t ZSTD_freeDCtx(ZSTD_DCtx *dctx)
{
    if (!dctx)
        return 0;
    need(zs_ok());
    return zs.ZSTD_freeDCtx(dctx);
}

size_t ZSTD_DCtx_reset(ZSTD_DCtx *dctx, ZSTD_ResetDirective reset)
{
    need(zs_ok());
    return zs.ZSTD_DCtx_reset(dctx, reset);
}

size_t ZSTD_decompressStream(ZSTD_DCtx *zds, ZSTD_outBuffer *output, ZSTD_inBuffer *input)
{
    need(zs_ok());
    return zs.ZSTD_decompressStream(zds, output, input);
}

unsigned ZSTD_isError(size_t code)
{
    need(zs_ok());
    return zs.ZSTD_isError(code);
}

/* --- libdeflate --- */

#define LIBDEFLATE_FUNCS(X)                                                       \
    X(libdeflate_alloc_compressor) X(libdeflate_free_compressor)                  \
    X(libdeflate_deflate_compress) X(libdeflate_zlib_compress)                    \
    X(libdeflate_alloc_decompressor) X(libdeflate_free_decompressor)              \
    X(libdeflate_deflate_decompress_ex) X(libdeflate_zlib_decompress_ex)

static struct { LIBDEFLATE_FUNCS(DYNLIB_FIELD) } ld;
static int ld_ready;

static int ld_resolve(void *h, struct err *err)
{
    void *sym;
#define LD_RESOLVE(f) DYNLIB_RESOLVE_INTO(ld, f)
    LIBDEFLATE_FUNCS(LD_RESOLVE)
#undef LD_RESOLVE
    return 0;
}

static struct dynlib ld_lib = DYNLIB_INIT("libdeflate.so.0", ld_resolve);

static bool ld_ok(void) { return lib_ready(&ld_lib, &ld_ready); }

struct libdeflate_compressor *libdeflate_alloc_compressor(int compression_level)
{
    return ld_ok() ? ld.libdeflate_alloc_compressor(compression_level) : NULL;
}

void libdeflate_free_compressor(struct libdeflate_compressor *compressor)
{
    if (!compressor)
        return;
    need(ld_ok());
    ld.libdeflate_free_compressor(compressor);
}

size_t libdeflate_deflate_compress(struct libdeflate_compressor *compressor, const void *in,
                                   size_t in_nbytes, void *out, size_t out_nbytes_avail)
{
    need(ld_ok());
    return ld.libdeflate_deflate_compress(compressor, in, in_nbytes, out, out_nbytes_avail);
}

size_t libdeflate_zlib_compress(struct libdeflate_compressor *compressor, const void *in,
                                size_t in_nbytes, void *out, size_t out_nbytes_avail)
{
    need(ld_ok());
    return ld.libdeflate_zlib_compress(compressor, in, in_nbytes, out, out_nbytes_avail);
}

struct libdeflate_decompressor *libdeflate_alloc_decompressor(void)
{
    return ld_ok() ? ld.libdeflate_alloc_decompressor() : NULL;
}

void libdeflate_free_decompressor(struct libdeflate_decompressor *decompressor)
{
    if (!decompressor)
        return;
    need(ld_ok());
    ld.libdeflate_free_decompressor(decompressor);
}

enum libdeflate_result libdeflate_deflate_decompress_ex(struct libdeflate_decompressor *decompressor,
                                                        const void *in, size_t in_nbytes, void *out,
                                                        size_t out_nbytes_avail,
                                                        size_t *actual_in_nbytes_ret,
                                                        size_t *actual_out_nbytes_ret)
{
    need(ld_ok());
    return ld.libdeflate_deflate_decompress_ex(decompressor, in, in_nbytes, out, out_nbytes_avail,
                                               actual_in_nbytes_ret, actual_out_nbytes_ret);
}

enum libdeflate_result libdeflate_zlib_decompress_ex(struct libdeflate_decompressor *decompressor,
                                                     const void *in, size_t in_nbytes, void *out,
                                                     size_t out_nbytes_avail,
                                                     size_t *actual_in_nbytes_ret,
                                                     size_t *actual_out_nbytes_ret)
{
    need(ld_ok());
    return ld.libdeflate_zlib_decompress_ex(decompressor, in, in_nbytes, out, out_nbytes_avail,
                                            actual_in_nbytes_ret, actual_out_nbytes_ret);
}

/* --- bzip2 (dmg) --- */

#ifdef HAVE_BZIP2
#define BZ2_FUNCS(X) X(BZ2_bzDecompressInit) X(BZ2_bzDecompress) X(BZ2_bzDecompressEnd)

static struct { BZ2_FUNCS(DYNLIB_FIELD) } bz;
static int bz_ready;

static int bz_resolve(void *h, struct err *err)
{
    void *sym;
#define BZ_RESOLVE(f) DYNLIB_RESOLVE_INTO(bz, f)
    BZ2_FUNCS(BZ_RESOLVE)
#undef BZ_RESOLVE
    return 0;
}

static struct dynlib bz_lib = DYNLIB_INIT("libbz2.so.1.0", bz_resolve);

static bool bz_ok(void) { return lib_ready(&bz_lib, &bz_ready); }

int BZ2_bzDecompressInit(bz_stream *strm, int verbosity, int small)
{
    return bz_ok() ? bz.BZ2_bzDecompressInit(strm, verbosity, small) : BZ_MEM_ERROR;
}

int BZ2_bzDecompress(bz_stream *strm)
{
    need(bz_ok());
    return bz.BZ2_bzDecompress(strm);
}

int BZ2_bzDecompressEnd(bz_stream *strm)
{
    need(bz_ok());
    return bz.BZ2_bzDecompressEnd(strm);
}
#endif
