/* The mem protocol's write faults (protocols/mem.h): which calls count,
 * once or sticky, EIO or (growing only) ENOSPC, nothing changed by a failed
 * call, read-only files and the unarmed default untouched. */
#include <errno.h>
#include <string.h>

#include "block/blk.h"
#include "protocols/mem.h"
#include "tap.h"

static uint8_t img[8192];

static struct bds *open_rw(void)
{
    struct err e;

    err_init(&e);
    return blk_open_protocol("mem:/w", BLK_O_RDWR, &e);
}

int main(void)
{
    uint8_t buf[512], got[512];
    struct bds *bs;
    struct err e;

    memset(img, 0x11, sizeof(img));
    memset(buf, 0x22, sizeof(buf));

    /* unarmed: everything works, as before */
    is_int(mem_file_add_rw("mem:/w", img, sizeof(img), 1 << 20), 0, "add writable");
    is_int(mem_file_add("mem:/r", img, sizeof(img)), 0, "add read-only");
    bs = open_rw();
    ok(bs != NULL, "open writable");
    is_int(blk_pwrite(bs, 0, 512, buf, 0), 0, "unarmed pwrite");
    is_int(blk_flush(bs), 0, "unarmed flush");
    is_uint(mem_write_faults_hit(), 0, "no faults hit");

    /* once: the third counted call fails, then all is well again */
    mem_set_write_faults(2, MEM_FAULT_KINDS);
    is_int(blk_pwrite(bs, 512, 512, buf, 0), 0, "call 1 succeeds");
    is_int(blk_flush(bs), 0, "call 2 succeeds");
    memset(buf, 0x33, sizeof(buf));
    is_int(blk_pwrite(bs, 1024, 512, buf, 0), -EIO, "call 3 fails with EIO");
    is_int(blk_pread(bs, 1024, 512, got), 0, "read after the failure");
    ok(got[0] == 0x11 && got[511] == 0x11, "the failed write changed nothing");
    is_int(blk_pwrite(bs, 1024, 512, buf, 0), 0, "call 4 succeeds (transient)");
    is_uint(mem_write_faults_hit(), 1, "one fault hit");

    /* sticky: from the failing call on, every counted call fails */
    mem_set_write_faults(0, MEM_FAULT_FLUSH | MEM_FAULT_STICKY);
    is_int(blk_pwrite(bs, 0, 512, buf, 0), 0, "pwrite not counted");
    is_int(blk_flush(bs), -EIO, "flush fails");
    is_int(blk_flush(bs), -EIO, "and again");
    is_int(blk_discard(bs, 2048, 512), 0, "discard not counted");
    is_uint(mem_write_faults_hit(), 2, "two faults hit");

    /* kinds: zero writes and discards count together, and fail unchanged */
    mem_set_write_faults(0, MEM_FAULT_ZERO | MEM_FAULT_STICKY);
    is_int(blk_pwrite_zeroes(bs, 0, 512, 0), -EIO, "pwrite_zeroes fails");
    is_int(blk_discard(bs, 0, 512), -EIO, "discard fails");
    is_int(blk_pread(bs, 0, 512, got), 0, "read");
    ok(got[0] == 0x33, "failed zero write and discard changed nothing");

    /* ENOSPC: only calls that grow the file count */
    mem_set_write_faults(0, MEM_FAULT_KINDS | MEM_FAULT_ENOSPC | MEM_FAULT_STICKY);
    is_int(blk_pwrite(bs, 0, 512, buf, 0), 0, "pwrite inside the file succeeds");
    is_int(blk_flush(bs), 0, "flush succeeds");
    is_int(blk_pwrite(bs, sizeof(img), 512, buf, 0), -ENOSPC, "growing pwrite fails with ENOSPC");
    err_init(&e);
    is_int(blk_truncate(bs, 3 * sizeof(img), true, BLK_PREALLOC_OFF, &e), -ENOSPC,
           "growing truncate fails with ENOSPC");
    ok(strstr(e.msg, "Could not resize file") != NULL, "with the file protocol's message");
    is_int(blk_getlength(bs), (int64_t)sizeof(img), "the size is unchanged");
    err_init(&e);
    is_int(blk_truncate(bs, 4096, true, BLK_PREALLOC_OFF, &e), 0, "shrinking truncate succeeds");

    /* disarmed: as before */
    mem_set_write_faults(-1, MEM_FAULT_KINDS);
    is_int(blk_pwrite(bs, 0, 512, buf, 0), 0, "disarmed pwrite");
    err_init(&e);
    is_int(blk_truncate(bs, sizeof(img), true, BLK_PREALLOC_OFF, &e), 0, "disarmed truncate");
    is_uint(mem_write_faults_hit(), 0, "disarming resets the count");
    blk_close(bs);

    /* read-only files never count */
    mem_set_write_faults(0, MEM_FAULT_KINDS | MEM_FAULT_STICKY);
    err_init(&e);
    bs = blk_open_protocol("mem:/r", 0, &e);
    ok(bs != NULL, "open read-only");
    is_int(blk_pread(bs, 0, 512, got), 0, "read");
    blk_close(bs);
    is_uint(mem_write_faults_hit(), 0, "no faults on a read-only file");

    mem_file_clear();
    is_uint(mem_write_faults_hit(), 0, "clear disarms");
    return done_testing();
}
