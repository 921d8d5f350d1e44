/* Files this run created, so that a create or convert that fails (or is
 * interrupted by SIGINT/SIGTERM/SIGHUP) leaves no half-written image behind.
 *
 * This goes beyond qemu-img 7.2, which keeps a target whose copy failed:
 * a half image looks valid to the next tool that opens it.
 *
 * Invariants: only names that did not exist just before qimg created them
 * (through the file protocol) are recorded, so a pre-existing file, a
 * `convert -n` target or a device node is never removed; the table is fixed
 * and static and an entry is complete before the count covers it, so
 * blk_created_remove() is async-signal-safe (only unlink). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/driver.h"

#define CREATED_MAX 8
#define CREATED_PATH 4096

static char created_path[CREATED_MAX][CREATED_PATH];
static volatile sig_atomic_t created_count;

void blk_created_note(const char *filename)
{
    struct stat st;
    const struct blk_driver *proto;

    if (!filename || !filename[0])
        return;
    proto = blk_find_protocol_for(filename);
    if (strcmp(proto->name, "file"))
        return;
    if (!strncmp(filename, "file:", 5))
        filename += 5;
    if (!strncmp(filename, "json:", 5) || strlen(filename) >= CREATED_PATH)
        return;
    if (lstat(filename, &st) == 0 || errno != ENOENT)
        return;     /* it exists (or cannot be told): never ours to remove */
    for (int i = 0; i < created_count; i++)
        if (!strcmp(created_path[i], filename))
            return;
    if (created_count >= CREATED_MAX)
        return;
    memcpy(created_path[created_count], filename, strlen(filename) + 1);
    created_count = created_count + 1;
}

void blk_created_keep(void)
{
    created_count = 0;
}

void blk_created_remove(void)
{
    int n = created_count;

    created_count = 0;
    for (int i = n - 1; i >= 0; i--)
        unlink(created_path[i]);
}
