/*
 * mute.c - a worker that attaches to its parent (channel, shared memory), writes one line on stderr and
 * then never says hello: to its parent it looks like a worker stuck on a C
 * runtime dialog, a debugger prompt or a loader deadlock (issue 8, item 2).
 * It uses the platform layer's worker side directly, as pp_worker_main
 * would, and stops before the handshake.
 */
#include <stdio.h>
#include <string.h>

#include "../platform/platform.h"
#include "helpers.h"

int main(int argc, char **argv) {
  static const char option[] = "--procpool-worker=";
  const char *arg = NULL, *colon;
  char spec[1024];
  long long ppid = 0;
  pp__attached_t at;
  int i;
  for (i = 1; i < argc; i++)
    if (strncmp(argv[i], option, sizeof(option) - 1) == 0)
      arg = argv[i] + sizeof(option) - 1;
  /* "<platform spec>:<cookie>,<parent pid>,..." */
  if (arg == NULL || (colon = strrchr(arg, ':')) == NULL ||
      (size_t)(colon - arg) >= sizeof(spec) ||
      sscanf(colon + 1, "%*[0-9a-f],%lld", &ppid) != 1)
    return 2;
  memcpy(spec, arg, (size_t)(colon - arg));
  spec[colon - arg] = '\0';
  if (pp__worker_attach(spec, ppid, 0, &at) != 0)
    return 3;
  fprintf(stderr, "mute: connected\n");
  fflush(stderr);
  pp_test_sleep_ms(60000);
  return 0;
}
