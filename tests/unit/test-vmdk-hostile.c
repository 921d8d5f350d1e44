/* vmdk on hostile input: header fields qemu rejects give qemu's messages,
 * and deterministic random corruption of the header, descriptor, grain
 * directories and grain tables of sparse and stream images never crashes
 * (the ASan/UBSan build runs this), only fails cleanly. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "block/blk.h"
#include "tap.h"

#define SIZE (1u << 20)

static uint32_t rng = 777;
static uint32_t next(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static char dir[] = "/tmp/qimg-vmdkh-XXXXXX";
static char good[128], stream[128], work[128];

static bool make(const char *path, const char *subformat)
{
    struct kvopts o;
    struct err e;
    struct bds *bs;
    uint8_t *buf = malloc(SIZE);
    bool okay = false;

    kvopts_init(&o);
    err_init(&e);
    kvopts_set(&o, "size", "1M");
    kvopts_set(&o, "subformat", subformat);
    if (blk_create("vmdk", path, &o, &e) < 0)
        goto out;
    bs = blk_open(path, "vmdk", NULL, BLK_O_RDWR, &e);
    if (!bs)
        goto out;
    for (uint32_t i = 0; i < SIZE; i++)
        buf[i] = (uint8_t)(i % 251);
    okay = true;
    for (uint32_t off = 0; off < SIZE; off += 65536)
        if ((off / 65536) % 2 == 0)
            okay &= blk_pwrite(bs, off, 65536, buf + off, BLK_WRITE_COMPRESSED) == 0;
    blk_close(bs);
out:
    kvopts_release(&o);
    free(buf);
    return okay;
}

static bool copy_file(const char *from, const char *to)
{
    static uint8_t buf[1 << 16];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool okay = in >= 0 && out >= 0;
    ssize_t n;
    while (okay && (n = read(in, buf, sizeof(buf))) > 0)
        okay = write(out, buf, (size_t)n) == n;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return okay;
}

static void patch(const char *path, uint64_t off, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
        if (pwrite(fd, bytes, n, (off_t)off) != (ssize_t)n)
            printf("# patch failed\n");
        close(fd);
    }
}

/* Open, read everything, walk block status and check: only clean errors. */
static void exercise(const char *path)
{
    struct err e;
    struct bds *bs;
    uint8_t *buf = malloc(SIZE);

    err_init(&e);
    bs = blk_open(path, "vmdk", NULL, 0, &e);
    if (bs) {
        uint64_t len = bs->total_size < SIZE ? bs->total_size : SIZE;
        if (len)
            (void)blk_pread(bs, 0, len, buf);
        for (uint64_t off = 0; off < len;) {
            uint64_t pnum = 0, map = 0;
            struct bds *f = NULL;
            if (blk_block_status(bs, off, len - off, &pnum, &map, &f) < 0 || !pnum)
                break;
            off += pnum;
        }
        struct blk_check_result res = { 0 };
        err_init(&e);
        (void)blk_check(bs, &res, 0, &e);
        blk_close(bs);
    }
    free(buf);
}

static void expect_open_error(const char *name, uint64_t off, const void *bytes, size_t n,
                              const char *msg)
{
    struct err e;
    struct bds *bs;

    copy_file(good, work);
    patch(work, off, bytes, n);
    err_init(&e);
    bs = blk_open(work, "vmdk", NULL, 0, &e);
    ok(bs == NULL, "%s: open fails", name);
    if (bs)
        blk_close(bs);
    else
        is_str(e.msg, msg, "%s: message", name);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(good, sizeof(good), "%s/good.vmdk", dir);
    snprintf(stream, sizeof(stream), "%s/stream.vmdk", dir);
    snprintf(work, sizeof(work), "%s/work.vmdk", dir);
    ok(make(good, "monolithicSparse"), "make a sparse image");
    ok(make(stream, "streamOptimized"), "make a stream image");

    expect_open_error("num_gtes 513", 44, "\x01\x02\x00\x00", 4, "L2 table size too big");
    expect_open_error("granularity 0", 20, "\x00", 1, "L1 entry size is invalid");
    expect_open_error("version 4", 4, "\x04", 1, "Unsupported VMDK version 4");
    expect_open_error("gd at end without footer", 56, "\xff\xff\xff\xff\xff\xff\xff\xff", 8,
                      "Invalid footer");
    expect_open_error("grain offset past the end", 64, "\x00\x00\x01", 3,
                      "File truncated, expecting at least 33554432 bytes");
    expect_open_error("granularity 4 Mi sectors", 20, "\x00\x00\x40", 3,
                      "Invalid granularity, image may be corrupt");
    expect_open_error("capacity 2^60 sectors", 12, "\xff\xff\xff\xff\xff\xff\xff\x0f", 8,
                      "Could not refresh total sector count: File too large");
    {
        char xs[300], msg[300];
        memset(xs, 'x', sizeof(xs));
        snprintf(msg, sizeof(msg), "Could not open '%s': Invalid argument", work);
        expect_open_error("descriptor without CID", 0x200, xs, sizeof(xs), msg);
    }

    /* Random corruption: bytes of the first 160 KiB (header, descriptor,
     * both grain directories and their tables, first grains). */
    const char *bases[] = { good, stream };
    for (int b = 0; b < 2; b++) {
        for (int round = 0; round < 100; round++) {
            copy_file(bases[b], work);
            int nflips = 1 + (int)(next() % 8);
            for (int k = 0; k < nflips; k++) {
                uint8_t v = (uint8_t)next();
                uint64_t off = next() % (round % 3 == 0 ? 512 : 160 * 1024);
                patch(work, off, &v, 1);
            }
            exercise(work);
        }
    }
    ok(true, "random corruption rounds ran without crashing");

    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
