/* The one command table. A new subcommand is one row. */
#include <string.h>

#include "cmd/cmd.h"

static const struct cmd_entry commands[] = {
    { "amend", cmd_amend },
    { "bench", cmd_bench },
    { "bitmap", cmd_bitmap },
    { "check", cmd_check },
    { "commit", cmd_commit },
    { "compare", cmd_compare },
    { "create", cmd_create },
    { "dd", cmd_dd },
    { "convert", cmd_convert },
    { "info", cmd_info },
    { "inspect", cmd_inspect },
    { "map", cmd_map },
    { "measure", cmd_measure },
    { "rebase", cmd_rebase },
    { "resize", cmd_resize },
    { "snapshot", cmd_snapshot },
};

const struct cmd_entry *cmd_find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}
