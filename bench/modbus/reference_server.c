/*
 * Reference servers for bench/bench_modbus.py (compiled by the bench with gcc).
 *
 *   reference_server libmodbus PORT REGISTERS
 *       A libmodbus (Debian libmodbus-dev) Modbus TCP server: one select() loop,
 *       many clients, a holding-register mapping of REGISTERS registers. This is
 *       the "what a C server does on this machine" reference.
 *   reference_server canned PORT
 *       Not Modbus-aware: answers every 12-byte request with a fixed 100-register
 *       response (copying the transaction id). It does the least work a server
 *       can do, so the load generator's rate against it is the generator's own
 *       ceiling.
 *
 * Both print "ready" on stdout once listening and run until killed.
 */
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0) {
        perror("listen");
        exit(1);
    }
    return s;
}

static int run_libmodbus(int port, int registers) {
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new(0, 0, registers, registers);
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (int i = 0; i < registers; i++) {
        map->tab_registers[i] = (uint16_t)(i * 7);
        map->tab_input_registers[i] = (uint16_t)(i * 7);
    }
    int server = modbus_tcp_listen(ctx, 64);
    if (server < 0) {
        perror("modbus_tcp_listen");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    fd_set all;
    FD_ZERO(&all);
    FD_SET(server, &all);
    int fdmax = server;
    for (;;) {
        fd_set rd = all;
        if (select(fdmax + 1, &rd, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            perror("select");
            return 1;
        }
        for (int fd = 0; fd <= fdmax; fd++) {
            if (!FD_ISSET(fd, &rd)) continue;
            if (fd == server) {
                int c = accept(server, NULL, NULL);
                if (c >= 0) {
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    FD_SET(c, &all);
                    if (c > fdmax) fdmax = c;
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            int rc = modbus_receive(ctx, query);
            if (rc > 0) {
                modbus_reply(ctx, query, rc, map);
            } else if (rc == -1) {
                close(fd);
                FD_CLR(fd, &all);
            }
        }
    }
}

static int run_canned(int port) {
    int server = listen_on(port);
    uint8_t reply[9 + 200];
    memset(reply, 0, sizeof reply);
    reply[5] = 3 + 200; /* length: unit + fc + byte count + data */
    reply[7] = 3;
    reply[8] = 200;
    uint8_t buf[64][260];
    int have[1024] = {0};
    printf("ready\n");
    fflush(stdout);
    fd_set all;
    FD_ZERO(&all);
    FD_SET(server, &all);
    int fdmax = server;
    for (;;) {
        fd_set rd = all;
        if (select(fdmax + 1, &rd, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int fd = 0; fd <= fdmax; fd++) {
            if (!FD_ISSET(fd, &rd)) continue;
            if (fd == server) {
                int c = accept(server, NULL, NULL);
                if (c >= 0 && c < 64) {
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    FD_SET(c, &all);
                    have[c] = 0;
                    if (c > fdmax) fdmax = c;
                } else if (c >= 0) {
                    close(c);
                }
                continue;
            }
            ssize_t n = recv(fd, buf[fd] + have[fd], sizeof buf[fd] - have[fd], 0);
            if (n <= 0) {
                close(fd);
                FD_CLR(fd, &all);
                continue;
            }
            have[fd] += (int)n;
            while (have[fd] >= 12) { /* the bench sends 12-byte FC03 requests */
                reply[0] = buf[fd][0];
                reply[1] = buf[fd][1];
                reply[6] = buf[fd][6];
                if (send(fd, reply, sizeof reply, 0) < 0) break;
                memmove(buf[fd], buf[fd] + 12, have[fd] - 12);
                have[fd] -= 12;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "libmodbus") == 0)
        return run_libmodbus(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "canned") == 0) return run_canned(atoi(argv[2]));
    fprintf(stderr, "usage: %s libmodbus PORT REGISTERS | canned PORT\n", argv[0]);
    return 2;
}
