/* The one command table. A new subcommand is one row. */
#include <string.h>

#include "cmd/cmd.h"

static const struct cmd_entry commands[] = {
    { "check", cmd_check },
    { "create", cmd_create },
    { "convert", cmd_convert },
    { "info", cmd_info },
    { "resize", cmd_resize },
};

const struct cmd_entry *cmd_find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}
