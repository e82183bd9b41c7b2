/* SPDX-License-Identifier: MIT */
/* `edgelite status [URL] [--json]`: the sync status of a cluster as seen from one node.
 *
 * DESIGN: the node's GET /v1/status lists its peers with the link figures it measures
 * (connected, rtt, lag, pending, acked). Those are the node's view; to show each peer's
 * own role the tool also asks every peer that advertises a url, with a short timeout,
 * so one dead region costs two seconds rather than hanging the command. Fields the
 * node does not report (replication lands later) are shown as "-". */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "net/httpc.h"
#include "core/alloc.h"
#include "edgelite/errors.h"

#define STATUS_TIMEOUT_MS 5000
#define STATUS_PEER_TIMEOUT_MS 2000
#define STATUS_MAX_BODY (1024 * 1024)
#define STATUS_MAX_PEERS 256
#define STATUS_NCOL 7
#define STATUS_CELL 96

struct peer_probe {
    json_t *status; /* the peer's own /v1/status, NULL if not asked or failed */
    int asked;      /* the peer had a url and was queried */
};

/* GET /v1/status from url. EDGE_OK with *out_json (new reference) or an error code;
 * a non-200 answer or a body that is not a JSON object gives EDGE_EPROTO. */
static int fetch_status(const char *url, const char *token, int timeout_ms, json_t **out_json)
{
    struct edge_httpc_url u;
    struct edge_httpc_resp r;
    json_t *j = NULL;
    int rv;

    *out_json = NULL;
    rv = edge_httpc_url_parse(url, &u);
    if (rv != EDGE_OK) return rv;
    rv = edge_httpc_request(&u, "GET", "/v1/status", token, NULL, 0, timeout_ms,
                            STATUS_MAX_BODY, &r);
    if (rv != EDGE_OK) return rv;
    if (r.status == 401 || r.status == 403) {
        rv = EDGE_EAUTH;
    } else if (r.status != 200) {
        rv = EDGE_EPROTO;
    } else {
        j = json_loadb(r.body.data, r.body.len, 0, NULL);
        rv = json_is_object(j) ? EDGE_OK : EDGE_EPROTO;
    }
    edge_httpc_resp_free(&r);
    if (rv == EDGE_OK) {
        *out_json = j;
    } else {
        json_decref(j);
    }
    return rv;
}

/* Format a JSON scalar into cell: numbers with an optional unit, strings, booleans
 * as yes/no; "-" when absent. */
static void cell_of(char *cell, json_t *v, const char *unit)
{
    if (json_is_integer(v)) {
        snprintf(cell, STATUS_CELL, "%lld%s", (long long)json_integer_value(v), unit);
    } else if (json_is_real(v)) {
        snprintf(cell, STATUS_CELL, "%.1f%s", json_real_value(v), unit);
    } else if (json_is_string(v)) {
        snprintf(cell, STATUS_CELL, "%s", json_string_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(cell, STATUS_CELL, "%s", json_is_true(v) ? "yes" : "no");
    } else {
        snprintf(cell, STATUS_CELL, "-");
    }
}

static void print_header(const char *url, json_t *st)
{
    json_t *up = json_object_get(st, "uptime_s");
    json_t *size = json_object_get(st, "db_size_bytes");
    const char *region = json_string_value(json_object_get(st, "region"));
    const char *role = json_string_value(json_object_get(st, "role"));
    const char *primary = json_string_value(json_object_get(st, "primary"));
    const char *version = json_string_value(json_object_get(st, "version"));
    json_t *vv = json_object_get(st, "version_vector");

    printf("node %s at %s", region != NULL ? region : "?", url);
    if (role != NULL) printf(", role %s", role);
    if (primary != NULL) printf(", primary %s", primary);
    if (version != NULL) printf(", version %s", version);
    if (json_is_number(up)) {
        long long s = (long long)json_number_value(up);
        printf(", up %lldh%02lldm%02llds", s / 3600, (s / 60) % 60, s % 60);
    }
    if (json_is_number(size)) printf(", db %.0f bytes", json_number_value(size));
    putchar('\n');
    if (json_is_object(vv) && json_object_size(vv) > 0) {
        const char *k;
        json_t *v;
        int first = 1;
        fputs("version vector:", stdout);
        json_object_foreach(vv, k, v) {
            char cell[STATUS_CELL];
            cell_of(cell, v, "");
            printf("%s %s=%s", first ? "" : ",", k, cell);
            first = 0;
        }
        putchar('\n');
    }
}

static void print_table(char (*cells)[STATUS_NCOL][STATUS_CELL], size_t nrow)
{
    size_t w[STATUS_NCOL] = {0};

    for (size_t r = 0; r < nrow; r++) {
        for (size_t c = 0; c < STATUS_NCOL; c++) {
            size_t n = strlen(cells[r][c]);
            if (n > w[c]) w[c] = n;
        }
    }
    for (size_t r = 0; r < nrow; r++) {
        for (size_t c = 0; c < STATUS_NCOL; c++) {
            /* Text columns align left, the figures right. */
            if (c < 3) {
                printf("%-*s", (int)w[c], cells[r][c]);
            } else {
                printf("%*s", (int)w[c], cells[r][c]);
            }
            fputs(c + 1 < STATUS_NCOL ? "  " : "\n", stdout);
        }
    }
}

/* The combined document for --json: the node's status plus each peer's own. */
static int print_json(const char *url, json_t *st, json_t *peers, struct peer_probe *probes,
                      size_t npeer)
{
    json_t *doc = json_object();
    json_t *arr = json_array();
    int rv = EDGE_ENOMEM;

    if (doc == NULL || arr == NULL) goto out;
    for (size_t i = 0; i < npeer; i++) {
        json_t *p = json_array_get(peers, i);
        json_t *e = json_object();
        if (e == NULL || json_array_append_new(arr, e) != 0) goto out;
        json_object_set(e, "region", json_object_get(p, "region"));
        json_object_set(e, "url", json_object_get(p, "url"));
        if (probes[i].status != NULL) {
            json_object_set(e, "status", probes[i].status);
        } else if (probes[i].asked) {
            json_object_set_new(e, "error", json_string("unreachable"));
        }
    }
    if (json_object_set_new(doc, "url", json_string(url)) != 0 ||
        json_object_set(doc, "status", st) != 0 || json_object_set(doc, "peers", arr) != 0) {
        goto out;
    }
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    rv = EDGE_OK;
out:
    json_decref(arr);
    json_decref(doc);
    return rv;
}

static void usage(void)
{
    fprintf(stderr, "usage: edgelite status [URL] [--json] [--auth-token TOKEN]\n"
                    "  URL defaults to $EDGE_URL, $TURSO_URL, then http://127.0.0.1:8080.\n");
}

int edge_cli_status(int argc, char **argv)
{
    const char *url_arg = NULL;
    const char *token_arg = NULL;
    const char *url;
    const char *token;
    int as_json = 0;
    json_t *st = NULL;
    json_t *peers;
    struct peer_probe *probes = NULL;
    char (*cells)[STATUS_NCOL][STATUS_CELL] = NULL;
    size_t npeer = 0;
    int rv;
    int status = 1;

    int args_rv = edge_cli_client_args(argc, argv, "--json", &as_json, &url_arg, &token_arg);
    if (args_rv >= 0) {
        usage();
        return args_rv;
    }
    url = edge_httpc_default_url(url_arg);
    token = edge_httpc_default_token(token_arg);
    {
        struct edge_httpc_url u;
        if (edge_httpc_url_parse(url, &u) != EDGE_OK) {
            fprintf(stderr, "edgelite status: invalid URL '%s'\n", url);
            return 2;
        }
    }
    rv = fetch_status(url, token, STATUS_TIMEOUT_MS, &st);
    if (rv != EDGE_OK) {
        fprintf(stderr, "edgelite status: %s is unreachable: %s\n", url, edge_strerror(rv));
        goto out;
    }

    peers = json_object_get(st, "peers");
    npeer = json_array_size(peers);
    if (npeer > STATUS_MAX_PEERS) npeer = STATUS_MAX_PEERS;
    probes = edge_calloc(npeer + 1, sizeof(*probes));
    cells = edge_calloc(npeer + 2, sizeof(*cells));
    if (probes == NULL || cells == NULL) {
        fprintf(stderr, "edgelite status: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < npeer; i++) {
        const char *purl = json_string_value(json_object_get(json_array_get(peers, i), "url"));
        if (purl == NULL || purl[0] == '\0') continue;
        probes[i].asked = 1;
        (void)fetch_status(purl, token, STATUS_PEER_TIMEOUT_MS, &probes[i].status);
    }

    if (as_json) {
        status = print_json(url, st, peers, probes, npeer) == EDGE_OK ? 0 : 1;
        goto out;
    }
    print_header(url, st);
    static const char *const heads[STATUS_NCOL] = {"REGION", "ROLE", "CONNECTED", "RTT",
                                                   "LAG", "PENDING", "ACKED"};
    for (size_t c = 0; c < STATUS_NCOL; c++) snprintf(cells[0][c], STATUS_CELL, "%s", heads[c]);
    cell_of(cells[1][0], json_object_get(st, "region"), "");
    cell_of(cells[1][1], json_object_get(st, "role"), "");
    snprintf(cells[1][2], STATUS_CELL, "self");
    for (size_t c = 3; c < STATUS_NCOL; c++) snprintf(cells[1][c], STATUS_CELL, "-");
    for (size_t i = 0; i < npeer; i++) {
        json_t *p = json_array_get(peers, i);
        char (*row)[STATUS_CELL] = cells[i + 2];
        cell_of(row[0], json_object_get(p, "region"), "");
        if (probes[i].status != NULL) {
            cell_of(row[1], json_object_get(probes[i].status, "role"), "");
        } else if (probes[i].asked) {
            snprintf(row[1], STATUS_CELL, "unreachable");
        } else {
            cell_of(row[1], json_object_get(p, "role"), "");
        }
        cell_of(row[2], json_object_get(p, "connected"), "");
        cell_of(row[3], json_object_get(p, "rtt_ms"), " ms");
        cell_of(row[4], json_object_get(p, "lag_ms"), " ms");
        cell_of(row[5], json_object_get(p, "pending"), "");
        cell_of(row[6], json_object_get(p, "acked"), "");
    }
    print_table(cells, npeer + 2);
    status = 0;
out:
    if (probes != NULL) {
        for (size_t i = 0; i < npeer; i++) json_decref(probes[i].status);
    }
    edge_free(probes);
    edge_free(cells);
    json_decref(st);
    fflush(stdout);
    return status;
}
