/* SPDX-License-Identifier: MIT */
/* The edgelite binary: dispatch to a sub-command. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: edgelite <command> [options]\n"
            "  serve   [--listen HOST:PORT] [--data DIR] [--config FILE] [--region ID]\n"
            "          [--auth-jwt-key FILE] [--threads N] [--log-level LEVEL]\n"
            "  shell   [URL]                 interactive SQL (EDGE_URL, EDGE_AUTH_TOKEN)\n"
            "  status  [URL]                 sync status of a cluster\n"
            "  router  --config FILE [--listen HOST:PORT] [--client-region ID]   the query router's front door\n"
            "  token   keygen --out PREFIX | create --key FILE [--read-only] [--expires 1h]\n"
            "  --version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("edgelite %s\n", EDGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) return edge_cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0) return edge_cli_token(argc - 1, argv + 1);
    if (strcmp(cmd, "shell") == 0) return edge_cli_shell(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0) return edge_cli_status(argc - 1, argv + 1);
    if (strcmp(cmd, "router") == 0) return edge_cli_router(argc - 1, argv + 1);
    fprintf(stderr, "edgelite: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
