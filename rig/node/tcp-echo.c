/* tcp-echo: the rig's test server image program. Listens on the TCP port given as its argument
 * (all addresses), prints "listening on <port>" (the container's log), and sends back whatever
 * each connection sends until that connection closes; exits 0 on SIGTERM or SIGINT. Each
 * connection is served by a child process. Built static by rig/build.sh. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void echo(int conn) {
  char buf[4096];
  ssize_t n;
  while ((n = read(conn, buf, sizeof buf)) > 0) {
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(conn, buf + off, (size_t)(n - off));
      if (w <= 0) return;
      off += w;
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: tcp-echo PORT\n"); return 2; }
  int port = atoi(argv[1]);
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;  /* no SA_RESTART: accept returns EINTR and the loop sees stop */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGCHLD, SIG_IGN);  /* children are reaped by the kernel */
  int srv = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (srv < 0 || bind(srv, (struct sockaddr *)&addr, sizeof addr) || listen(srv, 64)) {
    perror("tcp-echo");
    return 1;
  }
  printf("listening on %d\n", port);
  fflush(stdout);
  while (!stop) {
    int conn = accept(srv, NULL, NULL);
    if (conn < 0) {
      if (errno == EINTR) continue;
      perror("accept");
      return 1;
    }
    if (fork() == 0) {
      close(srv);
      echo(conn);
      _exit(0);
    }
    close(conn);
  }
  return 0;
}
