/* Shared by the fuzz targets: the entry-point name and the multi-file input
 * container.
 *
 * Each target defines FUZZ_ENTRY, which is libFuzzer's
 * LLVMFuzzerTestOneInput in fuzzing builds and fuzz_<target> in the plain
 * regression runner (regression.c), where all targets share one binary. */
#ifndef QIMG_FUZZ_FUZZ_H
#define QIMG_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int FUZZ_ENTRY(const uint8_t *data, size_t size);

/* An input may carry several files: the image, then parts introduced by the
 * line "\n#QIMG-FILE <name>\n" (backing files, VMDK extents, ...). The image
 * is registered as FUZZ_IMAGE in the mem protocol in exclusive mode; a part
 * named "x" becomes "/fuzz/x" (absolute names are kept), so relative names
 * inside the image resolve to parts and nothing reaches the host. A part
 * named "fail-after" holds a decimal count of reads after which every read
 * fails with EIO. Both setups also limit and memoise PBKDF2 (fuzz-mem.c,
 * crypto_pbkdf2_set_fuzz_limits) so that hostile LUKS headers stay cheap.
 * Returns the number of files registered. */
#define FUZZ_IMAGE "/fuzz/img"
#define FUZZ_PART_SEP "\n#QIMG-FILE "
int fuzz_mem_setup(const uint8_t *data, size_t size);
/* The same with every file registered writable (mem_file_add_rw): each call
 * re-arms fresh private copies of the input's files, so a pass that wrote
 * to them leaves nothing behind for the next. Files opened read-only (the
 * backing chain) are not changed. */
int fuzz_mem_setup_rw(const uint8_t *data, size_t size);
/* The fail-after count found by fuzz_mem_setup (-1: none); callers re-arm it
 * before each pass with mem_set_fail_after(). */
extern long fuzz_fail_after;
/* A part named "write-faults" holds up to three decimal numbers "N FLAGS
 * PASSES": the write faults (mem_set_write_faults(N, FLAGS)) the write-path
 * targets arm in the passes whose bits are set in PASSES, instead of the
 * ones they derive from the input's hash. fuzz_write_faults_set says one was
 * found. */
extern bool fuzz_write_faults_set;
extern long fuzz_write_faults[3];
void fuzz_mem_teardown(void);

#endif
