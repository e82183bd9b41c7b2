/* SPDX-License-Identifier: MIT */
/* The latency trace (see trace.h). */
#include "repl/trace.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

atomic_int edge__trace_fd = -1;

static pthread_once_t trace_once = PTHREAD_ONCE_INIT;

static void trace_open(void)
{
    const char *path = getenv("EDGE_TRACE_FILE");
    if (path == NULL || path[0] == '\0') return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) atomic_store(&edge__trace_fd, fd);
}

void edge_repl_trace_init(void)
{
    pthread_once(&trace_once, trace_open);
}

uint64_t edge_repl_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void edge_repl_trace_at(const char *hop, const char *origin, uint64_t seq, uint64_t ns)
{
    int fd = atomic_load(&edge__trace_fd);
    if (fd < 0) return;
    char line[160];
    int n = snprintf(line, sizeof(line), "%s %s %llu %llu %ld\n", hop, origin, (unsigned long long)seq,
                     (unsigned long long)(ns ? ns : edge_repl_trace_now_ns()), (long)getpid());
    /* O_APPEND and one short write: lines of several threads and processes never mix */
    if (n > 0 && (size_t)n < sizeof(line)) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
    }
}
