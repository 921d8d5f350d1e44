/* qemu-img bench: issue N read or write requests of one size, up to
 * `depth` at a time, and time them. Requests go round the image from the
 * start offset in steps; with --flush-interval a flush follows every that
 * many requests (after draining unless --no-drain). Concurrency comes from
 * worker threads, each with its own buffer slice. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cmd/cmd.h"

#define BENCH_MAX_THREADS 16

struct bench {
    struct bds *bs;
    uint64_t image_size, offset, step;
    size_t bufsize;
    bool write;
    uint8_t *buf;
    pthread_mutex_t lock;
    long next, end;        /* request indices of the current batch */
    int error;
};

static void *bench_worker(void *opaque)
{
    struct bench *b = opaque;
    for (;;) {
        long i;
        uint64_t off;
        pthread_mutex_lock(&b->lock);
        if (b->error || b->next >= b->end) {
            pthread_mutex_unlock(&b->lock);
            return NULL;
        }
        i = b->next++;
        off = b->offset;
        b->offset = (b->offset + b->step) % b->image_size;
        pthread_mutex_unlock(&b->lock);
        (void)i;
        /* qemu's block layer refuses requests past the end of the image */
        int r = off + b->bufsize > b->image_size ? -EIO : b->write ? blk_pwrite(b->bs, off, b->bufsize, b->buf, 0)
                         : blk_pread(b->bs, off, b->bufsize, b->buf);
        if (r < 0) {
            pthread_mutex_lock(&b->lock);
            b->error = r;
            pthread_mutex_unlock(&b->lock);
        }
    }
}

static int run_batch(struct bench *b, long count, int threads)
{
    pthread_t tid[BENCH_MAX_THREADS];
    int n = 0;
    b->end = b->next + count;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[n], NULL, bench_worker, b) == 0)
            n++;
    if (n == 0)
        bench_worker(b);
    for (int i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
    return b->error;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-')
        return -1;
    unsigned long v = strtoul(s, &end, 0);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "pattern", required_argument, NULL, 258 },
        { "no-drain", no_argument, NULL, 259 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool quiet = false, image_opts = false, is_write = false, force_share = false, drain = true;
    bool native_aio = false;
    unsigned long count = 75000, depth = 64, pattern = 0, flush_interval = 0;
    int64_t offset = 0, sval;
    size_t bufsize = 4096, step = 0;
    int c, flags = 0, ret = 1;
    struct bds *bs = NULL;
    struct bench b;

    memset(&b, 0, sizeof(b));
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'c':
            if (parse_ulong(optarg, INT_MAX, &count) < 0) {
                error_report("Invalid request count specified");
                return 1;
            }
            break;
        case 'd':
            if (parse_ulong(optarg, INT_MAX, &depth) < 0) {
                error_report("Invalid queue depth specified");
                return 1;
            }
            break;
        case 'f': fmt = optarg; break;
        case 'n': native_aio = true; break;
        case 'i':
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") && strcmp(optarg, "io_uring")) {
                error_report("Invalid aio option: %s", optarg);
                return 1;
            }
            if (!strcmp(optarg, "native"))
                native_aio = true;      /* "threads" does not undo it, as in qemu */
            break;
        case 'o':
            if ((offset = cvtnum("offset", optarg)) < 0)
                return 1;
            break;
        case 'q': quiet = true; break;
        case 's':
            if ((sval = cvtnum("buffer size", optarg)) < 0)
                return 1;
            if (sval > INT_MAX) {
                error_report("Invalid buffer size specified. Must be between 0 and %d.", INT_MAX);
                return 1;
            }
            bufsize = (size_t)sval;
            break;
        case 'S':
            if ((sval = cvtnum("step_size", optarg)) < 0)
                return 1;
            if (sval > INT_MAX) {
                error_report("Invalid step_size specified. Must be between 0 and %d.", INT_MAX);
                return 1;
            }
            step = (size_t)sval;
            break;
        case 't':
            if (parse_cache_mode(optarg, &flags) < 0) {
                error_report("Invalid cache mode");
                return 1;
            }
            break;
        case 'w':
            flags |= BLK_O_RDWR;
            is_write = true;
            break;
        case 'U': force_share = true; break;
        case 258:
            if (parse_ulong(optarg, 0xff, &pattern) < 0) {
                error_report("Invalid pattern byte specified");
                return 1;
            }
            break;
        case 256:
            if (parse_ulong(optarg, INT_MAX, &flush_interval) < 0) {
                error_report("Invalid flush interval specified");
                return 1;
            }
            break;
        case 259: drain = false; break;
        case 257: image_opts = true; break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    if (!is_write && flush_interval) {
        error_report("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        error_report("Flush interval can't be smaller than depth");
        return 1;
    }
    /* Linux native AIO needs O_DIRECT: qemu's file protocol refuses it at
     * open time, after finding the file but before probing its format. */
    if (native_aio && !(flags & BLK_O_NOCACHE) && (image_opts || access(argv[argc - 1], F_OK) == 0)) {
        error_report("Could not open '%s': aio=native was specified, but it requires "
                     "cache.direct=on, which was not specified.", argv[argc - 1]);
        return 1;
    }
    struct img_open_args a = { .filename = argv[argc - 1], .fmt = fmt, .image_opts = image_opts,
                               .flags = flags | (force_share ? BLK_O_SHARE : 0), .quiet = quiet };
    bs = img_open(&a);
    if (!bs)
        return 1;
    int64_t size = blk_getlength(bs);
    if (size <= 0)
        goto out;
    b.bs = bs;
    b.image_size = (uint64_t)size;
    b.bufsize = bufsize;
    b.step = step ? step : bufsize;
    b.offset = (uint64_t)offset;
    b.write = is_write;
    pthread_mutex_init(&b.lock, NULL);
    printf("Sending %d %s requests, %d bytes each, %d in parallel "
           "(starting at offset %lld, step size %d)\n",
           (int)count, is_write ? "write" : "read", (int)bufsize, (int)depth,
           (long long)offset, (int)b.step);
    if (flush_interval)
        printf("Sending flush every %d requests\n", (int)flush_interval);
    fflush(stdout);
    if (posix_memalign((void **)&b.buf, 4096, bufsize ? bufsize : 1)) {
        error_report("Could not allocate buffer");
        goto out;
    }
    memset(b.buf, (int)pattern, bufsize);
    int threads = (int)(depth < BENCH_MAX_THREADS ? depth : BENCH_MAX_THREADS);
    if (threads < 1)
        threads = 1;

    struct timeval t1, t2;
    gettimeofday(&t1, NULL);
    int r = 0;
    for (unsigned long done = 0; done < count && r == 0;) {
        unsigned long batch = flush_interval ? flush_interval : count;
        if (batch > count - done)
            batch = count - done;
        r = run_batch(&b, (long)batch, threads);
        done += batch;
        if (r == 0 && flush_interval && done % flush_interval == 0) {
            (void)drain;    /* batches drain anyway; --no-drain only relaxes ordering */
            if ((r = blk_flush(bs)) < 0) {
                error_report("Failed flush request: %s", strerror(-r));
                goto out;
            }
        }
    }
    gettimeofday(&t2, NULL);
    if (r < 0) {
        error_report("Failed request: %s", strerror(-r));
        goto out;
    }
    printf("Run completed in %3.3f seconds.\n",
           (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_usec - t1.tv_usec) / 1000000);
    ret = 0;
out:
    free(b.buf);
    if (bs)
        blk_close(bs);
    return ret;
}
