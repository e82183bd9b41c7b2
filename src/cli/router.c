/* SPDX-License-Identifier: MIT */
/* `edgelite router`: the stateless front door in front of every region of a
 * configuration (router/door.h, docs/router.md), until SIGINT/SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/hrana/pb.h"
#include "cli/cli.h"
#include "core/conf.h"
#include "core/log.h"
#include "router/door.h"

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    stop_flag = sig;
}

static void usage(void)
{
    fprintf(stderr, "usage: edgelite router --config FILE [--listen HOST:PORT] [--client-region ID]\n"
                    "                       [--regions FILE] [--log-level LEVEL]\n"
                    "  --config FILE         the cluster configuration: every region's url and the router: section\n"
                    "  --listen HOST:PORT    where clients connect (default 127.0.0.1:8090; port 0 = any free port)\n"
                    "  --client-region ID    the region the clients are in: the nearest (RTT 0, or by --regions)\n"
                    "  --regions FILE        regions.json: RTTs from the client region by its latency matrix\n"
                    "  --log-level LEVEL     debug, info, warn, error (default info)\n");
}

int edge_cli_router(int argc, char **argv)
{
    const char *config = NULL, *listen = "127.0.0.1:8090", *client_region = NULL, *regions_file = NULL;
    const char *level = "info";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "edgelite router: %s needs a value\n", a);
            usage();
            return 2;
        }
        if (strcmp(a, "--config") == 0) config = v;
        else if (strcmp(a, "--listen") == 0) listen = v;
        else if (strcmp(a, "--client-region") == 0) client_region = v;
        else if (strcmp(a, "--regions") == 0) regions_file = v;
        else if (strcmp(a, "--log-level") == 0) level = v;
        else {
            fprintf(stderr, "edgelite router: unknown option '%s'\n", a);
            usage();
            return 2;
        }
        i++;
    }
    int lvl;
    if (edge_log_level_parse(level, &lvl) != EDGE_OK) {
        fprintf(stderr, "edgelite router: unknown log level '%s'\n", level);
        return 2;
    }
    edge_log_set_level(lvl);
    edge_log_set_sink(edge_log_stderr_sink, NULL);
    if (config == NULL) {
        fprintf(stderr, "edgelite router: --config is required\n");
        usage();
        return 2;
    }
    char host[256];
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof(host) || end == colon + 1 ||
        *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "edgelite router: --listen must be HOST:PORT, got '%s'\n", listen);
        return 2;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof(host), "127.0.0.1");
    char err[512];
    struct edge_conf *conf = NULL;
    struct edge_regions *wan = NULL;
    if (edge_conf_load(config, &conf, err, sizeof(err)) != EDGE_OK) {
        fprintf(stderr, "edgelite router: %s\n", err);
        return 2;
    }
    if (client_region != NULL && edge_conf_region_find(conf, client_region) == NULL) {
        fprintf(stderr, "edgelite router: --client-region '%s' is not a region of %s\n", client_region, config);
        edge_conf_free(conf);
        return 2;
    }
    if (regions_file != NULL && edge_regions_load(regions_file, &wan, err, sizeof(err)) != EDGE_OK) {
        fprintf(stderr, "edgelite router: %s\n", err);
        edge_conf_free(conf);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct edge_router_door_config dc = {conf, wan, host, (int)port, client_region, hrana_pb_decode_pipeline,
                                         hrana_pb_decode_cursor};
    int rv = edge_router_door_run(&dc, &stop_flag, err, sizeof(err));
    if (rv != EDGE_OK) fprintf(stderr, "edgelite router: %s\n", err);
    edge_regions_free(wan);
    edge_conf_free(conf);
    return rv == EDGE_OK ? 0 : 1;
}
