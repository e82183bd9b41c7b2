/* SPDX-License-Identifier: MIT */
/* The edgelite binary's sub-commands. Each takes the arguments after its name
 * (argv[0] is the sub-command) and returns the process exit status: 0 success, 1
 * runtime failure, 2 usage or configuration error. */
#ifndef EDGE_CLI_H
#define EDGE_CLI_H

int edge_cli_serve(int argc, char **argv);
int edge_cli_token(int argc, char **argv);
int edge_cli_shell(int argc, char **argv);
int edge_cli_status(int argc, char **argv);
int edge_cli_router(int argc, char **argv);

/* The arguments of the client sub-commands (shell, status): [URL], --auth-token TOKEN or
 * --auth-token=TOKEN, -h/--help, and flag (NULL: none), which sets *out_flag to 1. URL and
 * TOKEN are borrowed from argv. Returns -1 when the command goes on, else the exit status
 * after the caller's usage text: 0 for -h/--help, 2 for any other argument. */
int edge_cli_client_args(int argc, char **argv, const char *flag, int *out_flag, const char **out_url,
                         const char **out_token);

#endif
