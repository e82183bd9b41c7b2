/* SPDX-License-Identifier: MIT */
/* `edgelite serve`: run one node until SIGINT/SIGTERM. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/node.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/log.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: edgelite serve [options]\n"
            "  --listen HOST:PORT       address to serve on (default 127.0.0.1:8080; port 0 = any free port)\n"
            "  --data DIR               data directory (default ./edgelite-data)\n"
            "  --config FILE            cluster configuration (deployment/edge-config.yaml)\n"
            "  --region ID              this node's region (default 'local', or from --config)\n"
            "  --auth-jwt-key FILE      require JWTs signed by this Ed25519 public key\n"
            "  --tls-cert FILE          serve https:// and wss:// only, with this PEM certificate (chain)\n"
            "  --tls-key FILE           the certificate's PEM private key (with --tls-cert)\n"
            "  --threads N              loop threads (default: one per core)\n"
            "  --log-level LEVEL        debug, info, warn, error (default info); EDGE_TRACE=net,api\n"
            "  --max-body-bytes N       largest request body (default 16 MiB)\n"
            "  --stream-timeout-ms N    idle Hrana stream expiry (default 10000)\n"
            "  --query-timeout-ms N     time budget per statement (default 5000; 0 = none)\n"
            "  --bookmark-timeout-ms N  how long a read waits for its X-Edge-Bookmark (default 5000)\n"
            "  --strong-timeout-ms N    how long a strong write waits for a majority (default 5000)\n"
            "  --log-keep N             acknowledged log entries kept per origin (default 1000)\n"
            "  --compact-interval-ms N  how often the log is compacted (default 5000)\n"
            "  --synchronous full       fsync every commit (default: normal, WAL)\n"
            "  --shutdown-timeout S     on SIGTERM/SIGINT, seconds to let requests in flight finish (default 10;\n"
            "                           a second signal stops at once)\n"
            "  --emulate-wan FILE       delay peer traffic by the RTTs of a regions.json latency matrix\n"
            "  --clock-offset-ms N      run this node's wall clock N ms ahead (negative: behind); for skew tests\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || s[0] == '-') return -1;
    *out = v;
    return 0;
}

/* "HOST:PORT" into host (copied into buf) and port. */
static int parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    uint64_t p;
    if (colon == NULL || colon == s || (size_t)(colon - s) >= hostlen || parse_u64(colon + 1, &p) != 0 || p > 65535) {
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (strcmp(host, "localhost") == 0) snprintf(host, hostlen, "127.0.0.1");
    *port = (int)p;
    return 0;
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

/* While a seed waits for a peer: a SIGINT/SIGTERM is pending (blocked on every thread). */
static bool stop_pending(void *ud)
{
    (void)ud;
    sigset_t p;
    return sigpending(&p) == 0 && (sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Let the requests in flight finish (every committed write gets its answer) until the
 * node is idle, the timeout passes or a second signal asks to stop at once. The signals
 * are blocked on this thread, so sigtimedwait takes the second one: true then. */
static bool graceful_stop(struct edge_node *node, const sigset_t *signals, uint64_t timeout_s)
{
    edge_node_drain(node);
    uint64_t deadline = now_ms() + timeout_s * 1000u;
    while (!edge_node_drained(node)) {
        if (now_ms() >= deadline) {
            long busy = edge_node_busy_connections(node);
            if (busy >= 0) {
                fprintf(stderr, "edgelite: shutdown timeout: closing %ld connections still busy\n", busy);
            } else {
                fprintf(stderr, "edgelite: shutdown timeout: closing the connections still busy (a loop is still "
                                "running a request)\n");
            }
            return false;
        }
        struct timespec step = {0, 20 * 1000 * 1000};
        int sig = sigtimedwait(signals, NULL, &step);
        if (sig == SIGINT || sig == SIGTERM) {
            fprintf(stderr, "edgelite: second signal: stopping at once\n");
            return true;
        }
    }
    return false;
}

int edge_cli_serve(int argc, char **argv)
{
    struct edge_node_config cfg;
    edge_node_config_defaults(&cfg);
    const char *listen = NULL, *data = NULL, *config = NULL, *region = NULL, *level = "info", *wan = NULL;
    struct edge_regions *regions = NULL;
    uint64_t shutdown_timeout_s = 10;
    char host[256] = "127.0.0.1";
    struct edge_conf *conf = NULL;
    int rc = 2;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t num = 0;
#define NEED_ARG()                                                      \
    do {                                                                \
        if (v == NULL) {                                                \
            fprintf(stderr, "edgelite serve: %s needs a value\n", a);   \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (strcmp(a, "--listen") == 0) { NEED_ARG(); listen = v; }
        else if (strcmp(a, "--data") == 0) { NEED_ARG(); data = v; }
        else if (strcmp(a, "--config") == 0) { NEED_ARG(); config = v; }
        else if (strcmp(a, "--region") == 0) { NEED_ARG(); region = v; }
        else if (strcmp(a, "--auth-jwt-key") == 0) { NEED_ARG(); cfg.jwt_key_file = v; }
        else if (strcmp(a, "--tls-cert") == 0) { NEED_ARG(); cfg.tls_cert_file = v; }
        else if (strcmp(a, "--tls-key") == 0) { NEED_ARG(); cfg.tls_key_file = v; }
        else if (strcmp(a, "--log-level") == 0) { NEED_ARG(); level = v; }
        else if (strcmp(a, "--emulate-wan") == 0) { NEED_ARG(); wan = v; }
        else if (strcmp(a, "--clock-offset-ms") == 0) {
            NEED_ARG();
            char *end = NULL;
            errno = 0;
            long long off = strtoll(v, &end, 10);
            /* at most a year either way: a bigger offset is a typo, not a test */
            if (errno != 0 || end == v || *end != '\0' || off < -31536000000LL || off > 31536000000LL) {
                fprintf(stderr, "edgelite serve: --clock-offset-ms expects an integer (ms, |N| <= 1 year), got '%s'\n", v);
                return 2;
            }
            edge_clock_set_wall_offset_ms((int64_t)off);
        }
        else if (strcmp(a, "--synchronous") == 0) {
            NEED_ARG();
            if (strcmp(v, "full") == 0) cfg.synchronous_full = true;
            else if (strcmp(v, "normal") != 0) { fprintf(stderr, "edgelite serve: --synchronous full|normal\n"); return 2; }
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "--max-body-bytes") == 0 ||
                   strcmp(a, "--stream-timeout-ms") == 0 || strcmp(a, "--query-timeout-ms") == 0 ||
                   strcmp(a, "--bookmark-timeout-ms") == 0 || strcmp(a, "--strong-timeout-ms") == 0 ||
                   strcmp(a, "--log-keep") == 0 || strcmp(a, "--compact-interval-ms") == 0 ||
                   strcmp(a, "--shutdown-timeout") == 0) {
            NEED_ARG();
            if (parse_u64(v, &num) != 0) {
                fprintf(stderr, "edgelite serve: %s expects a non-negative integer, got '%s'\n", a, v);
                return 2;
            }
            if (strcmp(a, "--threads") == 0) {
                if (num < 1 || num > 64) { fprintf(stderr, "edgelite serve: --threads must be 1..64\n"); return 2; }
                cfg.threads = (int)num;
            } else if (strcmp(a, "--max-body-bytes") == 0) {
                if (num < 1024) { fprintf(stderr, "edgelite serve: --max-body-bytes must be >= 1024\n"); return 2; }
                cfg.max_body_bytes = num;
            } else if (strcmp(a, "--stream-timeout-ms") == 0) {
                if (num < 100) { fprintf(stderr, "edgelite serve: --stream-timeout-ms must be >= 100\n"); return 2; }
                cfg.stream_timeout_ms = num;
            } else if (strcmp(a, "--bookmark-timeout-ms") == 0) {
                cfg.bookmark_timeout_ms = num;
            } else if (strcmp(a, "--strong-timeout-ms") == 0) {
                cfg.strong_timeout_ms = num;
            } else if (strcmp(a, "--shutdown-timeout") == 0) {
                if (num > 3600) { fprintf(stderr, "edgelite serve: --shutdown-timeout must be 0..3600 seconds\n"); return 2; }
                shutdown_timeout_s = num;
            } else if (strcmp(a, "--log-keep") == 0) {
                cfg.log_keep = num;
            } else if (strcmp(a, "--compact-interval-ms") == 0) {
                if (num < 100) { fprintf(stderr, "edgelite serve: --compact-interval-ms must be >= 100\n"); return 2; }
                cfg.compact_interval_ms = num;
            } else {
                cfg.query_budget_ms = num;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "edgelite serve: unknown option '%s'\n", a);
            usage();
            return 2;
        }
#undef NEED_ARG
    }

    int lvl;
    if (edge_log_level_parse(level, &lvl) != EDGE_OK) {
        fprintf(stderr, "edgelite serve: unknown log level '%s'\n", level);
        return 2;
    }
    edge_log_set_level(lvl);
    const char *trace = getenv("EDGE_TRACE");
    if (trace != NULL) edge_log_set_trace(edge_log_trace_parse(trace));
    edge_log_set_sink(edge_log_stderr_sink, NULL);

    if (config != NULL) {
        char err[512];
        if (edge_conf_load(config, &conf, err, sizeof(err)) != EDGE_OK) {
            fprintf(stderr, "edgelite serve: %s\n", err);
            return 2;
        }
        if (region == NULL && conf->n_regions == 1) region = conf->regions[0].id;
        if (region == NULL) {
            /* Running as some default region would pull a snapshot with the secret and
             * then be refused by every peer: the operator must say which one this is. */
            char ids[512] = "";
            size_t used = 0;
            for (size_t i = 0; i < conf->n_regions && used < sizeof(ids); i++) {
                int w = snprintf(ids + used, sizeof(ids) - used, "%s%s", i ? ", " : "", conf->regions[i].id);
                if (w < 0) break;
                used += (size_t)w;
            }
            fprintf(stderr, "edgelite serve: %s names %zu regions (%s): --region is required\n", config,
                    conf->n_regions, ids);
            goto out;
        }
        if (region != NULL) {
            const struct edge_conf_region *r = edge_conf_region_find(conf, region);
            if (r == NULL) {
                fprintf(stderr, "edgelite serve: region '%s' is not in %s\n", region, config);
                goto out;
            }
            if (listen == NULL) listen = r->listen;
            if (data == NULL) data = r->data_dir;
            /* The region's certificate, unless both are given on the command line. */
            if (cfg.tls_cert_file == NULL && cfg.tls_key_file == NULL) {
                cfg.tls_cert_file = r->tls_cert;
                cfg.tls_key_file = r->tls_key;
            }
        }
        if (cfg.jwt_key_file == NULL) cfg.jwt_key_file = conf->jwt_public_key_file;
        cfg.conf = conf;
    }
    if (wan != NULL) {
        char err[512];
        if (edge_regions_load(wan, &regions, err, sizeof(err)) != EDGE_OK) {
            fprintf(stderr, "edgelite serve: %s\n", err);
            goto out;
        }
        cfg.wan = regions;
    }
    if (listen != NULL && parse_listen(listen, host, sizeof(host), &cfg.port) != 0) {
        fprintf(stderr, "edgelite serve: --listen expects HOST:PORT, got '%s'\n", listen);
        goto out;
    }
    cfg.host = host;
    if (data != NULL) cfg.data_dir = data;
    if (region != NULL) cfg.region = region;

    /* Signals are handled by waiting for them on this thread; loops never see them. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old); /* threads created now inherit the mask */

    /* Files the node creates (the database, its WAL, LOCK) are the owner's only. */
    umask(077);
    struct edge_node *node = NULL;
    char err[512] = "";
    cfg.cancelled = stop_pending; /* a region that must be seeded waits for a peer until stopped */
    int srv = edge_node_start(&cfg, &node, err, sizeof(err));
    if (srv != EDGE_OK) {
        fprintf(stderr, "edgelite serve: %s\n", err);
        /* Exit 2 when the data directory or the port belongs to someone else: a usage
         * problem to fix, not a crash to retry. */
        rc = srv == EDGE_EBUSY ? 2 : 1;
        goto out;
    }
    printf("edgelite: listening on %s://%s:%d (region %s, data %s)\n", edge_node_tls(node) ? "https" : "http", cfg.host,
           edge_node_port(node), cfg.region,
           cfg.data_dir);
    fflush(stdout);
    for (;;) {
        struct timespec step = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&block, NULL, &step);
        if (sig == SIGINT || sig == SIGTERM) got_signal = sig;
        if (got_signal) break;
        if (!edge_node_reseed_wanted(node)) continue;
        /* Behind every peer's compacted log: stop, and start again from a snapshot on the
         * same socket (clients wait in its backlog; meanwhile they get 503 SEEDING). */
        fprintf(stderr, "edgelite: this region fell behind the compacted logs of the other regions: restarting it "
                        "from a snapshot\n");
        cfg.listen_fd = edge_node_listener_dup(node);
        cfg.use_listen_fd = cfg.listen_fd >= 0;
        cfg.port = edge_node_port(node);
        cfg.reseed = true;
        bool stop = graceful_stop(node, &block, 2);
        edge_node_stop(node);
        node = NULL;
        if (stop) {
            if (cfg.listen_fd >= 0) close(cfg.listen_fd);
            fprintf(stderr, "edgelite: stopped\n");
            rc = 0;
            goto out;
        }
        srv = edge_node_start(&cfg, &node, err, sizeof(err));
        cfg.reseed = false;
        cfg.use_listen_fd = false;
        if (srv != EDGE_OK) {
            fprintf(stderr, "edgelite serve: %s\n", err);
            rc = srv == EDGE_ECLOSED ? 0 : 1;
            goto out;
        }
        fprintf(stderr, "edgelite: re-seeded, serving again on port %d\n", edge_node_port(node));
    }
    fprintf(stderr, "edgelite: %s received, stopping: no new connections, up to %llu s for requests in flight\n",
            got_signal == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)shutdown_timeout_s);
    (void)graceful_stop(node, &block, shutdown_timeout_s);
    edge_node_stop(node);
    fprintf(stderr, "edgelite: stopped\n");
    rc = 0;
out:
    edge_conf_free(conf);
    edge_regions_free(regions);
    return rc;
}
