/* The fuzz targets as plain regression tests (zstd's habit): every target's
 * entry point runs over the inputs saved in fuzz/regressions/<target>/ (and
 * fuzz/corpus/<target>/ when FUZZ_CORPUS=1), each input in a child process so
 * that a crash, a sanitizer report or a leak fails that input alone. Output
 * is TAP, for tests/run-tests.sh.
 *
 *   fuzz-regression                       all targets, saved inputs (a
 *                                         target <fmt>_rw also replays
 *                                         regressions/<fmt>/)
 *   fuzz-regression TARGET FILE|DIR...    one target over the given inputs,
 *                                         in this process (for debugging)
 *
 * Inputs are found relative to the source tree (FUZZ_DIR overrides). */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz-targets.h"

#define T(name) int fuzz_##name(const unsigned char *data, size_t size);
FUZZ_TARGETS
#undef T

struct target {
    const char *name;
    int (*fn)(const unsigned char *data, size_t size);
};

#define T(name) { #name, fuzz_##name },
static const struct target targets[] = { FUZZ_TARGETS };
#undef T
#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

static int run_file(const struct target *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    do {
        if (len == cap) {
            unsigned char *p = realloc(data, cap = cap ? cap * 2 : 65536);
            if (!p) {
                free(data);
                fclose(f);
                return -1;
            }
            data = p;
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
    } while (n);
    fclose(f);
    t->fn(data, len);
    free(data);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted regular files of dir (malloc'ed paths); count in *n. */
static char **list_dir(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    size_t cap = 0;

    *n = 0;
    if (!d)
        return NULL;
    while ((de = readdir(d))) {
        struct stat st;
        char *p;
        if (de->d_name[0] == '.')
            continue;
        if (asprintf(&p, "%s/%s", dir, de->d_name) < 0)
            break;
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        if (*n == cap) {
            char **nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));
            if (!nv) {
                free(p);
                break;
            }
            v = nv;
        }
        v[(*n)++] = p;
    }
    closedir(d);
    if (v)
        qsort(v, *n, sizeof(*v), cmp_str);
    return v;
}

static const struct target *find_target(const char *name)
{
    for (size_t i = 0; i < NTARGETS; i++)
        if (!strcmp(targets[i].name, name))
            return &targets[i];
    return NULL;
}

static int run_args(int argc, char **argv)
{
    const struct target *t = find_target(argv[1]);
    if (!t) {
        fprintf(stderr, "unknown target '%s'; targets:", argv[1]);
        for (size_t i = 0; i < NTARGETS; i++)
            fprintf(stderr, " %s", targets[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            size_t n;
            char **v = list_dir(argv[i], &n);
            for (size_t k = 0; k < n; k++) {
                fprintf(stderr, "Running: %s\n", v[k]);
                run_file(t, v[k]);
                free(v[k]);
            }
            free(v);
        } else {
            fprintf(stderr, "Running: %s\n", argv[i]);
            if (run_file(t, argv[i]) < 0)
                return 1;
        }
    }
    return 0;
}

struct item {
    const struct target *t;
    char *path;
};

int main(int argc, char **argv)
{
    const char *root = getenv("FUZZ_DIR");
    bool corpus = getenv("FUZZ_CORPUS") && !strcmp(getenv("FUZZ_CORPUS"), "1");
    struct item *items = NULL;
    size_t nitems = 0, cap = 0;
    int failed = 0;
    char dir[4096];

    if (argc >= 2)
        return run_args(argc, argv);
    if (!root)
        root = FUZZ_SOURCE_ROOT "/fuzz";
    for (size_t i = 0; i < NTARGETS; i++) {
        /* A write-path target "<fmt>_rw" also replays the inputs saved for
         * "<fmt>": every hostile image found so far goes through repair,
         * writes, resize and snapshots as well. */
        const char *name = targets[i].name;
        size_t nlen = strlen(name);
        bool rw = nlen > 3 && !strcmp(name + nlen - 3, "_rw");
        for (int pass = 0; pass < (corpus ? 2 : 1) + rw; pass++) {
            size_t n;
            if (pass == (corpus ? 2 : 1))
                snprintf(dir, sizeof(dir), "%s/regressions/%.*s", root, (int)(nlen - 3), name);
            else
                snprintf(dir, sizeof(dir), "%s/%s/%s", root, pass ? "corpus" : "regressions",
                         name);
            char **v = list_dir(dir, &n);
            for (size_t k = 0; k < n; k++) {
                if (nitems == cap) {
                    struct item *ni = realloc(items, (cap = cap ? cap * 2 : 256) * sizeof(*ni));
                    if (!ni)
                        return 1;
                    items = ni;
                }
                items[nitems++] = (struct item){ &targets[i], v[k] };
            }
            free(v);
        }
    }
    printf("1..%zu\n", nitems);
    fflush(stdout);
    for (size_t i = 0; i < nitems; i++) {
        const char *rel = strstr(items[i].path, "/fuzz/");
        int status = -1, fds[2];
        char *log = NULL;
        size_t loglen = 0;
        FILE *mem = NULL;

        if (pipe(fds) == 0) {
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                dup2(fds[1], 2);
                exit(run_file(items[i].t, items[i].path) < 0 ? 1 : 0);
            }
            close(fds[1]);
            mem = open_memstream(&log, &loglen);
            char b[4096];
            ssize_t n;
            while ((n = read(fds[0], b, sizeof(b))) > 0 || (n < 0 && errno == EINTR))
                if (n > 0 && mem)
                    fwrite(b, 1, (size_t)n, mem);
            close(fds[0]);
            if (mem)
                fclose(mem);
            if (pid < 0 || waitpid(pid, &status, 0) < 0)
                status = -1;
        }
        bool ok = status == 0;
        printf("%sok %zu - %s %s\n", ok ? "" : "not ", i + 1, items[i].t->name,
               rel ? rel + 1 : items[i].path);
        if (!ok) {
            failed++;
            if (status != -1 && WIFSIGNALED(status))
                printf("# killed by signal %d\n", WTERMSIG(status));
            else
                printf("# exit status %d\n", status == -1 ? -1 : WEXITSTATUS(status));
            /* the sanitizer report, as TAP diagnostics */
            for (char *line = log ? strtok(log, "\n") : NULL; line; line = strtok(NULL, "\n"))
                printf("# %s\n", line);
        }
        free(log);
        fflush(stdout);
        free(items[i].path);
    }
    free(items);
    return failed ? 1 : 0;
}
