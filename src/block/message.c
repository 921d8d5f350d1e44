/* Messages drivers print the way qemu's drivers print them (straight to
 * stderr, outside the command's error: "qcow2: Marking image as corrupt:
 * ...", notes about a replayed log). Drivers never print themselves; they
 * call blk_message(), and the command layer decides where lines go. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "block/driver.h"

static void default_sink(const char *line)
{
    fflush(stdout);
    fputs(line, stderr);
    fputc('\n', stderr);
}

static void (*sink)(const char *line) = default_sink;

const char *blk_prog_name(void)
{
    return strcmp(program_invocation_short_name, "qemu-img") ? "qimg" : "qemu-img";
}

void blk_set_message_sink(void (*fn)(const char *line))
{
    sink = fn ? fn : default_sink;
}

void blk_message(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sink(line);
}

void blk_message_partial(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (sink != default_sink) {
        sink(line);
        return;
    }
    fflush(stdout);
    fputs(line, stderr);
    fflush(stderr);
}
