/* SPDX-License-Identifier: MIT */
/* The command line the client sub-commands (shell, status) share: one copy, so that they
 * accept the same URL and token forms. */
#include "cli/cli.h"

#include <stddef.h>
#include <string.h>

int edge_cli_client_args(int argc, char **argv, const char *flag, int *out_flag, const char **out_url,
                         const char **out_token)
{
    for (int i = 1; i < argc; i++) {
        if (flag != NULL && strcmp(argv[i], flag) == 0) {
            *out_flag = 1;
        } else if (strcmp(argv[i], "--auth-token") == 0 && i + 1 < argc) {
            *out_token = argv[++i];
        } else if (strncmp(argv[i], "--auth-token=", 13) == 0) {
            *out_token = argv[i] + 13;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return 0;
        } else if (argv[i][0] != '-' && *out_url == NULL) {
            *out_url = argv[i];
        } else {
            return 2;
        }
    }
    return -1;
}
