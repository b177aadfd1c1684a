/* write-read: the rig's test image program for volumes. `write-read write PATH TEXT` writes TEXT
 * and a newline at the start of PATH (a file, created, or a block device) and fsyncs it;
 * `write-read read PATH` prints PATH's first line. Either prints what it did on stdout (the
 * container's log), then waits for SIGTERM or SIGINT and exits 0, so the volume stays in use
 * until the pod is deleted. An error is printed on stderr and exits 1. Built static by
 * rig/build.sh. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int fail(const char *what, const char *path) {
  fprintf(stderr, "write-read: %s %s: %s\n", what, path, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (argc == 4 && strcmp(argv[1], "write") == 0) {
    int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
    if (fd < 0) return fail("open", argv[2]);
    size_t n = strlen(argv[3]);
    if (write(fd, argv[3], n) != (ssize_t)n || write(fd, "\n", 1) != 1) return fail("write", argv[2]);
    if (fsync(fd) != 0 || close(fd) != 0) return fail("fsync", argv[2]);
    printf("wrote %s\n", argv[2]);
  } else if (argc == 3 && strcmp(argv[1], "read") == 0) {
    char buf[4096];
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return fail("open", argv[2]);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return fail("read", argv[2]);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    printf("read %s: %s\n", argv[2], buf);
    close(fd);
  } else {
    fprintf(stderr, "usage: write-read write PATH TEXT | write-read read PATH\n");
    return 2;
  }
  fflush(stdout);
  while (!stop) pause();
  return 0;
}
