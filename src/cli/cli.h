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

#endif
