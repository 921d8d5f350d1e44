/* runstat: run a command and report its wall time, CPU time and peak RSS.
 *
 * bench.py compiles this with the system C compiler and runs every timed
 * command through it. Forking from Python would charge Python's own pages
 * to the child: ru_maxrss counts the resident set at its peak, and a child
 * forked from a 16 MiB interpreter starts with those pages mapped until it
 * execs. Forked from this small process, the child's ru_maxrss is its own.
 * The wall clock is also taken here, around fork/exec/wait4 only, so the
 * interpreter's fork cost (about 2 ms) is not added to either tool.
 *
 *   runstat [-n RUNS] [-o STDOUT_FILE] -- command [args...]
 *
 * One line per run on stdout: "wall_s cpu_s maxrss_kib exit_status",
 * exit_status being the command's exit code, or 128 + signal. The command's
 * stdout goes to /dev/null (or STDOUT_FILE); its stderr is inherited. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(char **argv, const char *out)
{
    struct rusage ru;
    int status;
    double t0 = now();
    pid_t pid = fork();

    if (pid < 0) {
        perror("runstat: fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(126);
        close(fd);
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("runstat: wait4");
        return -1;
    }
    double wall = now() - t0;
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("%.6f %.6f %ld %d\n", wall, cpu, ru.ru_maxrss, code);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *out = "/dev/null";
    long runs = 1;
    int c;

    while ((c = getopt(argc, argv, "+n:o:")) != -1) {
        switch (c) {
        case 'n': runs = strtol(optarg, NULL, 10); break;
        case 'o': out = optarg; break;
        default:
            fprintf(stderr, "usage: runstat [-n RUNS] [-o FILE] -- command [args...]\n");
            return 2;
        }
    }
    if (optind >= argc || runs < 1) {
        fprintf(stderr, "usage: runstat [-n RUNS] [-o FILE] -- command [args...]\n");
        return 2;
    }
    for (long i = 0; i < runs; i++)
        if (run(argv + optind, out) < 0)
            return 1;
    return 0;
}
