/* RTP-sized packet generator and sink for bench/relay_vs_rtpengine.py.
 *
 * rtpgen SRC_HOST SINK_HOST          (e.g. rtpgen ::1 127.0.0.1)
 * Binds one sending socket on SRC_HOST and one sink socket on SINK_HOST (ephemeral ports)
 * and prints "ports SRC SINK". Then reads commands on stdin, one per line:
 *   targets HOST FILE                 destinations: FILE holds one port per line
 *   run STEP RATE WARM SECS DRAIN     send RATE packets/s (0: as fast as possible) round-robin
 *                                     over the targets: WARM s uncounted, then SECS s with
 *                                     step id STEP; prints "W" when the counted part starts,
 *                                     "M SENT ELAPSED" when it ends, and after DRAIN s
 *                                     "R SENT RECV P50_US P90_US P99_US MAX_US" (latency of
 *                                     the counted packets that arrived).
 *   quit
 * Packets are 172 bytes: a 12-byte RTP header (SSRC = stream index, seq and timestamp per
 * stream), then u32 step id, u64 send time (CLOCK_REALTIME ns, taken just before sendto),
 * then filler. The sink thread reads with recvmmsg and SO_TIMESTAMPNS: the arrival time is
 * the kernel's receive timestamp of the relay's packet (independent of the sink's own
 * scheduling), on the same clock.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PKT 172
#define MAXT 65536
#define HIST_US 1000000 /* 1 us bins up to 1 s */
#define BATCH 64

static int tx, rx;
static struct sockaddr_storage dst[MAXT];
static socklen_t dstlen;
static int ntargets;
static volatile uint32_t cur_step; /* 0: count nothing */
static uint64_t received;
static uint32_t *hist;

static uint64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int bind_udp(const char *host, int rcvbuf) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int fam;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = fam = AF_INET6;
        inet_pton(AF_INET6, host, &s6->sin6_addr);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = fam = AF_INET;
        inet_pton(AF_INET, host, &s4->sin_addr);
        len = sizeof *s4;
    }
    int fd = socket(fam, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0) {
        perror("bind");
        exit(1);
    }
    if (rcvbuf) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    return fd;
}

static int port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void *sink(void *arg) {
    (void)arg;
    static char bufs[BATCH][2048];
    static char ctl[BATCH][256];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    int on = 1;
    setsockopt(rx, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = sizeof bufs[i];
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = ctl[i];
            msgs[i].msg_hdr.msg_controllen = sizeof ctl[i];
        }
        int n = recvmmsg(rx, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return NULL;
        }
        uint32_t step = __atomic_load_n(&cur_step, __ATOMIC_ACQUIRE);
        uint64_t fallback = 0;
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_len != PKT) continue;
            uint32_t s;
            uint64_t t0, t1 = 0;
            memcpy(&s, bufs[i] + 12, 4);
            if (s != step || step == 0) continue;
            memcpy(&t0, bufs[i] + 16, 8);
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
                 c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    t1 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
                }
            }
            if (!t1) t1 = fallback ? fallback : (fallback = now_ns(CLOCK_REALTIME));
            uint64_t us = t1 > t0 ? (t1 - t0) / 1000 : 0;
            if (us >= HIST_US) us = HIST_US - 1;
            hist[us]++;
            __atomic_add_fetch(&received, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

static uint64_t pct(uint64_t total, double p) {
    if (!total) return 0;
    uint64_t want = (uint64_t)(p * (double)total), acc = 0;
    if (want >= total) want = total - 1;
    for (uint64_t i = 0; i < HIST_US; i++) {
        acc += hist[i];
        if (acc > want) return i;
    }
    return HIST_US;
}

static uint64_t counter; /* packets ever sent: stream = counter % ntargets */

/* Send at `rate` pps (0 = flat out) for `secs` seconds with step id `step`. */
static uint64_t send_phase(uint32_t step, double rate, double secs, double *elapsed) {
    unsigned char pkt[PKT];
    memset(pkt, 0xd5, sizeof pkt);
    pkt[0] = 0x80;
    pkt[1] = 0;
    memcpy(pkt + 12, &step, 4);
    uint64_t start = now_ns(CLOCK_MONOTONIC), end = start + (uint64_t)(secs * 1e9), sent = 0;
    for (;;) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (now >= end) break;
        uint64_t due = rate > 0 ? (uint64_t)((double)(now - start) * rate / 1e9) + 1 : sent + BATCH;
        if (sent >= due) {
            uint64_t next = start + (uint64_t)((double)sent * 1e9 / rate);
            if (next > now) sleep_ns(next - now); /* never spin: the sink shares the core */
            continue;
        }
        uint64_t burst = due - sent;
        if (burst > BATCH) burst = BATCH;
        for (uint64_t i = 0; i < burst; i++) {
            uint64_t c = counter++;
            uint32_t stream = (uint32_t)(c % (uint64_t)ntargets);
            uint32_t n = (uint32_t)(c / (uint64_t)ntargets);
            uint16_t seq = htons((uint16_t)n);
            uint32_t ts = htonl(n * 160u), ssrc = htonl(stream + 1);
            memcpy(pkt + 2, &seq, 2);
            memcpy(pkt + 4, &ts, 4);
            memcpy(pkt + 8, &ssrc, 4);
            uint64_t t = now_ns(CLOCK_REALTIME);
            memcpy(pkt + 16, &t, 8);
            if (sendto(tx, pkt, PKT, 0, (struct sockaddr *)&dst[stream], dstlen) == PKT) sent++;
        }
    }
    *elapsed = (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e9;
    return sent;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rtpgen SRC_HOST SINK_HOST\n");
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1UL);
    tx = bind_udp(argv[1], 0);
    rx = bind_udp(argv[2], 32 << 20);
    hist = calloc(HIST_US, sizeof *hist);
    pthread_t th;
    pthread_create(&th, NULL, sink, NULL);
    printf("ports %d %d\n", port_of(tx), port_of(rx));
    fflush(stdout);
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        char host[64], file[1024];
        unsigned step;
        double rate, warm, secs, drain;
        if (sscanf(line, "targets %63s %1023s", host, file) == 2) {
            FILE *f = fopen(file, "r");
            int port;
            ntargets = 0;
            while (f && ntargets < MAXT && fscanf(f, "%d", &port) == 1) {
                memset(&dst[ntargets], 0, sizeof dst[ntargets]);
                if (strchr(host, ':')) {
                    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst[ntargets];
                    s6->sin6_family = AF_INET6;
                    inet_pton(AF_INET6, host, &s6->sin6_addr);
                    s6->sin6_port = htons((uint16_t)port);
                    dstlen = sizeof *s6;
                } else {
                    struct sockaddr_in *s4 = (struct sockaddr_in *)&dst[ntargets];
                    s4->sin_family = AF_INET;
                    inet_pton(AF_INET, host, &s4->sin_addr);
                    s4->sin_port = htons((uint16_t)port);
                    dstlen = sizeof *s4;
                }
                ntargets++;
            }
            if (f) fclose(f);
            printf("T %d\n", ntargets);
        } else if (sscanf(line, "run %u %lf %lf %lf %lf", &step, &rate, &warm, &secs, &drain) == 5 &&
                   ntargets > 0 && step > 0) {
            double el;
            __atomic_store_n(&cur_step, 0, __ATOMIC_RELEASE);
            if (warm > 0) send_phase(0xffffffffu, rate, warm, &el);
            memset(hist, 0, HIST_US * sizeof *hist);
            __atomic_store_n(&received, 0, __ATOMIC_RELEASE);
            __atomic_store_n(&cur_step, step, __ATOMIC_RELEASE);
            printf("W\n");
            fflush(stdout);
            uint64_t sent = send_phase(step, rate, secs, &el);
            printf("M %llu %.6f\n", (unsigned long long)sent, el);
            fflush(stdout);
            sleep_ns((uint64_t)(drain * 1e9));
            __atomic_store_n(&cur_step, 0, __ATOMIC_RELEASE);
            usleep(1000);
            uint64_t got = __atomic_load_n(&received, __ATOMIC_ACQUIRE);
            printf("R %llu %llu %llu %llu %llu %llu\n", (unsigned long long)sent,
                   (unsigned long long)got, (unsigned long long)pct(got, 0.5),
                   (unsigned long long)pct(got, 0.9), (unsigned long long)pct(got, 0.99),
                   (unsigned long long)pct(got, 0.99999999));
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("E bad command\n");
        }
        fflush(stdout);
    }
    return 0;
}
