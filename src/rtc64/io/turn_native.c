/* rtc64.io._turn_native: the TURN UDP listener's client -> peer ChannelData forward in C
 * (optional; built by scripts/build_compiled.py into build/native/, see rtc64/_compiled.py).
 *
 * Rules:
 * - A Reader owns no state of its own that decides anything: it reads the Python tables
 *   the pure path reads (the listener's client -> channels dict, each Route's relay, host
 *   and peer, the relay's ``permitted`` dict, ``bucket_out``, ``transport``) on every
 *   datagram, so the core's Bind/Unbind/Permit/Unpermit events stay exact without a copy.
 * - ``read`` (a loop reader callback) drains the listener socket with recvmmsg (up to
 *   BATCH datagrams per call, at most ROUNDS calls per wake-up). A ChannelData datagram
 *   from a client whose channel is bound, whose peer is permitted, within the bucket and
 *   whose relay's loop transport runs with nothing queued is sent here with sendto(2) on
 *   the relay's socket and counted on the relay as the pure path counts it. Everything
 *   else (STUN, short or unbound ChannelData, no permission, no transport yet, a queued
 *   relay) goes to ``fallback(data, addr)``: the pure ``datagram_received``, with the
 *   address tuple the event loop would have built. Over the bucket: counted as the pure
 *   path does (relay.over_limit, stats.channel_refused). A failed sendto hands the
 *   payload to the relay's loop transport (which queues or reports it, as the pure path)
 *   and marks the relay ``queued`` until that transport's buffer is empty again.
 * - ``sendto(data, addr)``: the listener's own sends (answers, relayed data to clients);
 *   a send the kernel refuses is dropped (False), as a UDP server does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define ROUNDS 8
#define BUFSIZE 65536

static PyObject *s_peer, *s_queued, *s_over_limit, *s_channel_refused, *s_take, *s_sendto,
    *s_get_write_buffer_size;

/* --- addresses ------------------------------------------------------------------------ */

/* ``(host, port)`` or ``(host, port, flowinfo, scope_id)`` -> sockaddr (padding zeroed). */
static int parse_addr(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof(*ss));
    if (!PyTuple_Check(addr)) {
        PyErr_SetString(PyExc_TypeError, "a socket address tuple is required");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    if (n != 2 && n != 4) {
        PyErr_SetString(PyExc_ValueError, "a socket address has 2 or 4 items");
        return -1;
    }
    PyObject *host = PyTuple_GET_ITEM(addr, 0);
    if (!PyUnicode_Check(host)) {
        PyErr_SetString(PyExc_TypeError, "the host must be a str");
        return -1;
    }
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) return -1;
    long port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (port == -1 && PyErr_Occurred()) return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    if (n == 2) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, text, &sin->sin_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv4 address: %R", host);
            return -1;
        }
        *len = sizeof(*sin);
        return 0;
    }
    unsigned long flow = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 2));
    if (flow == (unsigned long)-1 && PyErr_Occurred()) return -1;
    unsigned long scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 3));
    if (scope == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (flow > 0xFFFFFFFFUL || scope > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "flowinfo or scope id out of range");
        return -1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((unsigned short)port);
    sin6->sin6_flowinfo = htonl((uint32_t)flow);
    sin6->sin6_scope_id = (uint32_t)scope;
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1) {
        PyErr_Format(PyExc_ValueError, "not an IPv6 address: %R", host);
        return -1;
    }
    *len = sizeof(*sin6);
    return 0;
}

/* The tuple the event loop hands in for a datagram from ``sa`` (None if not IP). */
static PyObject *addr_tuple(const struct sockaddr_storage *ss, socklen_t len) {
    char text[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) == NULL) Py_RETURN_NONE;
        return Py_BuildValue("(si)", text, (int)ntohs(sin->sin_port));
    }
    if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)) == NULL) Py_RETURN_NONE;
        return Py_BuildValue("(siII)", text, (int)ntohs(sin6->sin6_port),
                             (unsigned int)ntohl(sin6->sin6_flowinfo),
                             (unsigned int)sin6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_sockaddr(PyObject *mod, PyObject *addr) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_addr(addr, &ss, &len) < 0) return NULL;
    return PyBytes_FromStringAndSize((const char *)&ss, len);
}

static PyObject *mod_address(PyObject *mod, PyObject *raw) {
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "bytes required");
        return NULL;
    }
    struct sockaddr_storage ss;
    Py_ssize_t n = PyBytes_GET_SIZE(raw);
    if (n > (Py_ssize_t)sizeof(ss)) {
        PyErr_SetString(PyExc_ValueError, "too long for a socket address");
        return NULL;
    }
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, PyBytes_AS_STRING(raw), n);
    return addr_tuple(&ss, (socklen_t)n);
}

/* --- direct slot access ----------------------------------------------------------------
 * ``layout(Route, RelaySocket)`` (called once by io.turn_fastpath) records where their
 * __slots__ live; objects of exactly those classes are then read at those offsets (what
 * the member descriptors do, without an attribute lookup each). Any other object, or a
 * slot not set, goes to the pure path. */

enum { R_RELAY, R_HOST, R_PEER, R_SA, R_N };
enum { S_PERMITTED, S_TRANSPORT, S_QUEUED, S_BUCKET_OUT, S_FD, S_TO_PEER_PACKETS, S_TO_PEER_BYTES,
       S_OVER_LIMIT, S_N };
static const char *route_slots[R_N] = {"relay", "host", "peer", "sa"};
static const char *relay_slots[S_N] = {"permitted", "transport", "queued", "bucket_out", "fd",
                                       "to_peer_packets", "to_peer_bytes", "over_limit"};
static PyTypeObject *route_type, *relay_type;
static Py_ssize_t route_off[R_N], relay_off[S_N];

static int find_slots(PyTypeObject *type, const char **names, int n, Py_ssize_t *out) {
    for (int i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, names[i]);
        if (d == NULL) return -1;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) out[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", type->tp_name, names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *mod_layout(PyObject *mod, PyObject *args) {
    PyTypeObject *rt, *st;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &rt, &PyType_Type, &st)) return NULL;
    if (find_slots(rt, route_slots, R_N, route_off) < 0) return NULL;
    if (find_slots(st, relay_slots, S_N, relay_off) < 0) return NULL;
    Py_INCREF(rt);
    Py_XSETREF(route_type, rt);
    Py_INCREF(st);
    Py_XSETREF(relay_type, st);
    Py_RETURN_NONE;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* obj.<slot at off> += n for an int slot (what ``+=`` on the attribute does). */
static int slot_add(PyObject *obj, Py_ssize_t off, long long n) {
    PyObject *old = SLOT(obj, off);
    if (old == NULL) {
        PyErr_SetString(PyExc_AttributeError, "counter slot not set");
        return -1;
    }
    PyObject *inc = PyLong_FromLongLong(n);
    if (inc == NULL) return -1;
    PyObject *sum = PyNumber_Add(old, inc);
    Py_DECREF(inc);
    if (sum == NULL) return -1;
    SLOT(obj, off) = sum;
    Py_DECREF(old);
    return 0;
}

/* --- helpers ---------------------------------------------------------------------------- */

static int add_to(PyObject *obj, PyObject *name, long long n) {
    PyObject *old = PyObject_GetAttr(obj, name);
    if (old == NULL) return -1;
    PyObject *inc = PyLong_FromLongLong(n);
    PyObject *sum = inc == NULL ? NULL : PyNumber_Add(old, inc);
    Py_DECREF(old);
    Py_XDECREF(inc);
    if (sum == NULL) return -1;
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

static double monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- the reader ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD int fd;
    int closed;
    PyObject *clients;  /* dict: sockaddr bytes -> the client's channels dict (int -> Route) */
    PyObject *fallback; /* callable(data: bytes, addr: tuple) */
    PyObject *stats;    /* ListenerStats */
    char *bufs;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage addrs[BATCH];
    int used; /* entries the last recvmmsg filled */
    unsigned long long wakeups, calls, datagrams, forwarded, handed, send_failed, dropped;
} Reader;

static int Reader_init(Reader *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"fd", "clients", "fallback", "stats", NULL};
    int fd;
    PyObject *clients, *fallback, *stats;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iO!OO", names, &fd, &PyDict_Type, &clients,
                                     &fallback, &stats))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    if (self->bufs == NULL) {
        self->bufs = PyMem_RawMalloc((size_t)BATCH * BUFSIZE);
        if (self->bufs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (int i = 0; i < BATCH; i++) {
        self->iov[i].iov_base = self->bufs + (size_t)i * BUFSIZE;
        self->iov[i].iov_len = BUFSIZE;
        memset(&self->msgs[i].msg_hdr, 0, sizeof(struct msghdr));
        self->msgs[i].msg_hdr.msg_name = &self->addrs[i];
        self->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        self->msgs[i].msg_hdr.msg_iov = &self->iov[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    self->used = 0;
    self->fd = fd;
    self->closed = 0;
    Py_INCREF(clients);
    Py_XSETREF(self->clients, clients);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_INCREF(stats);
    Py_XSETREF(self->stats, stats);
    return 0;
}

static int Reader_traverse(Reader *self, visitproc visit, void *arg) {
    Py_VISIT(self->clients);
    Py_VISIT(self->fallback);
    Py_VISIT(self->stats);
    return 0;
}

static int Reader_clear(Reader *self) {
    Py_CLEAR(self->clients);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->stats);
    return 0;
}

static void Reader_dealloc(Reader *self) {
    PyObject_GC_UnTrack(self);
    Reader_clear(self);
    PyMem_RawFree(self->bufs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* 1: forwarded or refused here; 0: the pure path's; -1: exception set. */
static int forward(Reader *self, const unsigned char *data, Py_ssize_t len,
                   const struct sockaddr_storage *ss, socklen_t salen) {
    if (len < 4 || data[0] < 0x40 || data[0] >= 0x80 || route_type == NULL) return 0;
    Py_ssize_t length = ((Py_ssize_t)data[2] << 8) | data[3];
    /* empty payloads too: the loops' sendto skips them (counted, not sent), as it stays */
    if (length > len - 4 || length == 0) return 0;
    PyObject *key = PyBytes_FromStringAndSize((const char *)ss, salen);
    if (key == NULL) return -1;
    PyObject *channels = PyDict_GetItemWithError(self->clients, key); /* borrowed */
    Py_DECREF(key);
    if (channels == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyDict_CheckExact(channels)) return 0;
    PyObject *number = PyLong_FromLong(((long)data[0] << 8) | data[1]);
    if (number == NULL) return -1;
    PyObject *route = PyDict_GetItemWithError(channels, number);
    Py_DECREF(number);
    if (route == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!Py_IS_TYPE(route, route_type)) return 0;
    PyObject *relay = SLOT(route, route_off[R_RELAY]);
    PyObject *host = SLOT(route, route_off[R_HOST]);
    PyObject *sa = SLOT(route, route_off[R_SA]);
    if (relay == NULL || host == NULL || sa == NULL || !PyBytes_CheckExact(sa) ||
        !Py_IS_TYPE(relay, relay_type))
        return 0;
    PyObject *permitted = SLOT(relay, relay_off[S_PERMITTED]);
    PyObject *transport = SLOT(relay, relay_off[S_TRANSPORT]);
    PyObject *queued = SLOT(relay, relay_off[S_QUEUED]);
    PyObject *bucket = SLOT(relay, relay_off[S_BUCKET_OUT]);
    PyObject *fdobj = SLOT(relay, relay_off[S_FD]);
    if (permitted == NULL || transport == NULL || queued == NULL || bucket == NULL ||
        fdobj == NULL || !PyDict_CheckExact(permitted) || !PyLong_CheckExact(fdobj) ||
        PyLong_AsLong(fdobj) < 0) /* -1: the socket is closed (its number may be reused) */
        return 0;
    int ok = PyDict_Contains(permitted, host);
    if (ok <= 0) return ok; /* 0: not permitted, the pure path counts it */
    /* the loop's endpoint does not exist yet: the pure path's early send */
    if (transport == Py_None) return 0;
    /* from here on Python code may run: hold what is used after it */
    int rc = -1;
    Py_INCREF(route);
    Py_INCREF(relay);
    Py_INCREF(transport);
    Py_INCREF(sa);
    if (queued != Py_False) {
        PyObject *size = PyObject_CallMethodNoArgs(transport, s_get_write_buffer_size);
        if (size == NULL) goto done;
        int empty = PyLong_Check(size) && PyLong_AsLong(size) == 0;
        Py_DECREF(size);
        if (!empty) {
            rc = 0; /* queued sends first: the pure path queues behind them */
            goto done;
        }
        if (PyObject_SetAttr(relay, s_queued, Py_False) < 0) goto done;
    }
    if (bucket != Py_None) {
        PyObject *n = PyLong_FromSsize_t(length);
        PyObject *now = n == NULL ? NULL : PyFloat_FromDouble(monotonic_now());
        Py_INCREF(bucket);
        PyObject *taken =
            now == NULL ? NULL : PyObject_CallMethodObjArgs(bucket, s_take, n, now, NULL);
        Py_DECREF(bucket);
        Py_XDECREF(n);
        Py_XDECREF(now);
        if (taken == NULL) goto done;
        int yes = PyObject_IsTrue(taken);
        Py_DECREF(taken);
        if (yes < 0) goto done;
        if (!yes) {
            if (add_to(relay, s_over_limit, 1) < 0 || add_to(self->stats, s_channel_refused, 1) < 0)
                goto done;
            rc = 1;
            goto done;
        }
    }
    fdobj = SLOT(relay, relay_off[S_FD]); /* again: Python code may have run */
    if (fdobj == NULL || !PyLong_CheckExact(fdobj)) {
        rc = 0;
        goto done;
    }
    long fd = PyLong_AsLong(fdobj);
    if (fd == -1 && PyErr_Occurred()) goto done;
    if (fd < 0) {
        rc = 0;
        goto done;
    }
    ssize_t sent = sendto((int)fd, data + 4, (size_t)length, 0,
                      (const struct sockaddr *)PyBytes_AS_STRING(sa), (socklen_t)PyBytes_GET_SIZE(sa));
    if (sent < 0) {
        /* as the pure path: the loop's transport sends, queues or reports the error */
        self->send_failed++;
        PyObject *peer = PyObject_GetAttr(route, s_peer);
        if (peer == NULL) goto done;
        PyObject *payload = PyBytes_FromStringAndSize((const char *)data + 4, length);
        PyObject *res = payload == NULL ? NULL
                                        : PyObject_CallMethodObjArgs(transport, s_sendto, payload, peer, NULL);
        Py_DECREF(peer);
        Py_XDECREF(payload);
        if (res == NULL) goto done;
        Py_DECREF(res);
        if (PyObject_SetAttr(relay, s_queued, Py_True) < 0) goto done;
    }
    if (slot_add(relay, relay_off[S_TO_PEER_PACKETS], 1) < 0 ||
        slot_add(relay, relay_off[S_TO_PEER_BYTES], length) < 0)
        goto done;
    self->forwarded++;
    rc = 1;
done:
    Py_DECREF(route);
    Py_DECREF(relay);
    Py_DECREF(transport);
    Py_DECREF(sa);
    return rc;
}

/* Hand one datagram to the pure path; -1 with an exception set. */
static int hand(Reader *self, const char *data, Py_ssize_t len, const struct sockaddr_storage *ss,
                socklen_t salen) {
    PyObject *addr = addr_tuple(ss, salen);
    if (addr == NULL) return -1;
    if (addr == Py_None) { /* not an IP source: nothing the listener could answer */
        Py_DECREF(addr);
        self->dropped++;
        return 0;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(data, len);
    if (bytes == NULL) {
        Py_DECREF(addr);
        return -1;
    }
    self->handed++;
    PyObject *res = PyObject_CallFunctionObjArgs(self->fallback, bytes, addr, NULL);
    Py_DECREF(bytes);
    Py_DECREF(addr);
    if (res == NULL) return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *Reader_read(Reader *self, PyObject *unused) {
    PyObject *etype = NULL, *evalue = NULL, *etb = NULL;
    if (self->closed || self->fd < 0) Py_RETURN_NONE;
    self->wakeups++;
    for (int round = 0; round < ROUNDS && !self->closed; round++) {
        /* the kernel rewrites only the name lengths and flags of the entries it filled */
        for (int i = 0; i < self->used; i++)
            self->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        int got = recvmmsg(self->fd, self->msgs, BATCH, MSG_DONTWAIT, NULL);
        self->used = got > 0 ? got : 0;
        self->calls++;
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            continue; /* a queued ICMP error is consumed by the failing call: read on */
        }
        for (int i = 0; i < got && !self->closed; i++) {
            const char *data = self->bufs + (size_t)i * BUFSIZE;
            Py_ssize_t len = (Py_ssize_t)self->msgs[i].msg_len;
            socklen_t salen = self->msgs[i].msg_hdr.msg_namelen;
            self->datagrams++;
            if (self->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) { /* cannot happen at 64 KiB */
                self->dropped++;
                continue;
            }
            int rc = forward(self, (const unsigned char *)data, len, &self->addrs[i], salen);
            if (rc == 0) rc = hand(self, data, len, &self->addrs[i], salen);
            if (rc < 0) { /* keep the first exception; the rest of the batch still runs */
                if (etype == NULL)
                    PyErr_Fetch(&etype, &evalue, &etb);
                else
                    PyErr_Clear();
            }
        }
        if (got < BATCH) break;
    }
    if (etype != NULL) {
        PyErr_Restore(etype, evalue, etb);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Reader_sendto(Reader *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sendto(data, addr)");
        return NULL;
    }
    Py_buffer view;
    struct sockaddr_storage ss;
    socklen_t len;
    if (self->closed) Py_RETURN_FALSE;
    if (parse_addr(args[1], &ss, &len) < 0) return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    ssize_t sent = sendto(self->fd, view.buf, (size_t)view.len, 0, (struct sockaddr *)&ss, len);
    PyBuffer_Release(&view);
    if (sent < 0) {
        self->send_failed++;
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyObject *Reader_close(Reader *self, PyObject *unused) {
    self->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *Reader_is_closing(Reader *self, PyObject *unused) {
    return PyBool_FromLong(self->closed);
}

static PyObject *Reader_counters(Reader *self, PyObject *unused) {
    return Py_BuildValue("{sKsKsKsKsKsKsK}", "wakeups", self->wakeups, "calls", self->calls,
                         "datagrams", self->datagrams, "forwarded", self->forwarded, "handed",
                         self->handed, "send_failed", self->send_failed, "dropped", self->dropped);
}

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)Reader_read, METH_NOARGS, "Read and forward what the socket queued."},
    {"sendto", (PyCFunction)(void (*)(void))Reader_sendto, METH_FASTCALL,
     "Send a datagram from the listener; False if the kernel refused it."},
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "Stop reading and sending."},
    {"is_closing", (PyCFunction)Reader_is_closing, METH_NOARGS, "Closed?"},
    {"counters", (PyCFunction)Reader_counters, METH_NOARGS, "The reader's own counters."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtc64.io._turn_native.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A TURN UDP listener's reader: ChannelData forwarded in C, the rest handed over.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_methods = Reader_methods,
};

static PyMethodDef module_methods[] = {
    {"sockaddr", (PyCFunction)mod_sockaddr, METH_O,
     "The struct sockaddr of a loop-style address tuple, as bytes (padding zeroed)."},
    {"layout", (PyCFunction)mod_layout, METH_VARARGS,
     "Record the __slots__ offsets of the Route and relay socket classes (once)."},
    {"address", (PyCFunction)mod_address, METH_O,
     "The loop-style address tuple of a struct sockaddr (None if not IP)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "rtc64.io._turn_native",
    "The TURN UDP listener's ChannelData forward in C (optional).", -1, module_methods,
};

#define INTERN(var, text)                                                                        \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;

PyMODINIT_FUNC PyInit__turn_native(void) {
    INTERN(s_peer, "peer");
    INTERN(s_queued, "queued");
    INTERN(s_over_limit, "over_limit");
    INTERN(s_channel_refused, "channel_refused");
    INTERN(s_take, "take");
    INTERN(s_sendto, "sendto");
    INTERN(s_get_write_buffer_size, "get_write_buffer_size");
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "BATCH", BATCH);
    return m;
}
