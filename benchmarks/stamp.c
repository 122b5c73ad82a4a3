/* The scale benchmark's child, compiled by the harness when a C compiler is
 * present: records its start on CLOCK_MONOTONIC and sends "S NAME PID T" to
 * the harness's unix datagram socket, as child.py does, then sleeps until a
 * signal ("sleep") or exits 1 ("crash"). Starting it costs an exec and little
 * else, so what the benchmark sees is the supervisor's own work.
 *
 *     stamp SOCK NAME sleep|crash
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (argc < 4) return 2;
    char msg[256];
    int n = snprintf(msg, sizeof msg, "S %s %ld %ld.%09ld", argv[2], (long)getpid(),
                     (long)ts.tv_sec, ts.tv_nsec);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s >= 0) {
        sendto(s, msg, (size_t)n, 0, (struct sockaddr *)&addr, sizeof addr);
        close(s);
    }
    if (strcmp(argv[3], "crash") == 0) return 1;
    for (;;) pause();
}
