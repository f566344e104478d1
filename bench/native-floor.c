/*
 * The native floor of the offload's topology (bench/native-floor.ts compiles and runs it).
 *
 * The least any implementation of this design does for a ResNet-50 request, written in C
 * with blocking system calls and nothing else: the app seals the 602,112-byte input with
 * AES-256-GCM in 128 KiB chunks and writes each as soon as it is sealed; a relay process
 * (SGS's place) forwards bytes both ways on two blocking threads without reading them; the
 * compute process (the context's place) opens each chunk as it arrives, "computes" for
 * compute_us while walking touch_bytes of memory (the model's weights going through the
 * caches), then seals its 4,000-byte answer (the size of 1000 f32 logits) and writes it back.
 * The app opens it and checks it is the first 4,000 bytes of its own input (the round trip
 * did carry the data). Between requests the app walks the same memory for the same time (the
 * resnet50 benchmark's direct run, so both sides start each request with cold caches).
 *
 * No CBOR, no frame headers beyond a length, a counter and a tag, no key schedule, no
 * handshake, no scheduling, no event loop: each of these can only add to the figures.
 *
 *   native-floor <requests> <warmup> <compute_us> <touch_bytes> <small_ops>
 *
 * Prints one JSON object: the overhead (end to end minus the compute process's measured
 * compute time) through the relay and straight to the compute process, p50 and p99 in ms;
 * and the round trip of a 200-byte message, plain to an echo process and sealed through the
 * relay, p50 in microseconds. Any failed tag, short read or mismatch exits non-zero.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INPUT_BYTES 602112 /* 1x3x224x224 f32 */
#define OUTPUT_BYTES 4000  /* 1000 f32 logits */
#define CHUNK_BYTES 131072 /* the EGP's default chunk */
#define SMALL_BYTES 200    /* about an ABE frame of a small launch, as the raw round trip */
#define TAG_BYTES 16

struct frame_header {
  uint32_t length;
  uint32_t direction;
  uint64_t counter;
  double compute_us; /* the compute process's time, on its answer (not authenticated: a floor, not a protocol) */
  unsigned char tag[TAG_BYTES];
};

static unsigned char key[32];
static EVP_CIPHER_CTX *cipher;

static void fail(const char *what) {
  fprintf(stderr, "native-floor: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
  exit(2);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int read_all(int fd, void *into, size_t length) {
  size_t done = 0;
  while (done < length) {
    ssize_t got = read(fd, (char *)into + done, length - done);
    if (got == 0) return 0; /* the other end closed */
    if (got < 0) {
      if (errno == EINTR) continue;
      fail("read");
    }
    done += (size_t)got;
  }
  return 1;
}

static void write_all(int fd, const void *from, size_t length) {
  size_t done = 0;
  while (done < length) {
    ssize_t put = write(fd, (const char *)from + done, length - done);
    if (put < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    done += (size_t)put;
  }
}

static void nonce_of(const struct frame_header *header, unsigned char nonce[12]) {
  memcpy(nonce, &header->direction, 4);
  memcpy(nonce + 4, &header->counter, 8);
}

/* Seals `plain` into `data` (the same memory or not); the length, direction and counter are the AAD. */
static void seal_into(struct frame_header *header, const unsigned char *plain, unsigned char *data) {
  unsigned char nonce[12];
  int length;
  nonce_of(header, nonce);
  if (EVP_EncryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
      EVP_EncryptUpdate(cipher, NULL, &length, (const unsigned char *)header, 16) != 1 ||
      EVP_EncryptUpdate(cipher, data, &length, plain, (int)header->length) != 1 ||
      EVP_EncryptFinal_ex(cipher, data + length, &length) != 1 ||
      EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, header->tag) != 1) {
    fail("sealing");
  }
}

static void seal(struct frame_header *header, unsigned char *data) { seal_into(header, data, data); }

/* Opens `data` in place, refusing a wrong tag or a counter not above the last one. */
static void open_sealed(struct frame_header *header, unsigned char *data, uint64_t *last_counter) {
  unsigned char nonce[12];
  int length;
  if (header->counter <= *last_counter) fail("a replayed frame");
  *last_counter = header->counter;
  nonce_of(header, nonce);
  if (EVP_DecryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
      EVP_DecryptUpdate(cipher, NULL, &length, (const unsigned char *)header, 16) != 1 ||
      EVP_DecryptUpdate(cipher, data, &length, data, (int)header->length) != 1 ||
      EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, header->tag) != 1 ||
      EVP_DecryptFinal_ex(cipher, data + length, &length) != 1) {
    fail("a frame failed to open");
  }
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

static void *forward(void *argument) {
  const struct direction *way = argument;
  static __thread unsigned char buffer[256 * 1024];
  for (;;) {
    ssize_t got = read(way->from, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) _exit(0);
    write_all(way->to, buffer, (size_t)got);
  }
  return NULL;
}

static void run_relay(int app_side, int compute_side) {
  struct direction out = { app_side, compute_side }, back = { compute_side, app_side };
  pthread_t thread;
  if (pthread_create(&thread, NULL, forward, &out) != 0) fail("pthread_create");
  forward(&back);
}

/* ---- the compute process: the context's place ---- */

static void run_compute(int fd, double compute_us, const unsigned char *weights, size_t touch_bytes) {
  unsigned char *input = malloc(INPUT_BYTES), output[OUTPUT_BYTES];
  uint64_t last_in = 0, counter_out = 0;
  volatile uint64_t sink = 0;
  if (input == NULL) fail("malloc");
  for (;;) {
    size_t received = 0;
    while (received < INPUT_BYTES) {
      struct frame_header header;
      if (!read_all(fd, &header, sizeof header)) _exit(0);
      if (header.direction != 0 || header.length > INPUT_BYTES - received) fail("an unexpected frame");
      if (!read_all(fd, input + received, header.length)) fail("a truncated frame");
      open_sealed(&header, input + received, &last_in);
      received += header.length;
    }
    const double start = now_us();
    sink += walk_for(weights, touch_bytes, compute_us);
    memcpy(output, input, OUTPUT_BYTES);
    struct frame_header answer = { OUTPUT_BYTES, 1, ++counter_out, now_us() - start, { 0 } };
    seal(&answer, output);
    write_all(fd, &answer, sizeof answer);
    write_all(fd, output, OUTPUT_BYTES);
  }
}

static void run_echo(int fd, int sealed) {
  unsigned char message[SMALL_BYTES];
  uint64_t last_in = 0, counter_out = 0;
  for (;;) {
    struct frame_header header;
    if (sealed) {
      if (!read_all(fd, &header, sizeof header)) _exit(0);
      if (header.length != SMALL_BYTES) fail("an unexpected frame");
    }
    if (!read_all(fd, message, SMALL_BYTES)) _exit(0);
    if (sealed) {
      open_sealed(&header, message, &last_in);
      header.direction = 1;
      header.counter = ++counter_out;
      seal(&header, message);
      write_all(fd, &header, sizeof header);
    }
    write_all(fd, message, SMALL_BYTES);
  }
}

/* ---- the app: the EGP's place ---- */

struct route { int fd; pid_t children[2]; int count; };

/* A connection to a child running `serve`, through a relay process when `relayed`. */
static struct route open_route(int relayed, void (*serve)(int fd, void *context), void *context) {
  struct route route = { -1, { 0, 0 }, 0 };
  int app[2], far[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, app) != 0) fail("socketpair");
  int server_fd = app[1];
  if (relayed) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, far) != 0) fail("socketpair");
    pid_t relay = fork();
    if (relay < 0) fail("fork");
    if (relay == 0) {
      close(app[0]);
      close(far[1]);
      run_relay(app[1], far[0]);
    }
    route.children[route.count++] = relay;
    close(app[1]);
    close(far[0]);
    server_fd = far[1];
  }
  pid_t server = fork();
  if (server < 0) fail("fork");
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

static void close_route(struct route *route) {
  close(route->fd);
  for (int i = 0; i < route->count; i++) waitpid(route->children[i], NULL, 0);
}

static int by_value(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double quantile(double *values, int count, double q) {
  qsort(values, (size_t)count, sizeof *values, by_value);
  int index = (int)(q * (count - 1) + 0.5);
  return values[index];
}

struct compute_settings { double compute_us; const unsigned char *weights; size_t touch_bytes; };

static void serve_compute(int fd, void *context) {
  const struct compute_settings *settings = context;
  run_compute(fd, settings->compute_us, settings->weights, settings->touch_bytes);
}

static void serve_echo(int fd, void *context) { run_echo(fd, *(const int *)context); }

/* ResNet-50-sized requests over one route; returns p50 and p99 of the overhead (us). */
static void measure_requests(int relayed, int requests, int warmup, const struct compute_settings *settings, double result[2], int *identical) {
  struct route route = open_route(relayed, serve_compute, (void *)settings);
  unsigned char *plain = malloc(INPUT_BYTES), *space = malloc(INPUT_BYTES), answer[OUTPUT_BYTES];
  double *overheads = malloc(sizeof(double) * (size_t)requests);
  uint64_t counter = 0, last_in = 0;
  volatile uint64_t sink = 0;
  if (plain == NULL || space == NULL || overheads == NULL) fail("malloc");
  for (int r = 0; r < warmup + requests; r++) {
    for (size_t i = 0; i < INPUT_BYTES; i++) plain[i] = (unsigned char)(i * 31 + (size_t)r * 7);
    const double start = now_us();
    for (size_t offset = 0; offset < INPUT_BYTES; offset += CHUNK_BYTES) {
      const size_t length = INPUT_BYTES - offset < CHUNK_BYTES ? INPUT_BYTES - offset : CHUNK_BYTES;
      struct frame_header header = { (uint32_t)length, 0, ++counter, 0, { 0 } };
      seal_into(&header, plain + offset, space + offset); /* into the frames' memory, as the EGP does */
      write_all(route.fd, &header, sizeof header);
      write_all(route.fd, space + offset, length);
    }
    struct frame_header header;
    if (!read_all(route.fd, &header, sizeof header) || header.length != OUTPUT_BYTES || header.direction != 1) fail("no answer");
    if (!read_all(route.fd, answer, OUTPUT_BYTES)) fail("a truncated answer");
    open_sealed(&header, answer, &last_in);
    const double end = now_us();
    if (r >= warmup) {
      overheads[r - warmup] = end - start - header.compute_us;
      if (memcmp(answer, plain, OUTPUT_BYTES) == 0) (*identical)++;
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
  unsigned char message[SMALL_BYTES], back[SMALL_BYTES];
  double *times = malloc(sizeof(double) * (size_t)calls);
  uint64_t counter = 0, last_in = 0;
  if (times == NULL) fail("malloc");
  for (int i = 0; i < warmup + calls; i++) {
    memset(message, i & 0xff, SMALL_BYTES);
    const double start = now_us();
    struct frame_header header = { SMALL_BYTES, 0, ++counter, 0, { 0 } };
    if (sealed) {
      seal(&header, message);
      write_all(route.fd, &header, sizeof header);
    }
    write_all(route.fd, message, SMALL_BYTES);
    if (sealed && !read_all(route.fd, &header, sizeof header)) fail("no answer");
    if (!read_all(route.fd, back, SMALL_BYTES)) fail("no answer");
    if (sealed) open_sealed(&header, back, &last_in);
    if (i >= warmup) times[i - warmup] = now_us() - start;
    memset(message, i & 0xff, SMALL_BYTES);
    if (memcmp(back, message, SMALL_BYTES) != 0) fail("an echo that differs from its message");
  }
  close_route(&route);
  const double p50 = quantile(times, calls, 0.5);
  free(times);
  return p50;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: native-floor <requests> <warmup> <compute_us> <touch_bytes> <small_ops>\n");
    return 64;
  }
  const int requests = atoi(argv[1]), warmup = atoi(argv[2]), small_ops = atoi(argv[5]);
  const double compute_us = atof(argv[3]);
  const size_t touch_bytes = (size_t)strtoull(argv[4], NULL, 10);
  if (requests < 1 || warmup < 0 || compute_us < 0 || touch_bytes < 64 || small_ops < 1) {
    fprintf(stderr, "native-floor: requests and small_ops >= 1, warmup >= 0, compute_us >= 0, touch_bytes >= 64\n");
    return 64;
  }
  cipher = EVP_CIPHER_CTX_new();
  if (cipher == NULL || RAND_bytes(key, sizeof key) != 1) fail("OpenSSL set-up");
  unsigned char *weights = malloc(touch_bytes);
  if (weights == NULL) fail("malloc");
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
  EVP_CIPHER_CTX_free(cipher);
  free(weights);
  return 0;
}
