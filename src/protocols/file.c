/* The "file" protocol: a host file or block device.
 *
 * pread/pwrite with short-transfer loops, holes through SEEK_DATA/SEEK_HOLE,
 * zeroing and discard through fallocate, O_DIRECT for cache=none, and
 * qemu's image locking scheme so that qimg and a running QEMU see each
 * other: one OFD byte lock per held permission at 100+bit and one per
 * permission not shared with others at 200+bit. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/driver.h"
#include "util/xalloc.h"

enum {
    PERM_CONSISTENT_READ = 1 << 0,
    PERM_WRITE = 1 << 1,
    PERM_WRITE_UNCHANGED = 1 << 2,
    PERM_RESIZE = 1 << 3,
    PERM_ALL = 0xf,
    LOCK_PERM_BASE = 100,
    LOCK_SHARED_BASE = 200,
};

static const char *const perm_names[] = { "consistent read", "write", "write unchanged", "resize" };

struct file_state {
    int fd;
    pthread_mutex_t grow_lock;  /* held by every operation that extends the file */
    bool is_blockdev;
    bool has_fallocate;
    bool has_zero_range;
    bool has_punch;
    bool no_flush;
    bool early_writeback;       /* see note_written() */
    uint64_t unkicked;          /* bytes written since writeback was last started */
    bool locked;                /* took its lock bytes (not -U, not locking=off) */
};

/* A page-cached file whose flushes are honoured (cache=writeback:
 * rebase, commit, amend...) is flushed at close, and that fdatasync then
 * waits for everything the command wrote (rebase -b "" of the bench
 * overlay: 600 MiB, most of its wall time). Starting the writeback of
 * what was written every few MiB (sync_file_range without waiting) moves
 * that work under the command's own; the data and the flushes are the
 * same. Not for cache=unsafe (convert's default target: qemu-img never
 * flushes it, the page cache keeps it) nor O_DIRECT. */
#define WRITEBACK_KICK (8ULL << 20)

static void note_written(struct file_state *s, uint64_t len)
{
    if (!s->early_writeback)
        return;
    if (__atomic_add_fetch(&s->unkicked, len, __ATOMIC_RELAXED) < WRITEBACK_KICK)
        return;
    __atomic_store_n(&s->unkicked, 0, __ATOMIC_RELAXED);
    sync_file_range(s->fd, 0, 0, SYNC_FILE_RANGE_WRITE);    /* advice; errors come at the flush */
}

static int lock_test(int fd, off_t off)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

static int lock_byte(int fd, off_t off)
{
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

static int file_lock(int fd, unsigned perm, unsigned shared, const char *filename,
                     struct err *err)
{
    for (int i = 0; i < 4; i++) {
        if ((perm & (1u << i)) && lock_test(fd, LOCK_SHARED_BASE + i))
            return err_set(err, EAGAIN, "Failed to get \"%s\" lock\n"
                           "Is another process using the image [%s]?", perm_names[i], filename);
    }
    for (int i = 0; i < 4; i++) {
        if (!(shared & (1u << i)) && lock_test(fd, LOCK_PERM_BASE + i))
            return err_set(err, EAGAIN, "Failed to get shared \"%s\" lock\n"
                           "Is another process using the image [%s]?", perm_names[i], filename);
    }
    for (int i = 0; i < 4; i++) {
        int r = 0;
        if (perm & (1u << i))
            r = lock_byte(fd, LOCK_PERM_BASE + i);
        if (!r && !(shared & (1u << i)))
            r = lock_byte(fd, LOCK_SHARED_BASE + i);
        if (r == -EINVAL || r == -ENOTSUP || r == -ENOLCK)
            return 0;   /* filesystem without OFD locks: proceed unlocked like qemu's auto mode */
        if (r)
            return err_set_errno(err, -r, "Failed to lock byte %d", LOCK_PERM_BASE + i);
    }
    return 0;
}

/* The node's options as qemu's file driver takes them before it opens the
 * file: each value's type in its option list's order, then the aio and
 * locking enums and the pr-manager lookup (qemu-img defines no
 * persistent-reservation manager, so any name is unknown). */
static int file_parse_opts(const struct kvopts *opts, bool *aio_native, bool *no_lock,
                           struct err *err)
{
    static const char *const aio_modes[] = { "threads", "native", "io_uring" };
    const char *v;
    uint64_t n;
    bool b;
    int r;

    *aio_native = *no_lock = false;
    if (!opts)
        return 0;
    if ((v = kvopts_get(opts, "aio-max-batch")) &&
        (r = kvopts_parse_number("aio-max-batch", v, &n, err)) < 0)
        return r;
    if ((v = kvopts_get(opts, "drop-cache")) && (r = kvopts_parse_bool("drop-cache", v, &b, err)) < 0)
        return r;
    if ((v = kvopts_get(opts, "x-check-cache-dropped")) &&
        (r = kvopts_parse_bool("x-check-cache-dropped", v, &b, err)) < 0)
        return r;
    if ((v = kvopts_get(opts, "aio"))) {
        size_t i = 0;
        while (i < sizeof(aio_modes) / sizeof(aio_modes[0]) && strcmp(v, aio_modes[i]))
            i++;
        if (i == sizeof(aio_modes) / sizeof(aio_modes[0]))
            return err_set(err, EINVAL, "invalid parameter value: %s", v);
        *aio_native = i == 1;
    }
    if ((v = kvopts_get(opts, "locking"))) {
        if (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "auto"))
            return err_set(err, EINVAL, "invalid parameter value: %s", v);
        *no_lock = !strcmp(v, "off");
    }
    if ((v = kvopts_get(opts, "pr-manager")))
        return err_set(err, EINVAL, "No persistent reservation manager with id '%s'", v);
    return 0;
}

static int file_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct file_state *s = bs->opaque;
    int oflags = O_CLOEXEC | ((flags & BLK_O_RDWR) ? O_RDWR : O_RDONLY);
    const char *fn = bs->filename;
    bool aio_native, no_lock;
    struct stat st;
    int r;

    if (!strncmp(fn, "file:", 5))
        fn += 5;
    if (!fn[0])
        return err_set(err, EINVAL, "The 'file' block driver requires a file name");
    if ((r = file_parse_opts(opts, &aio_native, &no_lock, err)) < 0)
        return r;
    /* this node's own cache.direct (its type was checked by the core) */
    const char *direct = opts ? kvopts_get(opts, "cache.direct") : NULL;
    bool b;
    if (direct && kvopts_parse_bool("cache.direct", direct, &b, NULL) == 0)
        flags = b ? flags | BLK_O_NOCACHE : flags & ~BLK_O_NOCACHE;
    if (flags & BLK_O_NOCACHE)
        oflags |= O_DIRECT;
    s->fd = open(fn, oflags);
    if (s->fd < 0 && errno == EROFS && (flags & BLK_O_RDWR))
        return err_set_errno(err, errno, "Could not open '%s'", fn);
    if (s->fd < 0)
        return err_set_errno(err, errno, "Could not open '%s'", fn);
    if (fstat(s->fd, &st) < 0) {
        int e = errno;
        close(s->fd);
        return err_set_errno(err, e, "Could not stat '%s'", fn);
    }
    if (S_ISDIR(st.st_mode)) {
        close(s->fd);
        return err_set(err, EINVAL, "'file' driver requires '%s' to be a regular file", fn);
    }
    if (aio_native && !(flags & BLK_O_NOCACHE)) {
        close(s->fd);
        return err_set(err, EINVAL, "aio=native was specified, but it requires cache.direct=on, "
                       "which was not specified.");
    }
    s->is_blockdev = S_ISBLK(st.st_mode);
    pthread_mutex_init(&s->grow_lock, NULL);
    bs->dev = st.st_dev;
    bs->ino = st.st_ino;
    s->has_fallocate = s->has_zero_range = s->has_punch = true;
    s->no_flush = flags & BLK_O_NO_FLUSH;
    s->early_writeback = (flags & BLK_O_RDWR) && !(flags & (BLK_O_NO_FLUSH | BLK_O_NOCACHE)) &&
                         !s->is_blockdev;
    bs->request_alignment = (flags & BLK_O_NOCACHE) ? 4096 : 1;

    if (!(flags & BLK_O_SHARE) && !no_lock) {
        unsigned perm = PERM_CONSISTENT_READ;
        unsigned shared = (flags & BLK_O_LATE_SHARE) ? PERM_ALL
                                                     : PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
        if (flags & BLK_O_RDWR)
            perm |= PERM_WRITE | PERM_RESIZE;
        r = file_lock(s->fd, perm, shared, fn, err);
        s->locked = r == 0;
        if (r) {
            close(s->fd);
            return r;
        }
    }
    int64_t len = bs->drv->get_length(bs);
    if (len < 0) {
        close(s->fd);
        return err_set_errno(err, (int)-len, "Could not get the size of '%s'", fn);
    }
    bs->total_size = (uint64_t)len;
    return 0;
}

static int file_unshare(struct bds *bs, bool write, bool resize, struct err *err)
{
    struct file_state *s = bs->opaque;
    const char *fn = bs->filename;
    unsigned refuse = (write ? PERM_WRITE : 0) | (resize ? PERM_RESIZE : 0);

    if (!s->locked || !refuse)
        return 0;
    if (!strncmp(fn, "file:", 5))
        fn += 5;
    /* the shared set that remains; the permissions already held stay */
    return file_lock(s->fd, 0, PERM_ALL & ~refuse, fn, err);
}

static void file_close(struct bds *bs)
{
    struct file_state *s = bs->opaque;
    pthread_mutex_destroy(&s->grow_lock);
    close(s->fd);
}

static int file_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct file_state *s = bs->opaque;
    uint8_t *p = buf;

    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = pread(s->fd, p, chunk, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {           /* past the end of the file: reads as zeros */
            memset(p, 0, (size_t)len);
            return 0;
        }
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Parallel writers may extend the file at once: keep the largest end. */
static void grow_total_size(struct bds *bs, uint64_t end)
{
    uint64_t cur = __atomic_load_n(&bs->total_size, __ATOMIC_RELAXED);
    while (end > cur &&
           !__atomic_compare_exchange_n(&bs->total_size, &cur, end, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static int pwrite_all(int fd, const uint8_t *p, uint64_t off, uint64_t len)
{
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = pwrite(fd, p, chunk, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENOSPC;
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

static int file_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct file_state *s = bs->opaque;
    int r;
    (void)flags;

    if (off + len <= __atomic_load_n(&bs->total_size, __ATOMIC_RELAXED)) {
        r = pwrite_all(s->fd, buf, off, len);
    } else {
        /* Extending the file: serialize with other size changes so that
         * no ftruncate can ever cut off data written past the old end. */
        pthread_mutex_lock(&s->grow_lock);
        r = pwrite_all(s->fd, buf, off, len);
        if (r == 0)
            grow_total_size(bs, off + len);
        pthread_mutex_unlock(&s->grow_lock);
    }
    if (r == 0)
        note_written(s, len);
    return r;
}

static int write_zero_buffer(struct bds *bs, uint64_t off, uint64_t len)
{
    size_t bufsz = len < (1u << 20) ? (size_t)len : (1u << 20);
    void *zero = NULL;
    int r = 0;

    if (posix_memalign(&zero, 4096, bufsz ? align_up_u64(bufsz, 4096) : 4096))
        return -ENOMEM;
    memset(zero, 0, bufsz);
    while (len && !r) {
        size_t n = len < bufsz ? (size_t)len : bufsz;
        r = file_pwrite(bs, off, n, zero, 0);
        off += n;
        len -= n;
    }
    free(zero);
    return r;
}

static int file_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    struct file_state *s = bs->opaque;

    if (!s->is_blockdev && !(flags & BLK_WRITE_NO_FALLBACK) &&
        off >= __atomic_load_n(&bs->total_size, __ATOMIC_RELAXED)) {
        /* Beyond EOF: growing the file leaves a hole that reads as zero. */
        int r = 0;
        pthread_mutex_lock(&s->grow_lock);
        if (off + len > bs->total_size) {
            if (ftruncate(s->fd, (off_t)(off + len)) < 0)
                r = -errno;
            else
                grow_total_size(bs, off + len);
        }
        pthread_mutex_unlock(&s->grow_lock);
        return r;
    }
    if ((flags & BLK_WRITE_MAY_UNMAP) && s->has_punch && !s->is_blockdev) {
        if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0) {
            if (off + len > __atomic_load_n(&bs->total_size, __ATOMIC_RELAXED)) {
                int r = 0;
                pthread_mutex_lock(&s->grow_lock);
                if (off + len > bs->total_size) {
                    if (ftruncate(s->fd, (off_t)(off + len)) < 0)
                        r = -errno;
                    else
                        grow_total_size(bs, off + len);
                }
                pthread_mutex_unlock(&s->grow_lock);
                if (r)
                    return r;
            }
            return 0;
        }
        if (errno != EOPNOTSUPP && errno != ENOSYS)
            return -errno;
        s->has_punch = false;
    }
    if (s->has_zero_range && !s->is_blockdev) {
        if (fallocate(s->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0) {
            grow_total_size(bs, off + len);
            return 0;
        }
        if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
            return -errno;
        s->has_zero_range = false;
    }
    if (flags & BLK_WRITE_NO_FALLBACK)
        return -ENOTSUP;
    return write_zero_buffer(bs, off, len);
}

static int file_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    struct file_state *s = bs->opaque;

    if (s->is_blockdev) {
        uint64_t range[2] = { off, len };
        return ioctl(s->fd, BLKDISCARD, range) < 0 ? -errno : 0;
    }
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
        return errno == EOPNOTSUPP ? -ENOTSUP : -errno;
    return 0;
}

static int file_flush(struct bds *bs)
{
    struct file_state *s = bs->opaque;
    if (s->no_flush)
        return 0;
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

static int file_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, struct bds **file)
{
    struct file_state *s = bs->opaque;
    off_t data, hole;

    *map = off;
    *file = bs;
    if (s->is_blockdev) {
        *pnum = len;
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
    }
    data = lseek(s->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {   /* a hole up to the end of the file */
            *pnum = len;
            return BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
        }
        *pnum = len;            /* no SEEK_DATA support: everything is data */
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
    }
    if ((uint64_t)data > off) {
        *pnum = min_u64(len, (uint64_t)data - off);
        return BLK_STATUS_ZERO | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
    }
    hole = lseek(s->fd, (off_t)off, SEEK_HOLE);
    if (hole < 0 || (uint64_t)hole <= off)
        *pnum = len;
    else
        *pnum = min_u64(len, (uint64_t)hole - off);
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
}

static int64_t file_get_length(struct bds *bs)
{
    struct file_state *s = bs->opaque;
    struct stat st;

    if (s->is_blockdev) {
        uint64_t sz;
        if (ioctl(s->fd, BLKGETSIZE64, &sz) < 0)
            return -errno;
        return (int64_t)sz;
    }
    if (fstat(s->fd, &st) < 0)
        return -errno;
    return st.st_size;
}

static int64_t file_get_allocated_size(struct bds *bs)
{
    struct file_state *s = bs->opaque;
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return -errno;
    return (int64_t)st.st_blocks * 512;
}

/* Like qemu, write the first block of a file grown from empty, so that
 * later alignment probing of the image finds allocated data (this is also
 * why a new 100-byte raw image is 512 bytes long). Failures are ignored. */
static void allocate_first_block(int fd, uint64_t size)
{
    static const uint8_t zero[4096];
    size_t n = size < sizeof(zero) ? 512 : sizeof(zero);
    ssize_t w;
    do {
        w = pwrite(fd, zero, n, 0);
    } while (w < 0 && errno == EINTR);
}

/* Grow or shrink fd to size with the given preallocation of the new tail. */
static int file_resize_fd(int fd, uint64_t old, uint64_t size, enum blk_prealloc prealloc,
                          const char *fn, struct err *err)
{
    if (size > INT64_MAX)
        return err_set(err, EFBIG, "Image size too large");
    if (prealloc == BLK_PREALLOC_FALLOC && size > old) {
        int e = posix_fallocate(fd, (off_t)old, (off_t)(size - old));
        if (e != 0)
            return err_set_errno(err, e, "Could not preallocate new data");
        if (old == 0)
            allocate_first_block(fd, size);
        return 0;
    }
    if (prealloc == BLK_PREALLOC_FULL && size > old) {
        uint64_t off = old;
        size_t bufsz = 1u << 20;
        void *zero = calloc(1, bufsz);
        if (!zero)
            return err_set(err, ENOMEM, "Could not allocate buffer");
        if (ftruncate(fd, (off_t)size) < 0) {
            free(zero);
            return err_set_errno(err, errno, "Could not resize file");
        }
        while (off < size) {
            size_t n = (size_t)min_u64(bufsz, size - off);
            ssize_t w = pwrite(fd, zero, n, (off_t)off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = w < 0 ? errno : ENOSPC;
                free(zero);
                return err_set_errno(err, e, "Could not write zeros for preallocation");
            }
            off += (uint64_t)w;
        }
        free(zero);
        if (fsync(fd) < 0)
            return err_set_errno(err, errno, "Could not flush file to disk");
        return 0;
    }
    if (ftruncate(fd, (off_t)size) < 0)
        return err_set_errno(err, errno, "Could not resize file");
    (void)fn;
    if (old == 0 && size > 0)
        allocate_first_block(fd, size);
    return 0;
}

static int file_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                         struct err *err)
{
    struct file_state *s = bs->opaque;
    int64_t cur = file_get_length(bs);
    int r;

    if (cur < 0)
        return err_set_errno(err, (int)-cur, "Failed to get file size");
    if (s->is_blockdev) {
        if (size > (uint64_t)cur || (exact && size != (uint64_t)cur))
            return err_set(err, ENOTSUP, "Cannot grow device files");
        return 0;
    }
    if (!exact && size <= (uint64_t)cur)
        return 0;
    r = file_resize_fd(s->fd, (uint64_t)cur, size, prealloc, bs->filename, err);
    if (r == 0)
        bs->total_size = size;
    return r;
}

static const struct opt_desc file_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "nocow", OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)", NULL },
    { "preallocation", OPT_STRING, "Preallocation mode (allowed values: off, falloc, full)", NULL },
    { "extent_size_hint", OPT_SIZE, "Extent size hint for the image file, 0 to disable", NULL },
    { NULL, 0, NULL, NULL },
};

static int file_create(const char *filename, struct kvopts *opts, struct err *err)
{
    uint64_t size = 0, hint = 0;
    enum blk_prealloc prealloc = BLK_PREALLOC_OFF;
    bool nocow = false;
    int fd, r;
    struct stat st;

    if (!strncmp(filename, "file:", 5))
        filename += 5;
    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0 ||
        (r = kvopts_get_bool(opts, "nocow", false, &nocow, err)) < 0 ||
        (r = kvopts_get_size(opts, "extent_size_hint", 1 << 20, &hint, err)) < 0)
        return r;
    if (kvopts_has(opts, "preallocation") &&
        (r = blk_parse_prealloc(kvopts_get(opts, "preallocation"),
                                1u << BLK_PREALLOC_OFF | 1u << BLK_PREALLOC_FALLOC |
                                1u << BLK_PREALLOC_FULL, &prealloc, err)) < 0)
        return r;
    if (size > INT64_MAX - 511)
        return err_set(err, EINVAL, "Image size too large");
    size = align_up_u64(size, 512);     /* qemu creates whole sectors */

    fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set_errno(err, errno, "Could not create '%s'", filename);
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        /* Like qemu: take the write and resize locks (sharing everything)
         * before touching the file, so that an image another open holds
         * without sharing writes (convert's own source: `convert a a`) is
         * refused rather than truncated; the locks go with the fd. */
        if ((r = file_lock(fd, PERM_WRITE | PERM_RESIZE, PERM_ALL, filename, err)) < 0)
            goto out;
        /* Then truncate to zero, and grow with preallocation. */
        if (ftruncate(fd, 0) < 0) {
            r = err_set_errno(err, errno, "Could not clear file");
            goto out;
        }
        r = file_resize_fd(fd, 0, size, prealloc, filename, err);
    } else {
        r = 0;
    }
out:
    if (close(fd) < 0 && r == 0)
        r = err_set_errno(err, errno, "Could not close the new file");
    return r;
}

static bool file_has_zero_init(struct bds *bs)
{
    struct file_state *s = bs->opaque;
    return !s->is_blockdev;
}

static bool file_claims(const char *filename)
{
    return !strncmp(filename, "file:", 5);
}

/* In-kernel copy between two files (reflinks where the filesystem shares
 * extents). */
static int file_copy_range(struct bds *src, uint64_t soff, struct bds *dst, uint64_t doff,
                           uint64_t len)
{
    struct file_state *ss = src->opaque, *ds = dst->opaque;
    bool grows = doff + len > __atomic_load_n(&dst->total_size, __ATOMIC_RELAXED);
    int r = 0;

    if (grows)
        pthread_mutex_lock(&ds->grow_lock);
    while (len) {
        loff_t in = (loff_t)soff, out = (loff_t)doff;
        ssize_t n = copy_file_range(ss->fd, &in, ds->fd, &out, (size_t)min_u64(len, 1u << 30), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL ? -ENOTSUP : -errno;
            break;
        }
        if (n == 0) {
            r = -EIO;       /* the source ended early */
            break;
        }
        soff += (uint64_t)n;
        doff += (uint64_t)n;
        len -= (uint64_t)n;
    }
    if (r == 0 && grows)
        grow_total_size(dst, doff);
    if (grows)
        pthread_mutex_unlock(&ds->grow_lock);
    return r;
}

const struct blk_driver file_driver = {
    .name = "file",
    .kind = BLK_KIND_PROTOCOL,
    .instance_size = sizeof(struct file_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .create_opts = file_create_opts,
    .claims = file_claims,
    .open = file_open,
    .unshare = file_unshare,
    .close = file_close,
    .create = file_create,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .pwrite_zeroes = file_pwrite_zeroes,
    .discard = file_discard,
    .flush = file_flush,
    .copy_range = file_copy_range,
    .block_status = file_block_status,
    .get_length = file_get_length,
    .get_allocated_size = file_get_allocated_size,
    .truncate = file_truncate,
    .has_zero_init = file_has_zero_init,
};
