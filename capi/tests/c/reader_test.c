/*
 * Exercises the C ABI as a C program would: open, stat, read (caller, allocator and library
 * buffers), list, walk, counters and every error path the tree below allows. Run by
 * capi/tests/c_program.rs against a dataset folded from this tree:
 *   hello.txt           "hello, sheaf\n"
 *   dir/a.bin           1000 bytes, byte i = i % 251
 *   dir/link -> a.bin   symlink
 *   dir/zero            empty file
 *   empty/              empty directory
 *   big.bin             300000 bytes of 'x' (kept as an external file: threshold 4096)
 * Exits 0 when every check passed; prints each failure.
 */
#include "sheaf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, \
              __LINE__, #cond, sheaf_last_error());                          \
      failures++;                                                            \
    }                                                                        \
  } while (0)

#define P(s) (const uint8_t *)(s), strlen(s)

static void check_stat(const sheaf_dataset *ds) {
  sheaf_stat st;
  CHECK(sheaf_stat_path(ds, P("hello.txt"), 1, &st) == SHEAF_OK);
  CHECK(st.size == 13 && st.kind == SHEAF_FILE && S_ISREG(st.mode) && st.flags == 0);
  CHECK(sheaf_stat_path(ds, P("dir/link"), 0, &st) == SHEAF_OK);
  CHECK(st.kind == SHEAF_SYMLINK && S_ISLNK(st.mode) && st.size == 5);
  CHECK(sheaf_stat_path(ds, P("dir/link"), 1, &st) == SHEAF_OK);
  CHECK(st.kind == SHEAF_FILE && st.size == 1000);
  CHECK(sheaf_stat_path(ds, P(""), 1, &st) == SHEAF_OK && st.kind == SHEAF_DIR);
  CHECK(sheaf_stat_path(ds, P("/"), 1, &st) == SHEAF_OK && st.kind == SHEAF_DIR);
  CHECK(sheaf_stat_path(ds, P("empty"), 1, &st) == SHEAF_OK && S_ISDIR(st.mode));
  CHECK(sheaf_stat_path(ds, P("big.bin"), 1, &st) == SHEAF_OK);
  CHECK(st.size == 300000 && (st.flags & SHEAF_STAT_EXTERNAL));
}

/* An allocator for sheaf_read_alloc: hands out the arena's buffer for up to its size, null for
 * more, and counts its calls. */
struct arena {
  uint8_t buf[2000];
  size_t calls;
};

static uint8_t *arena_alloc(void *ctx, size_t len) {
  struct arena *arena = ctx;
  arena->calls++;
  return len <= sizeof arena->buf ? arena->buf : NULL;
}

/* malloc(0) may return null: an allocator that always does, counting its calls. */
static uint8_t *null_alloc(void *ctx, size_t len) {
  (void)len;
  (*(size_t *)ctx)++;
  return NULL;
}

static void check_read_alloc(const sheaf_dataset *ds) {
  struct arena arena = {{0}, 0};
  size_t len = 0;
  CHECK(sheaf_read_alloc(ds, P("dir/link"), arena_alloc, &arena, &len) == SHEAF_OK);
  CHECK(len == 1000 && arena.calls == 1);
  for (size_t i = 0; i < len; i++) CHECK(arena.buf[i] == i % 251);

  CHECK(sheaf_read_alloc(ds, P("big.bin"), arena_alloc, &arena, &len) == SHEAF_BUFFER_TOO_SMALL);
  CHECK(len == 300000 && arena.calls == 2);

  CHECK(sheaf_read_alloc(ds, P("missing.txt"), arena_alloc, &arena, &len) == SHEAF_NOT_FOUND);
  CHECK(arena.calls == 2); /* not called when there is nothing to read */
  CHECK(sheaf_read_alloc(ds, P("hello.txt"), NULL, &arena, &len) == SHEAF_INVALID_ARGUMENT);

  /* An empty file needs no memory: null is not a failure there, and is for any other length. */
  size_t null_calls = 0;
  CHECK(sheaf_read_alloc(ds, P("dir/zero"), null_alloc, &null_calls, &len) == SHEAF_OK);
  CHECK(len == 0 && null_calls == 1);
  CHECK(sheaf_read_alloc(ds, P("hello.txt"), null_alloc, &null_calls, &len) ==
        SHEAF_BUFFER_TOO_SMALL);
  CHECK(len == 13 && null_calls == 2);
}

static void check_reads(const sheaf_dataset *ds) {
  uint8_t buf[2000];
  size_t len = 0;
  CHECK(sheaf_read_into(ds, P("hello.txt"), buf, sizeof buf, &len) == SHEAF_OK);
  CHECK(len == 13 && memcmp(buf, "hello, sheaf\n", 13) == 0);

  CHECK(sheaf_read_into(ds, P("dir/link"), buf, sizeof buf, &len) == SHEAF_OK);
  CHECK(len == 1000);
  for (size_t i = 0; i < len; i++) CHECK(buf[i] == i % 251);

  CHECK(sheaf_read_into(ds, P("dir/a.bin"), buf, 10, &len) == SHEAF_BUFFER_TOO_SMALL);
  CHECK(len == 1000);

  sheaf_bytes bytes;
  CHECK(sheaf_read(ds, P("big.bin"), &bytes) == SHEAF_OK);
  CHECK(bytes.len == 300000 && bytes.data[0] == 'x' && bytes.data[299999] == 'x');
  sheaf_bytes_free(&bytes);
  CHECK(bytes.data == NULL && bytes.owner == NULL);
  sheaf_bytes_free(&bytes); /* a second free is harmless */
}

static void check_listing(const sheaf_dataset *ds) {
  sheaf_listing *listing = NULL;
  CHECK(sheaf_list(ds, P(""), &listing) == SHEAF_OK);
  const char *expected[] = {"big.bin", "dir", "empty", "hello.txt"};
  CHECK(sheaf_listing_len(listing) == 4);
  for (size_t i = 0; i < 4 && i < sheaf_listing_len(listing); i++) {
    const uint8_t *name;
    size_t name_len;
    sheaf_stat st;
    CHECK(sheaf_listing_get(listing, i, &name, &name_len, &st) == SHEAF_OK);
    CHECK(name_len == strlen(expected[i]) && memcmp(name, expected[i], name_len) == 0);
  }
  const uint8_t *name;
  size_t name_len;
  CHECK(sheaf_listing_get(listing, 4, &name, &name_len, NULL) == SHEAF_INVALID_ARGUMENT);
  sheaf_listing_free(listing);

  sheaf_walk *walk = NULL;
  CHECK(sheaf_walk_open(ds, P("dir"), &walk) == SHEAF_OK);
  const char *below_dir[] = {"dir/a.bin", "dir/link", "dir/zero"};
  size_t seen = 0;
  const uint8_t *path;
  size_t path_len;
  sheaf_status status;
  while ((status = sheaf_walk_next(walk, &path, &path_len, NULL)) == SHEAF_OK) {
    CHECK(seen < 3 && path_len == strlen(below_dir[seen]) &&
          memcmp(path, below_dir[seen], path_len) == 0);
    seen++;
  }
  CHECK(status == SHEAF_END && seen == 3);
  sheaf_walk_free(walk);

  /* An epoch order over the two regular files below dir (the symlink is not a sample). */
  sheaf_samples *samples = NULL;
  CHECK(sheaf_samples_open(ds, P("dir"), &samples) == SHEAF_OK);
  uint64_t sample_count = 0;
  CHECK(sheaf_samples_len(samples, &sample_count) == SHEAF_OK && sample_count == 2);
  sheaf_order_settings settings = {.seed = 7, .epoch = 1, .window = 1, .part = 0, .parts = 1};
  sheaf_bytes order = {0};
  CHECK(sheaf_samples_order(samples, &settings, 0, &order) == SHEAF_OK);
  CHECK(order.len == 2 * sizeof(uint64_t));
  uint64_t numbers[2];
  memcpy(numbers, order.data, sizeof numbers);
  CHECK((numbers[0] == 0 && numbers[1] == 1) || (numbers[0] == 1 && numbers[1] == 0));
  sheaf_bytes_free(&order);
  settings.part = 1;
  CHECK(sheaf_samples_order(samples, &settings, 0, &order) != SHEAF_OK);
  CHECK(sheaf_samples_order(samples, NULL, 0, &order) == SHEAF_INVALID_ARGUMENT);
  sheaf_samples_free(samples);
  CHECK(sheaf_samples_open(ds, P("hello.txt"), &samples) == SHEAF_NOT_A_DIRECTORY);

  uint64_t count = 0;
  /* Six entries and the external big.bin. */
  CHECK(sheaf_entry_count(ds, &count) == SHEAF_OK && count == 7);
}

static void check_errors(const sheaf_dataset *ds) {
  uint8_t buf[16];
  size_t len;
  sheaf_stat st;
  sheaf_listing *listing;
  sheaf_walk *walk;
  CHECK(sheaf_read_into(ds, P("missing.txt"), buf, sizeof buf, &len) == SHEAF_NOT_FOUND);
  CHECK(strstr(sheaf_last_error(), "missing.txt") != NULL);
  CHECK(sheaf_read_into(ds, P("../etc/passwd"), buf, sizeof buf, &len) == SHEAF_INVALID_PATH);
  CHECK(sheaf_read_into(ds, P("dir"), buf, sizeof buf, &len) == SHEAF_IS_A_DIRECTORY);
  CHECK(sheaf_list(ds, P("hello.txt"), &listing) == SHEAF_NOT_A_DIRECTORY);
  CHECK(listing == NULL);
  CHECK(sheaf_walk_open(ds, P("hello.txt"), &walk) == SHEAF_NOT_A_DIRECTORY);
  CHECK(sheaf_stat_path(NULL, P("hello.txt"), 1, &st) == SHEAF_INVALID_ARGUMENT);
  CHECK(sheaf_stat_path(ds, NULL, 3, 1, &st) == SHEAF_INVALID_ARGUMENT);
  CHECK(sheaf_stat_path(ds, P("hello.txt"), 1, NULL) == SHEAF_INVALID_ARGUMENT);
  CHECK(sheaf_read_into(ds, P("hello.txt"), NULL, 100, &len) == SHEAF_INVALID_ARGUMENT);

  sheaf_dataset *other = (sheaf_dataset *)1;
  CHECK(sheaf_open("/nonexistent/sheaf/dataset", NULL, 0, &other) == SHEAF_NOT_A_DATASET);
  CHECK(other == NULL);
  CHECK(sheaf_open(NULL, NULL, 0, &other) == SHEAF_INVALID_ARGUMENT);
  CHECK(sheaf_open("/tmp", NULL, 0x80, &other) == SHEAF_INVALID_ARGUMENT);
  sheaf_close(NULL);
}

static void check_counters(const sheaf_dataset *ds) {
  size_t n = sheaf_counter_count();
  CHECK(n > 2 && sheaf_counter_name(n) == NULL);
  uint64_t values[64];
  size_t written = 0;
  CHECK(sheaf_stats(ds, values, 64, &written) == SHEAF_OK && written == n);
  int found_origin_reads = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(sheaf_counter_name(i), "origin_reads") == 0) {
      found_origin_reads = 1;
      /* Without a cache every stored read is an origin read: hello.txt, the link target
         (twice), a.bin, the symlink itself on each resolve. */
      CHECK(values[i] >= 3);
    }
  }
  CHECK(found_origin_reads);
}

static void check_generations(const char *uri, const sheaf_dataset *ds) {
  uint64_t generation = 99;
  CHECK(sheaf_generation(ds, &generation) == SHEAF_OK && generation == 0);
  int32_t moved = -1;
  CHECK(sheaf_refresh(ds, &moved) == SHEAF_OK && moved == 0);
  CHECK(sheaf_refresh(ds, NULL) == SHEAF_INVALID_ARGUMENT);
  sheaf_dataset *pinned = NULL;
  CHECK(sheaf_open_generation(uri, NULL, 0, 0, &pinned) == SHEAF_OK);
  CHECK(sheaf_generation(pinned, &generation) == SHEAF_OK && generation == 0);
  sheaf_close(pinned);
  sheaf_dataset *missing = (sheaf_dataset *)1;
  CHECK(sheaf_open_generation(uri, NULL, 0, 7, &missing) == SHEAF_NOT_FOUND);
  CHECK(missing == NULL);
  CHECK(strstr(sheaf_last_error(), "no generation 7") != NULL);
  CHECK(sheaf_open_generation(uri, NULL, 0, SHEAF_NEWEST, &pinned) == SHEAF_OK);
  sheaf_close(pinned);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DATASET\n", argv[0]);
    return 2;
  }
  printf("libsheaf_capi %s\n", sheaf_version());
  sheaf_dataset *ds = NULL;
  if (sheaf_open(argv[1], NULL, 0, &ds) != SHEAF_OK) {
    fprintf(stderr, "open %s: %s\n", argv[1], sheaf_last_error());
    return 1;
  }
  check_stat(ds);
  check_reads(ds);
  check_read_alloc(ds);
  check_listing(ds);
  check_errors(ds);
  check_counters(ds);
  check_generations(argv[1], ds);
  sheaf_close(ds);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all C ABI checks passed\n");
  return 0;
}
