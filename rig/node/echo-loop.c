/* echo-loop: the rig's test image program. Prints each argument on a line of stdout (the
 * container's log), then waits for SIGTERM or SIGINT and exits 0. Built static by rig/build.sh. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  for (int i = 1; i < argc; i++) printf("%s\n", argv[i]);
  fflush(stdout);
  while (!stop) pause();
  return 0;
}
