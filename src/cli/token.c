/* SPDX-License-Identifier: MIT */
/* Placeholder until the sub-command lands. */
#include <stdio.h>

#include "cli/cli.h"

int edge_cli_token(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgelite token: not available in this build\n");
    return 1;
}
