/* Fuzz target for one image format family: FUZZ_FORMAT names the driver
 * ("qcow2", ...) or is NULL to let probing choose (every probe runs).
 *
 * The input (with optional extra files, see fuzz.h) is served by the mem
 * protocol and walked the way the commands walk an image:
 *   1. info:  open without backing and without I/O (as `qimg info`), build
 *             ImageInfo JSON (get_info, snapshot list, specific_info) and
 *             render it as qemu's JSON and human text;
 *   2. data:  open with the backing chain, walk block_status of the top
 *             layer and reread every DATA range with pread, walk the whole
 *             chain as map does, then load the first internal snapshot and
 *             read from it;
 *   3. check: open for check (read-only) and run check without repair.
 * Work per input is bounded (iterations and bytes read) so that huge
 * virtual sizes cost no more than small ones. Any crash, sanitizer report,
 * leak or hang is a bug in the drivers. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "block/blk.h"
#include "cmd/imageinfo.h"
#include "fuzz/fuzz.h"
#include "protocols/mem.h"
#include "util/kvopts.h"
#include "util/qjson.h"
#include "util/secret.h"
#include "util/strbuf.h"

#ifndef FUZZ_FORMAT
#define FUZZ_FORMAT NULL
#endif

#define MAX_STEPS 512                   /* block_status calls per walk */
#define MAX_READ (1u << 20)             /* bytes per pread */
#define MAX_TOTAL_READ (16u << 20)      /* bytes read per walk */
#define FUZZ_SECRET "fuzzsec"

static uint8_t *buf;

static void setup_once(void)
{
    if (buf)
        return;
    buf = malloc(MAX_READ);
    /* The passphrase of the seed images (fuzz/make-corpus.sh). */
    secret_add(FUZZ_SECRET, strdup("qimg-fuzz"), 9);
}

static void add_key_opts(struct kvopts *o, const char *fmt)
{
    if (!fmt)
        return;
    if (!strcmp(fmt, "luks"))
        kvopts_set(o, "key-secret", FUZZ_SECRET);
    else if (!strcmp(fmt, "qcow2") || !strcmp(fmt, "qcow"))
        kvopts_set(o, "encrypt.key-secret", FUZZ_SECRET);
}

static struct bds *open_image(int flags, bool key)
{
    struct kvopts o;
    struct err e;
    struct bds *bs;

    mem_set_fail_after(fuzz_fail_after);
    kvopts_init(&o);
    if (key)
        add_key_opts(&o, FUZZ_FORMAT);
    err_init(&e);
    bs = blk_open(FUZZ_IMAGE, FUZZ_FORMAT, &o, flags, &e);
    kvopts_release(&o);
    return bs;
}

static void pass_info(void)
{
    struct bds *bs = open_image(BLK_O_NO_BACKING | BLK_O_NO_IO, false);
    struct strbuf sb;
    struct err e;
    json_t *info;

    if (!bs)
        return;
    err_init(&e);
    info = image_info_json(bs, &e);
    if (info) {
        strbuf_init(&sb);
        qjson_pretty(&sb, info);
        image_info_human(&sb, info);
        strbuf_release(&sb);
        json_decref(info);
    }
    blk_close(bs);
}

/* Top layer: block_status, then pread of what it calls data. */
static void walk_layer(struct bds *bs, int64_t size)
{
    uint64_t off = 0, total = 0;

    for (int i = 0; i < MAX_STEPS && off < (uint64_t)size; i++) {
        uint64_t pnum = 0, map = 0, len = (uint64_t)size - off;
        struct bds *file = NULL;
        int r = blk_block_status(bs, off, len, &pnum, &map, &file);
        if (r < 0 || pnum == 0)
            break;
        if (pnum > len)
            pnum = len;
        if ((r & BLK_STATUS_DATA) && total < MAX_TOTAL_READ) {
            uint64_t n = pnum < MAX_READ ? pnum : MAX_READ;
            if (blk_pread(bs, off, n, buf) < 0)
                break;
            total += n;
        }
        off += pnum;
    }
}

/* The whole chain as map and convert see it. */
static void walk_chain(struct bds *bs, int64_t size)
{
    uint64_t off = 0, total = 0;

    for (int i = 0; i < MAX_STEPS && off < (uint64_t)size; i++) {
        uint64_t pnum = 0, map = 0, len = (uint64_t)size - off;
        struct bds *file = NULL;
        int depth = 0;
        int r = blk_block_status_above(bs, NULL, off, len, &pnum, &map, &file, &depth);
        if (r < 0 || pnum == 0)
            break;
        if (pnum > len)
            pnum = len;
        if (!(r & BLK_STATUS_ZERO) && total < MAX_TOTAL_READ) {
            uint64_t n = pnum < MAX_READ ? pnum : MAX_READ;
            if (blk_pread(bs, off, n, buf) < 0)
                break;
            total += n;
        }
        off += pnum;
    }
}

static void pass_data(void)
{
    struct bds *bs = open_image(0, true);
    struct blk_snapshot *sn = NULL;
    struct err e;
    int64_t size;
    int n;

    if (!bs)
        return;
    size = blk_getlength(bs);
    if (size > 0) {
        walk_layer(bs, size);
        walk_chain(bs, size);
    }
    err_init(&e);
    n = blk_snapshot_list(bs, &sn, &e);
    if (n > 0) {
        err_init(&e);
        if (blk_snapshot_load_tmp(bs, sn[0].id_str, NULL, &e) == 0) {
            size = blk_getlength(bs);
            if (size > 0)
                walk_layer(bs, size);
        }
    }
    free(sn);
    blk_close(bs);
}

static void log_line(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
}

static void pass_check(void)
{
    struct bds *bs = open_image(BLK_O_CHECK | BLK_O_NO_BACKING, false);
    struct blk_check_result res;
    struct err e;

    if (!bs)
        return;
    memset(&res, 0, sizeof(res));
    res.log = log_line;
    err_init(&e);
    blk_check(bs, &res, 0, &e);
    blk_close(bs);
}

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    setup_once();
    fuzz_mem_setup(data, size);
    pass_info();
    pass_data();
    pass_check();
    fuzz_mem_teardown();
    return 0;
}
