/* qimg: a qemu-img 7.2 compatible disk image tool.
 *
 * argv[0] decides the name messages carry ("qemu-img" when installed under
 * that name); the global options -h/-V/-T come before the subcommand, which
 * is looked up in the one command table (cmd/table.c). */
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"

/* A create or convert that is interrupted removes the image it was making
 * (block/created.c), then dies of the same signal as before. */
static void on_fatal_signal(int sig)
{
    blk_created_remove();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_cleanup(void)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&sa.sa_mask, sigs[i]);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    /* every exit but a successful return from the command removes them */
    atexit(blk_created_remove);
}

/* Start-up work that costs system calls and buys nothing here (measured in
 * docs/performance.md, "Start-up"):
 *  - stdout to a file or pipe gets one 16 KiB buffer instead of stdio's
 *    st_blksize one (4 KiB): map of a large image prints thousands of
 *    lines, now in a handful of writes. Not more: every 4 KiB page of the
 *    buffer that output reaches is a page fault, which costs more here
 *    than a write (map of the 4 GiB image, 57 KB of text: 64 KiB buffer
 *    102 faults, 16 KiB 88). stdio's semantics are unchanged
 *    (fully buffered either way; a terminal keeps line buffering), and every
 *    message on stderr is preceded by an fflush(stdout) as before.
 *  - jansson seeds its hash function from /dev/urandom (open, read, close)
 *    on the first object. The seed only guards against hash flooding, and
 *    the JSON parsed here is small (a json: filename from the command line
 *    or an image's backing name, at most a few KiB), so a seed taken from
 *    the randomized stack address does. */
static void setup_fast_start(void)
{
    static char outbuf[16 * 1024];
    int dummy;

    if (!isatty(STDOUT_FILENO))
        setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
    json_object_seed((size_t)((uintptr_t)&dummy >> 4) | 1);
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "trace", required_argument, NULL, 'T' },
        { "safe", no_argument, NULL, 'S' },     /* qimg only: docs/safety.md */
        { NULL, 0, NULL, 0 },
    };
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (!strcmp(base, "qemu-img"))
        prog_name = "qemu-img";

    signal(SIGPIPE, SIG_IGN);
    install_cleanup();
    setup_fast_start();

    if (argc < 2)
        error_exit("Not enough arguments");

    int c;
    while ((c = getopt_long(argc, argv, "+:hVT:", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
            missing_argument(argv[optind - 1]);
        case '?':
            unrecognized_option(argv[optind - 1]);
        case 'h':
            help();
        case 'V':
            print_version();
            return EXIT_SUCCESS;
        case 'T':
            trace_opt_parse(optarg);    /* names are checked; no trace output */
            break;
        case 'S':
            blk_safe_enable();
            break;
        }
    }
    if (optind >= argc)
        return EXIT_SUCCESS;    /* only global options: qemu-img does nothing */

    const char *name = argv[optind];
    const struct cmd_entry *cmd = cmd_find(name);
    if (!cmd)
        error_exit("Command not found: %s", name);
    argc -= optind;
    argv += optind;
    optind = 0;     /* restart getopt for the command's own options */
    int rc = cmd->fn(argc, argv);
    if (rc == 0)
        blk_created_keep();
    return rc;
}
