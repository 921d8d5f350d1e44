/* Fuzz target for json:{...} filenames (cmd/common.c img_open): the JSON
 * parse, its flattening into dotted options, the driver/file split and the
 * open that follows, as `qimg info 'json:{...}'` runs them. The input is the
 * text after "json:"; an image (a small raw and a small qcow2 over it) is
 * available in memory as "/fuzz/img" and "/fuzz/base", and every other name
 * fails with ENOENT (mem protocol, exclusive mode). Inputs naming the
 * network protocols or the host "file" driver are skipped: they would reach
 * hosts and host files. Messages go to
 * stderr, which is muted while the target runs (FUZZ_VERBOSE=1 keeps it). */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/blk.h"
#include "cmd/cmd.h"
#include "fuzz/fuzz.h"
#include "protocols/mem.h"

/* A 64 KiB qcow2 header with backing file "base" and no clusters allocated:
 * enough for the open path; reads fall through to base. */
static uint8_t qcow2_img[512];
static uint8_t raw_img[4096];

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static void build_images(void)
{
    uint8_t *h = qcow2_img;
    memset(raw_img, 0xa5, sizeof(raw_img));
    memcpy(h, "QFI\xfb", 4);
    put_be32(h + 4, 2);                 /* version */
    put_be64(h + 8, 200);               /* backing_file_offset */
    put_be32(h + 16, 4);                /* backing_file_size */
    put_be32(h + 20, 16);               /* cluster_bits: 64 KiB */
    put_be64(h + 24, 4096);             /* size */
    put_be32(h + 36, 1);                /* l1_size */
    put_be64(h + 40, 3 << 16);          /* l1_table_offset (past EOF reads as 0) */
    put_be64(h + 48, 1 << 16);          /* refcount_table_offset */
    put_be32(h + 56, 1);                /* refcount_table_clusters */
    memcpy(h + 200, "base", 4);
}

static bool names_network(const json_t *v)
{
    const char *k;
    json_t *m;
    size_t i;

    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return strstr(s, "nbd") || strstr(s, "http") || strstr(s, "ftp") || strstr(s, "ssh") ||
               !strcmp(s, "file") || !strncmp(s, "host_", 5);
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, m)
            if (strstr(k, "nbd") || strstr(k, "http") || names_network(m))
                return true;
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, m)
            if (names_network(m))
                return true;
    }
    return false;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static bool quiet, inited;
    struct img_open_args a = { 0 };
    struct bds *bs;
    json_t *v;
    char *fn;
    int saved = -1, null = -1;

    if (!inited) {
        build_images();
        quiet = !getenv("FUZZ_VERBOSE");
        inited = true;
    }
    if (size > 4096)
        return 0;
    fn = malloc(size + 6);
    if (!fn)
        return 0;
    memcpy(fn, "json:", 5);
    memcpy(fn + 5, data, size);
    fn[size + 5] = '\0';
    v = json_loads(fn + 5, 0, NULL);
    bool skip = v && names_network(v);
    json_decref(v);
    if (skip || strlen(fn) != size + 5) {
        free(fn);
        return 0;
    }
    mem_file_clear();
    mem_set_exclusive(true);
    mem_file_add("/fuzz/img", qcow2_img, sizeof(qcow2_img));
    mem_file_add("/fuzz/base", raw_img, sizeof(raw_img));
    if (quiet) {
        fflush(stderr);
        saved = dup(2);
        null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (saved >= 0 && null >= 0)
            dup2(null, 2);
    }
    a.filename = fn;
    a.flags = BLK_O_SHARE;
    bs = img_open(&a);
    if (bs) {
        uint8_t b[512];
        if (blk_getlength(bs) >= (int64_t)sizeof(b))
            blk_pread(bs, 0, sizeof(b), b);
        blk_close(bs);
    }
    if (saved >= 0) {
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
    }
    if (null >= 0)
        close(null);
    mem_file_clear();
    free(fn);
    return 0;
}
