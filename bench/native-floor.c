/*
 * The offload's topology written plainly in C (bench/native-floor.ts compiles and runs it):
 * what moving and sealing a ResNet-50 request costs on this machine before anything a
 * runtime adds.
 *
 * The app seals the 602,112-byte input with AES-256-GCM in 128 KiB chunks and writes each
 * (header and ciphertext in one writev) as soon as it is sealed; a relay process (SGS's
 * place) forwards bytes both ways on two blocking threads without reading them; the compute
 * process (the context's place) opens each chunk as it arrives, "computes" for compute_us
 * while walking touch_bytes of memory (the model's weights going through the caches), then
 * seals its 4,000-byte answer (the size of 1000 f32 logits) and writes it back. The app opens
 * it and checks it is the first 4,000 bytes of its own input (the round trip did carry the
 * data). Between requests the app walks the same memory for the same time (the resnet50
 * benchmark's direct run, so both sides start each request with cold caches).
 *
 * The AES key is set up once per route; each frame sets only its nonce (direction and a
 * counter). No CBOR, no frame headers beyond a length, a direction, a counter and a tag, no
 * per-operation keys, no handshake, no scheduling, no event loop. It is not a proof that no
 * implementation could do better (spinning instead of sleeping, shared memory, other socket
 * settings), only what the design's data movement and crypto cost when nothing else is there.
 *
 *   native-floor <requests> <warmup> <compute_us> <touch_bytes> <small_ops>
 *   native-floor --relay <listen_path> <target_path>
 *
 * The first form prints one JSON object: the overhead (end to end minus the compute
 * process's measured compute time) through the relay and straight to the compute process,
 * p50 and p99 in ms (nearest rank, as bench/ computes them); and the round trip of a 200-byte
 * message, plain to an echo process and sealed through the relay, p50 in microseconds. A
 * failed tag, a replayed counter, a short read, an answer that does not carry its input back
 * or a child that fails exits non-zero.
 *
 * The second form is the relay alone, as a server: it listens on a Unix socket, prints
 * "ready", and forwards each connection to target_path both ways, unread, until SIGTERM (the
 * bare path's benchmark puts it in SGS's place, next to the Node relay).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INPUT_BYTES 602112 /* 1x3x224x224 f32 */
#define OUTPUT_BYTES 4000  /* 1000 f32 logits */
#define CHUNK_BYTES 131072 /* the EGP's default chunk */
#define SMALL_BYTES 200    /* about an ABE frame of a small launch, as the raw round trip */
#define TAG_BYTES 16
#define AAD_BYTES 16       /* length, direction, counter */

struct frame_header {
  uint32_t length;
  uint32_t direction;
  uint64_t counter;
  double compute_us; /* the compute process's time, on its answer (not authenticated: a benchmark, not a protocol) */
  unsigned char tag[TAG_BYTES];
};

static EVP_CIPHER_CTX *sealer, *opener;

static void fail(const char *what) {
  fprintf(stderr, "native-floor: %s\n", what);
  exit(2);
}

static void fail_system(const char *what) {
  fprintf(stderr, "native-floor: %s: %s\n", what, strerror(errno));
  exit(2);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* Moves past `done` bytes of the parts left: whole parts are dropped, a partial one is shortened. */
static void skip_done(struct iovec **part, int *count, size_t done) {
  while (*count > 0 && done >= (*part)->iov_len) {
    done -= (*part)->iov_len;
    (*part)++;
    (*count)--;
  }
  if (*count > 0) {
    (*part)->iov_base = (char *)(*part)->iov_base + done;
    (*part)->iov_len -= done;
  }
}

/* Writes both parts whole, in as few system calls as the socket allows (usually one). */
static void write_frame(int fd, const void *header, size_t header_bytes, const void *payload, size_t payload_bytes) {
  struct iovec parts[2] = { { (void *)header, header_bytes }, { (void *)payload, payload_bytes } };
  struct iovec *part = parts;
  int count = payload_bytes > 0 ? 2 : 1;
  while (count > 0) {
    ssize_t put = writev(fd, part, count);
    if (put < 0) {
      if (errno == EINTR) continue;
      fail_system("write");
    }
    skip_done(&part, &count, (size_t)put);
  }
}

/*
 * Reads exactly header_bytes and payload_bytes after them (the receiver knows each frame's size),
 * in one system call when they are there. Returns 0 at a clean end of stream before the
 * header, fails on one inside a frame.
 */
static int read_parts(int fd, void *header, size_t header_bytes, void *payload, size_t payload_bytes) {
  struct iovec parts[2] = { { header, header_bytes }, { payload, payload_bytes } };
  struct iovec *part = parts;
  int count = payload_bytes > 0 ? 2 : 1;
  size_t total = 0;
  while (count > 0) {
    ssize_t got = readv(fd, part, count);
    if (got < 0) {
      if (errno == EINTR) continue;
      fail_system("read");
    }
    if (got == 0) {
      if (total == 0) return 0;
      fail("a truncated frame");
    }
    total += (size_t)got;
    skip_done(&part, &count, (size_t)got);
  }
  return 1;
}

static int read_frame(int fd, struct frame_header *header, void *payload, size_t payload_bytes) {
  return read_parts(fd, header, sizeof *header, payload, payload_bytes);
}

/* A fresh key for a route, set up once in both contexts (the route's children inherit them). */
static void new_key(void) {
  unsigned char key[32];
  if (RAND_bytes(key, sizeof key) != 1 ||
      EVP_EncryptInit_ex(sealer, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
      EVP_DecryptInit_ex(opener, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
    fail("OpenSSL key set-up");
  }
  memset(key, 0, sizeof key);
}

static void nonce_of(const struct frame_header *header, unsigned char nonce[12]) {
  memcpy(nonce, &header->direction, 4);
  memcpy(nonce + 4, &header->counter, 8);
}

/* Seals `plain` into `data` (the same memory or not); length, direction and counter are the AAD. */
static void seal_into(struct frame_header *header, const unsigned char *plain, unsigned char *data) {
  unsigned char nonce[12];
  int length;
  nonce_of(header, nonce);
  if (EVP_EncryptInit_ex(sealer, NULL, NULL, NULL, nonce) != 1 ||
      EVP_EncryptUpdate(sealer, NULL, &length, (const unsigned char *)header, AAD_BYTES) != 1 ||
      EVP_EncryptUpdate(sealer, data, &length, plain, (int)header->length) != 1 ||
      EVP_EncryptFinal_ex(sealer, data + length, &length) != 1 ||
      EVP_CIPHER_CTX_ctrl(sealer, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, header->tag) != 1) {
    fail("sealing");
  }
}

static void seal(struct frame_header *header, unsigned char *data) { seal_into(header, data, data); }

/* Opens `data` in place, refusing a counter not above the last accepted one or a wrong tag. */
static void open_sealed(struct frame_header *header, unsigned char *data, uint64_t *last_counter) {
  unsigned char nonce[12];
  int length;
  if (header->counter <= *last_counter) fail("a replayed frame");
  nonce_of(header, nonce);
  if (EVP_DecryptInit_ex(opener, NULL, NULL, NULL, nonce) != 1 ||
      EVP_DecryptUpdate(opener, NULL, &length, (const unsigned char *)header, AAD_BYTES) != 1 ||
      EVP_DecryptUpdate(opener, data, &length, data, (int)header->length) != 1 ||
      EVP_CIPHER_CTX_ctrl(opener, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, header->tag) != 1 ||
      EVP_DecryptFinal_ex(opener, data + length, &length) != 1) {
    fail("a frame failed to open");
  }
  *last_counter = header->counter;
}

/* Walks `bytes` of memory a cache line at a time until `us` have passed. */
static uint64_t walk_for(const unsigned char *memory, size_t bytes, double us) {
  const double until = now_us() + us;
  uint64_t sum = 0;
  size_t at = 0;
  do {
    for (int i = 0; i < 4096; i++) {
      sum += memory[at];
      at += 64;
      if (at >= bytes) at = 0;
    }
  } while (now_us() < until);
  return sum;
}

/* ---- the relay: SGS's place, bytes forwarded unread ---- */

struct direction { int from, to; };

/* Forwards one direction until its end of stream (or an error), then ends the other side's writing. */
static void *forward(void *argument) {
  const struct direction *way = argument;
  static __thread unsigned char buffer[256 * 1024];
  for (;;) {
    ssize_t got = read(way->from, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    size_t done = 0;
    while (done < (size_t)got) {
      ssize_t put = write(way->to, buffer + done, (size_t)got - done);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) goto end;
      done += (size_t)put;
    }
  }
end:
  shutdown(way->to, SHUT_WR);
  return NULL;
}

/* Both directions of one connection, on two threads; returns once both have ended. */
static void relay_connection(int a, int b) {
  struct direction out = { a, b }, back = { b, a };
  pthread_t thread;
  if (pthread_create(&thread, NULL, forward, &out) != 0) fail("pthread_create");
  forward(&back);
  pthread_join(thread, NULL);
  close(a);
  close(b);
}

struct relayed_connection { int client; const char *target; };

static void *serve_connection(void *argument) {
  struct relayed_connection *connection = argument;
  int target = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  strncpy(address.sun_path, connection->target, sizeof address.sun_path - 1);
  if (target < 0 || connect(target, (struct sockaddr *)&address, sizeof address) != 0) {
    fprintf(stderr, "native-floor: cannot connect to %s: %s\n", connection->target, strerror(errno));
    close(connection->client);
    if (target >= 0) close(target);
  } else {
    relay_connection(connection->client, target);
  }
  free(connection);
  return NULL;
}

static int run_relay_server(const char *listen_path, const char *target_path) {
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  if (strlen(listen_path) >= sizeof address.sun_path || strlen(target_path) >= sizeof address.sun_path) {
    fprintf(stderr, "native-floor: socket paths must be shorter than %zu bytes\n", sizeof address.sun_path);
    return 64;
  }
  strcpy(address.sun_path, listen_path);
  int server = socket(AF_UNIX, SOCK_STREAM, 0);
  if (server < 0 || bind(server, (struct sockaddr *)&address, sizeof address) != 0 || listen(server, 16) != 0) fail_system("listen");
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int client = accept(server, NULL, NULL);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      fail_system("accept");
    }
    struct relayed_connection *connection = malloc(sizeof *connection);
    pthread_t thread;
    if (connection == NULL) fail("out of memory");
    *connection = (struct relayed_connection){ client, target_path };
    if (pthread_create(&thread, NULL, serve_connection, connection) != 0) fail("pthread_create");
    pthread_detach(thread);
  }
}

/* ---- the compute process: the context's place ---- */

struct compute_settings { double compute_us; const unsigned char *weights; size_t touch_bytes; };

static void serve_compute(int fd, const void *context) {
  const struct compute_settings *settings = context;
  unsigned char *input = malloc(INPUT_BYTES), output[OUTPUT_BYTES];
  uint64_t last_in = 0, counter_out = 0;
  volatile uint64_t sink = 0;
  if (input == NULL) fail("out of memory");
  for (;;) {
    for (size_t received = 0; received < INPUT_BYTES;) {
      const size_t length = INPUT_BYTES - received < CHUNK_BYTES ? INPUT_BYTES - received : CHUNK_BYTES;
      struct frame_header header;
      if (!read_frame(fd, &header, input + received, length)) {
        if (received == 0) return; /* the app is done */
        fail("a truncated request");
      }
      if (header.direction != 0 || header.length != length) fail("an unexpected frame");
      open_sealed(&header, input + received, &last_in);
      received += length;
    }
    const double start = now_us();
    sink += walk_for(settings->weights, settings->touch_bytes, settings->compute_us);
    memcpy(output, input, OUTPUT_BYTES);
    struct frame_header answer = { OUTPUT_BYTES, 1, ++counter_out, now_us() - start, { 0 } };
    seal(&answer, output);
    write_frame(fd, &answer, sizeof answer, output, OUTPUT_BYTES);
  }
}

static void serve_echo(int fd, const void *context) {
  const int sealed = *(const int *)context;
  unsigned char message[SMALL_BYTES];
  uint64_t last_in = 0, counter_out = 0;
  for (;;) {
    struct frame_header header;
    if (sealed) {
      if (!read_frame(fd, &header, message, SMALL_BYTES)) return;
      if (header.length != SMALL_BYTES || header.direction != 0) fail("an unexpected frame");
      open_sealed(&header, message, &last_in);
      header.direction = 1;
      header.counter = ++counter_out;
      seal(&header, message);
      write_frame(fd, &header, sizeof header, message, SMALL_BYTES);
    } else {
      if (!read_parts(fd, message, SMALL_BYTES, NULL, 0)) return;
      write_frame(fd, message, SMALL_BYTES, NULL, 0);
    }
  }
}

/* ---- the app: the EGP's place ---- */

struct route { int fd; pid_t children[2]; int count; };

/* A connection, under a fresh key, to a child running `serve`, through a relay process when `relayed`. */
static struct route open_route(int relayed, void (*serve)(int fd, const void *context), const void *context) {
  struct route route = { -1, { 0, 0 }, 0 };
  int app[2], far[2];
  new_key();
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, app) != 0) fail_system("socketpair");
  int server_fd = app[1];
  if (relayed) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, far) != 0) fail_system("socketpair");
    pid_t relay = fork();
    if (relay < 0) fail_system("fork");
    if (relay == 0) {
      close(app[0]);
      close(far[1]);
      relay_connection(app[1], far[0]);
      _exit(0);
    }
    route.children[route.count++] = relay;
    close(app[1]);
    close(far[0]);
    server_fd = far[1];
  }
  pid_t server = fork();
  if (server < 0) fail_system("fork");
  if (server == 0) {
    close(app[0]);
    serve(server_fd, context);
    _exit(0);
  }
  route.children[route.count++] = server;
  close(server_fd);
  route.fd = app[0];
  return route;
}

/* Closes the app's end and waits for the route's children, each of which must have exited 0. */
static void close_route(struct route *route) {
  close(route->fd);
  for (int i = 0; i < route->count; i++) {
    int status;
    if (waitpid(route->children[i], &status, 0) < 0) fail_system("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("a child process failed");
  }
}

static int by_value(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank, as bench/'s quantile(): the ceil(q * count)-th smallest. Sorts `values`. */
static double quantile(double *values, int count, double q) {
  qsort(values, (size_t)count, sizeof *values, by_value);
  int rank = (int)ceil(q * count);
  if (rank < 1) rank = 1;
  if (rank > count) rank = count;
  return values[rank - 1];
}

/* ResNet-50-sized requests over one route; returns p50 and p99 of the overhead (us) and counts the answers that carried their input. */
static void measure_requests(int relayed, int requests, int warmup, const struct compute_settings *settings, double result[2], int *identical) {
  struct route route = open_route(relayed, serve_compute, settings);
  unsigned char *plain = malloc(INPUT_BYTES), *space = malloc(INPUT_BYTES), answer[OUTPUT_BYTES];
  double *overheads = malloc(sizeof(double) * (size_t)requests);
  uint64_t counter = 0, last_in = 0;
  volatile uint64_t sink = 0;
  if (plain == NULL || space == NULL || overheads == NULL) fail("out of memory");
  for (int r = 0; r < warmup + requests; r++) {
    for (size_t i = 0; i < INPUT_BYTES; i++) plain[i] = (unsigned char)(i * 31 + (size_t)r * 7);
    const double start = now_us();
    for (size_t offset = 0; offset < INPUT_BYTES; offset += CHUNK_BYTES) {
      const size_t length = INPUT_BYTES - offset < CHUNK_BYTES ? INPUT_BYTES - offset : CHUNK_BYTES;
      struct frame_header header = { (uint32_t)length, 0, ++counter, 0, { 0 } };
      seal_into(&header, plain + offset, space + offset); /* into the frames' memory, as the EGP does */
      write_frame(route.fd, &header, sizeof header, space + offset, length);
    }
    struct frame_header header;
    if (!read_frame(route.fd, &header, answer, OUTPUT_BYTES)) fail("no answer");
    if (header.length != OUTPUT_BYTES || header.direction != 1) fail("an unexpected answer");
    open_sealed(&header, answer, &last_in);
    const double end = now_us();
    if (memcmp(answer, plain, OUTPUT_BYTES) != 0) fail("an answer that does not carry its request's input");
    if (r >= warmup) {
      overheads[r - warmup] = end - start - header.compute_us;
      (*identical)++;
    }
    sink += walk_for(settings->weights, settings->touch_bytes, settings->compute_us); /* the direct run's place */
  }
  close_route(&route);
  result[0] = quantile(overheads, requests, 0.5);
  result[1] = quantile(overheads, requests, 0.99);
  free(plain);
  free(space);
  free(overheads);
}

/* Round trips of a 200-byte message, one at a time; returns the p50 (us). */
static double measure_round_trips(int relayed, int sealed, int calls, int warmup) {
  struct route route = open_route(relayed, serve_echo, &sealed);
  unsigned char message[SMALL_BYTES], back[SMALL_BYTES], expected[SMALL_BYTES];
  double *times = malloc(sizeof(double) * (size_t)calls);
  uint64_t counter = 0, last_in = 0;
  if (times == NULL) fail("out of memory");
  for (int i = 0; i < warmup + calls; i++) {
    memset(expected, i & 0xff, SMALL_BYTES);
    memcpy(message, expected, SMALL_BYTES);
    const double start = now_us();
    struct frame_header header = { SMALL_BYTES, 0, ++counter, 0, { 0 } };
    if (sealed) {
      seal(&header, message);
      write_frame(route.fd, &header, sizeof header, message, SMALL_BYTES);
      if (!read_frame(route.fd, &header, back, SMALL_BYTES)) fail("no answer");
      if (header.length != SMALL_BYTES || header.direction != 1) fail("an unexpected answer");
      open_sealed(&header, back, &last_in);
    } else {
      write_frame(route.fd, message, SMALL_BYTES, NULL, 0);
      if (!read_parts(route.fd, back, SMALL_BYTES, NULL, 0)) fail("no answer");
    }
    if (i >= warmup) times[i - warmup] = now_us() - start;
    if (memcmp(back, expected, SMALL_BYTES) != 0) fail("an echo that differs from its message");
  }
  close_route(&route);
  const double p50 = quantile(times, calls, 0.5);
  free(times);
  return p50;
}

/* A whole decimal number in [min, max], or exit 64 naming the argument. */
static long long parse_integer(const char *text, const char *name, long long min, long long max) {
  char *end;
  errno = 0;
  long long value = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
    fprintf(stderr, "native-floor: %s must be a whole number from %lld to %lld, got '%s'\n", name, min, max, text);
    exit(64);
  }
  return value;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* a peer gone is a failed write, reported, not a silent death */
  if (argc == 4 && strcmp(argv[1], "--relay") == 0) return run_relay_server(argv[2], argv[3]);
  if (argc != 6) {
    fprintf(stderr, "usage: native-floor <requests> <warmup> <compute_us> <touch_bytes> <small_ops>\n"
                    "       native-floor --relay <listen_path> <target_path>\n");
    return 64;
  }
  const int requests = (int)parse_integer(argv[1], "requests", 1, 100000);
  const int warmup = (int)parse_integer(argv[2], "warmup", 0, 100000);
  const double compute_us = (double)parse_integer(argv[3], "compute_us", 0, 10000000);
  const size_t touch_bytes = (size_t)parse_integer(argv[4], "touch_bytes", 64, 1LL << 34);
  const int small_ops = (int)parse_integer(argv[5], "small_ops", 1, 10000000);

  sealer = EVP_CIPHER_CTX_new();
  opener = EVP_CIPHER_CTX_new();
  unsigned char *weights = malloc(touch_bytes);
  if (sealer == NULL || opener == NULL || weights == NULL) fail("out of memory");
  for (size_t i = 0; i < touch_bytes; i++) weights[i] = (unsigned char)i;

  const struct compute_settings settings = { compute_us, weights, touch_bytes };
  double relayed[2], one_link[2];
  int identical = 0;
  measure_requests(1, requests, warmup, &settings, relayed, &identical);
  measure_requests(0, requests, warmup, &settings, one_link, &identical);
  const double raw = measure_round_trips(0, 0, small_ops, small_ops / 3);
  const double relayed_sealed = measure_round_trips(1, 1, small_ops, small_ops / 3);
  printf("{\"requests\":%d,\"relayed\":{\"overheadMs\":%.3f,\"overheadP99Ms\":%.3f},"
         "\"oneLink\":{\"overheadMs\":%.3f,\"overheadP99Ms\":%.3f},\"identical\":%d,"
         "\"rawRttUs\":%.1f,\"relayedSealedRttUs\":%.1f}\n",
         requests, relayed[0] / 1000, relayed[1] / 1000, one_link[0] / 1000, one_link[1] / 1000, identical, raw, relayed_sealed);
  EVP_CIPHER_CTX_free(sealer);
  EVP_CIPHER_CTX_free(opener);
  free(weights);
  return 0;
}
