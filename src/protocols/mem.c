/* The "mem" protocol (see mem.h): nodes over registered, read-only memory
 * buffers. Used by the fuzz targets (fuzz/) so that hostile images, and the
 * backing files and extents they name, never touch the host: in exclusive
 * mode every filename resolves here.
 *
 * Invariants: a node's buffer lives at least as long as the node (the
 * caller's promise); reads past the end read as zeros, like the file
 * protocol; node identity (dev, ino) is (MEM_DEV, slot + 1) so the core's
 * backing-loop check works on memory files too. */
#include <errno.h>
#include <string.h>

#include "block/driver.h"
#include "protocols/mem.h"

#define MEM_MAX_FILES 16
#define MEM_DEV ((dev_t)0x6d656d)       /* "mem": no real device has it */

struct mem_file {
    const char *name;
    const uint8_t *data;
    size_t len;
};

static struct mem_file mem_files[MEM_MAX_FILES];
static size_t mem_nfiles;
static bool mem_exclusive;
static long mem_reads_left = -1;

int mem_file_add(const char *name, const void *data, size_t len)
{
    for (size_t i = 0; i < mem_nfiles; i++)
        if (!strcmp(mem_files[i].name, name))
            return -EEXIST;
    if (mem_nfiles >= MEM_MAX_FILES)
        return -ENOSPC;
    mem_files[mem_nfiles++] = (struct mem_file){ .name = name, .data = data, .len = len };
    return 0;
}

void mem_file_clear(void)
{
    mem_nfiles = 0;
    mem_exclusive = false;
    mem_reads_left = -1;
}

void mem_set_exclusive(bool on) { mem_exclusive = on; }
void mem_set_fail_after(long n) { mem_reads_left = n; }

struct mem_state {
    const struct mem_file *f;
};

static bool mem_claims(const char *filename)
{
    return mem_exclusive || !strncmp(filename, "mem:", 4);
}

static int mem_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct mem_state *s = bs->opaque;
    (void)opts;

    for (size_t i = 0; i < mem_nfiles; i++) {
        if (!strcmp(mem_files[i].name, bs->filename)) {
            if (flags & BLK_O_RDWR)
                return err_set_errno(err, EROFS, "Could not open '%s'", bs->filename);
            s->f = &mem_files[i];
            bs->dev = MEM_DEV;
            bs->ino = (ino_t)(i + 1);
            bs->total_size = mem_files[i].len;
            return 0;
        }
    }
    return err_set_errno(err, ENOENT, "Could not open '%s'", bs->filename);
}

static int mem_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    const struct mem_state *s = bs->opaque;
    uint64_t n = 0;

    if (mem_reads_left == 0)
        return -EIO;
    if (mem_reads_left > 0)
        mem_reads_left--;
    if (off < s->f->len)
        n = min_u64(len, s->f->len - off);
    if (n)
        memcpy(buf, s->f->data + off, (size_t)n);
    memset((uint8_t *)buf + n, 0, (size_t)(len - n));
    return 0;
}

static int mem_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, struct bds **file)
{
    const struct mem_state *s = bs->opaque;

    *map = off;
    *file = bs;
    if (off >= s->f->len) {
        *pnum = len;
        return BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
    }
    *pnum = min_u64(len, s->f->len - off);
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
}

static int64_t mem_get_allocated_size(struct bds *bs)
{
    const struct mem_state *s = bs->opaque;
    return (int64_t)s->f->len;
}

static bool mem_has_zero_init(struct bds *bs)
{
    (void)bs;
    return true;
}

const struct blk_driver mem_driver = {
    .name = "mem",
    .kind = BLK_KIND_PROTOCOL,
    .instance_size = sizeof(struct mem_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .claims = mem_claims,
    .open = mem_open,
    .pread = mem_pread,
    .block_status = mem_block_status,
    .get_allocated_size = mem_get_allocated_size,
    .has_zero_init = mem_has_zero_init,
};
