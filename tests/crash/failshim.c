/* tests/crash/failshim.c — an LD_PRELOAD fault injector for the tests only.
 *
 * It stands in front of the C library's write, flush and allocation calls
 * (pwrite/pwritev/write, fsync/fdatasync, fallocate/posix_fallocate) and
 * makes them fail with a chosen errno, as a disk that goes bad or runs full
 * would, so that the tests can see what qimg does with -EIO and -ENOSPC.
 * Nothing here is part of qimg; meson builds it only as a test module.
 *
 * Environment:
 *   FAILSHIM_PATH   only calls on descriptors whose path (/proc/self/fd)
 *                   contains this string are counted and failed (required:
 *                   without it the shim does nothing)
 *   FAILSHIM_OP     write | flush | fallocate | any   (default write)
 *   FAILSHIM_AFTER  let this many matching calls succeed, fail the next ones
 *                   (default 0)
 *   FAILSHIM_TIMES  fail this many calls, then succeed again (default: all,
 *                   as a full disk stays full)
 *   FAILSHIM_ERRNO  EIO | ENOSPC | a number   (default EIO)
 *   FAILSHIM_COUNT  a file: at exit, the number of matching calls seen is
 *                   written there (to choose AFTER values from a clean run)
 *
 * Invariants: descriptors are matched by path on every call (descriptors
 * are reused, so nothing is cached); counting is atomic so the copy
 * engine's worker threads share one sequence. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum op_class { OP_WRITE = 1, OP_FLUSH = 2, OP_FALLOC = 4 };

static const char *shim_path;
static int shim_ops = OP_WRITE;
static long shim_after;
static long shim_times = -1;
static int shim_errno = EIO;
static atomic_long shim_seen;
static atomic_int shim_ready;

static void shim_report(void)
{
    const char *f = getenv("FAILSHIM_COUNT");
    if (!f)
        return;
    FILE *fp = fopen(f, "w");
    if (fp) {
        fprintf(fp, "%ld\n", (long)atomic_load(&shim_seen));
        fclose(fp);
    }
}

static void shim_init(void)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&shim_ready, &expected, 1))
        return;
    const char *v;
    shim_path = getenv("FAILSHIM_PATH");
    if (shim_path && !shim_path[0])
        shim_path = NULL;
    if ((v = getenv("FAILSHIM_OP"))) {
        if (!strcmp(v, "flush"))
            shim_ops = OP_FLUSH;
        else if (!strcmp(v, "fallocate"))
            shim_ops = OP_FALLOC;
        else if (!strcmp(v, "any"))
            shim_ops = OP_WRITE | OP_FLUSH | OP_FALLOC;
        else
            shim_ops = OP_WRITE;
    }
    if ((v = getenv("FAILSHIM_AFTER")))
        shim_after = strtol(v, NULL, 10);
    if ((v = getenv("FAILSHIM_TIMES")))
        shim_times = strtol(v, NULL, 10);
    if ((v = getenv("FAILSHIM_ERRNO"))) {
        if (!strcmp(v, "EIO"))
            shim_errno = EIO;
        else if (!strcmp(v, "ENOSPC"))
            shim_errno = ENOSPC;
        else if (atoi(v) > 0)
            shim_errno = atoi(v);
    }
    if (shim_path && getenv("FAILSHIM_COUNT"))
        atexit(shim_report);
}

/* Should this call on fd fail? Sets errno when it should. */
static int shim_fail(int fd, int op)
{
    char link[64], target[4096];
    ssize_t n;

    shim_init();
    if (!shim_path || !(shim_ops & op))
        return 0;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    int saved = errno;
    n = readlink(link, target, sizeof(target) - 1);
    errno = saved;
    if (n <= 0)
        return 0;
    target[n] = '\0';
    if (!strstr(target, shim_path))
        return 0;
    long k = atomic_fetch_add(&shim_seen, 1);
    if (k < shim_after)
        return 0;
    if (shim_times >= 0 && k >= shim_after + shim_times)
        return 0;
    errno = shim_errno;
    return 1;
}

#define NEXT(type, name, ...)                                              \
    static type (*next)(__VA_ARGS__);                                      \
    if (!next)                                                             \
        *(void **)&next = dlsym(RTLD_NEXT, name)

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    NEXT(ssize_t, "pwrite", int, const void *, size_t, off_t);
    return shim_fail(fd, OP_WRITE) ? -1 : next(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off);
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    NEXT(ssize_t, "pwrite64", int, const void *, size_t, off64_t);
    return shim_fail(fd, OP_WRITE) ? -1 : next(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n);
ssize_t write(int fd, const void *buf, size_t n)
{
    NEXT(ssize_t, "write", int, const void *, size_t);
    return fd > 2 && shim_fail(fd, OP_WRITE) ? -1 : next(fd, buf, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    NEXT(ssize_t, "pwritev", int, const struct iovec *, int, off_t);
    return shim_fail(fd, OP_WRITE) ? -1 : next(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off);
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    NEXT(ssize_t, "pwritev64", int, const struct iovec *, int, off64_t);
    return shim_fail(fd, OP_WRITE) ? -1 : next(fd, iov, cnt, off);
}

int fsync(int fd);
int fsync(int fd)
{
    NEXT(int, "fsync", int);
    return shim_fail(fd, OP_FLUSH) ? -1 : next(fd);
}

int fdatasync(int fd);
int fdatasync(int fd)
{
    NEXT(int, "fdatasync", int);
    return shim_fail(fd, OP_FLUSH) ? -1 : next(fd);
}

int fallocate(int fd, int mode, off_t off, off_t len);
int fallocate(int fd, int mode, off_t off, off_t len)
{
    NEXT(int, "fallocate", int, int, off_t, off_t);
    return shim_fail(fd, OP_FALLOC) ? -1 : next(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len);
int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
    NEXT(int, "fallocate64", int, int, off64_t, off64_t);
    return shim_fail(fd, OP_FALLOC) ? -1 : next(fd, mode, off, len);
}

/* posix_fallocate returns the error number instead of setting errno. */
int posix_fallocate(int fd, off_t off, off_t len);
int posix_fallocate(int fd, off_t off, off_t len)
{
    NEXT(int, "posix_fallocate", int, off_t, off_t);
    return shim_fail(fd, OP_FALLOC) ? errno : next(fd, off, len);
}

int posix_fallocate64(int fd, off64_t off, off64_t len);
int posix_fallocate64(int fd, off64_t off, off64_t len)
{
    NEXT(int, "posix_fallocate64", int, off64_t, off64_t);
    return shim_fail(fd, OP_FALLOC) ? errno : next(fd, off, len);
}
