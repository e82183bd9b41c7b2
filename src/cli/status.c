/* SPDX-License-Identifier: MIT */
/* Placeholder until the sub-command lands. */
#include <stdio.h>

#include "cli/cli.h"

int edge_cli_status(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgelite status: not available in this build\n");
    return 1;
}
