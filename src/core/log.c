/* SPDX-License-Identifier: MIT */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "edgelite/errors.h"

atomic_int edge__log_level = EDGE_LOG_INFO;
atomic_uint edge__log_trace = 0;

static edge_log_sink_cb sink_fn;
static void *sink_ud;

static const char *const mod_names[] = {"core", "store", "net", "http", "api", "repl", "crdt", "cli"};
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"};

void edge_log_set_sink(edge_log_sink_cb fn, void *ud)
{
    sink_fn = fn;
    sink_ud = ud;
}

void edge_log_set_level(int level) { atomic_store(&edge__log_level, level); }
void edge_log_set_trace(unsigned mods) { atomic_store(&edge__log_trace, mods); }

int edge_log_level_parse(const char *s, int *out_level)
{
    const char *names[] = {"debug", "info", "warn", "error", "fatal"};
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out_level = i;
            return EDGE_OK;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out_level = EDGE_LOG_WARN;
        return EDGE_OK;
    }
    return EDGE_EINVAL;
}

unsigned edge_log_trace_parse(const char *s)
{
    unsigned mask = 0;
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "all") == 0) {
            mask |= EDGE_MOD_ALL;
        }
        for (unsigned i = 0; i < sizeof(mod_names) / sizeof(mod_names[0]); i++) {
            if (strcmp(tok, mod_names[i]) == 0) {
                mask |= 1u << i;
            }
        }
    }
    return mask;
}

static const char *mod_name(int mod)
{
    for (unsigned i = 0; i < sizeof(mod_names) / sizeof(mod_names[0]); i++) {
        if (mod & (1 << i)) {
            return mod_names[i];
        }
    }
    return "?";
}

void edge__log(int level, int mod, const char *fmt, ...)
{
    if (sink_fn == NULL) {
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sink_fn(sink_ud, level, mod_name(mod), msg);
}

void edge_log_stderr_sink(void *ud, int level, const char *mod, const char *msg)
{
    (void)ud;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1200];
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000),
                     level >= 0 && level <= 4 ? level_names[level] : "?", mod, msg);
    if (n > 0) {
        /* One write per line so lines of different threads never interleave. */
        ssize_t w = write(2, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        (void)w;
    }
}
