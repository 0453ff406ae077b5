/* Reads every file named in a list (one path per line) with N threads, each taking the next
 * path from a shared counter: open, read to the end, close. Prints the seconds taken, the
 * files and bytes read, and a checksum over every byte (a sum of 64-bit words, so the order
 * in which threads finish does not change it), so systems can be checked to return the same
 * bytes. Used by benches/mount_vs_squashfuse.sh.
 *
 *   read_files LIST ROOT THREADS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char **paths;
static size_t count;
static const char *root;
static atomic_size_t next_path;
static atomic_uint_fast64_t total_bytes, total_sum;

static void *worker(void *unused) {
    (void)unused;
    size_t cap = 1 << 22;
    unsigned char *buf = malloc(cap);
    char full[8192];
    uint64_t sum = 0, bytes = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&next_path, 1);
        if (i >= count) break;
        snprintf(full, sizeof full, "%s/%s", root, paths[i]);
        int fd = open(full, O_RDONLY);
        if (fd < 0) { perror(full); exit(1); }
        size_t used = 0;
        for (;;) {
            if (used == cap) { cap *= 2; buf = realloc(buf, cap); }
            ssize_t n = read(fd, buf + used, cap - used);
            if (n < 0) { perror(full); exit(1); }
            if (n == 0) break;
            used += (size_t)n;
        }
        close(fd);
        bytes += used;
        uint64_t word;
        size_t k = 0;
        for (; k + 8 <= used; k += 8) { memcpy(&word, buf + k, 8); sum += word; }
        for (; k < used; k++) sum += buf[k];
    }
    atomic_fetch_add(&total_bytes, bytes);
    atomic_fetch_add(&total_sum, sum);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: read_files LIST ROOT THREADS\n"); return 2; }
    root = argv[2];
    int threads = atoi(argv[3]);
    FILE *list = fopen(argv[1], "r");
    if (!list) { perror(argv[1]); return 1; }
    size_t cap = 1024;
    paths = malloc(cap * sizeof *paths);
    char *line = NULL;
    size_t len = 0;
    ssize_t n;
    while ((n = getline(&line, &len, list)) > 0) {
        if (line[n - 1] == '\n') line[n - 1] = 0;
        if (count == cap) { cap *= 2; paths = realloc(paths, cap * sizeof *paths); }
        paths[count++] = strdup(line);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t *ids = malloc(sizeof *ids * (size_t)threads);
    for (int t = 0; t < threads; t++) pthread_create(&ids[t], NULL, worker, NULL);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.6f %zu %llu %016llx\n", secs, count, (unsigned long long)total_bytes,
           (unsigned long long)total_sum);
    return 0;
}
