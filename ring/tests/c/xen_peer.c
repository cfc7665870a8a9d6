/*
 * xen_peer: the other end of pvio-ring's Xen rings, written against Xen's own
 * public headers (io/ring.h, io/netif.h from libxen-dev) and driven only by
 * Xen's ring macros. Used by ring/tests/c_interop.rs.
 *
 *   xen_peer layout
 *       Print the C layout of the netif structures, the shared-ring header,
 *       the ring sizes and every netif flag/status/type constant as key=value
 *       lines.
 *
 *   xen_peer front|back MEMFD EVT_IN EVT_OUT N
 *       Run the transmit ring (bytes 0..4096 of MEMFD) and the receive ring
 *       (bytes 4096..8192) at the same time, N slots through each, as the
 *       front end (initializes both shared rings) or the back end. EVT_IN is
 *       the eventfd this process sleeps on, EVT_OUT the one it signals. Event
 *       suppression is on: a side sleeps only after RING_FINAL_CHECK_* found
 *       nothing, and signals only when RING_PUSH_*_AND_CHECK_NOTIFY says so.
 *       Every slot received is checked against the schedule below; any
 *       mismatch prints a diagnostic to stderr and exits with status 1.
 *       On success one line of statistics goes to stdout.
 *
 * The schedule (identical in c_interop.rs), for slot k of either ring:
 *   - k % 8 == 0: a packet followed by one GSO extra-info slot (k + 1);
 *   - k % 8 == 1: that extra-info slot;
 *   - otherwise a plain request/response.
 * Requests carry k in gref and k & 0xffff in id; responses are derived from k.
 * The front end always queues slots in pairs (k even, k + 1) and pushes whole
 * pairs, so an extra-info slot is always published with its packet.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * io/ring.h needs memory barriers from its includer. For interface versions
 * before 0x00030208 it maps xen_mb() and friends to mb()/rmb()/wmb(); later
 * ones expect xen_mb()/xen_rmb()/xen_wmb() directly. Provide both spellings.
 * As in libxenctrl on x86, rmb/wmb are compiler barriers (x86 does not reorder
 * loads with loads or stores with stores) and mb is a full fence (store-load
 * ordering, needed by the event-threshold protocol). Elsewhere, acquire and
 * release fences give the rmb/wmb orderings.
 */
#define peer_barrier() __asm__ __volatile__("" ::: "memory")
#define peer_mb() __sync_synchronize()
#if defined(__x86_64__) || defined(__i386__)
#define peer_rmb() peer_barrier()
#define peer_wmb() peer_barrier()
#else
#define peer_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define peer_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif
#define mb() peer_mb()
#define rmb() peer_rmb()
#define wmb() peer_wmb()

#include <xen/io/ring.h>
#include <xen/io/netif.h>

#ifndef xen_mb
#define xen_mb() peer_mb()
#endif
#ifndef xen_rmb
#define xen_rmb() peer_rmb()
#endif
#ifndef xen_wmb
#define xen_wmb() peer_wmb()
#endif

#define PAGE 4096u
#define WAIT_TIMEOUT_MS 20000

static const char *role = "?";

#define FAIL(...)                                                             \
    do {                                                                      \
        fprintf(stderr, "xen_peer %s: ", role);                               \
        fprintf(stderr, __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                  \
        exit(1);                                                              \
    } while (0)

/* ---------------------------------------------------------------- schedule */

static int has_extra(uint32_t k) { return k % 8 == 0; }
static int is_extra(uint32_t k) { return k % 8 == 1; }

static netif_tx_request_t tx_request(uint32_t k)
{
    netif_tx_request_t r;
    memset(&r, 0, sizeof(r));
    r.gref = k;
    r.offset = (uint16_t)((k * 7u) & 0xfffu);
    r.flags = (uint16_t)((has_extra(k) ? NETTXF_extra_info : 0) |
                         (k % 3 == 0 ? NETTXF_csum_blank : 0) |
                         (k % 5 == 0 ? NETTXF_data_validated : 0) |
                         (k % 4 == 2 ? NETTXF_more_data : 0));
    r.id = (uint16_t)k;
    r.size = (uint16_t)(60u + k % 1455u);
    return r;
}

/* The GSO extra-info segment carried in tx slot k (k % 8 == 1). */
static netif_extra_info_t tx_extra(uint32_t k)
{
    netif_extra_info_t e;
    memset(&e, 0, sizeof(e));
    e.type = XEN_NETIF_EXTRA_TYPE_GSO;
    e.flags = 0;
    e.u.gso.size = (uint16_t)(536u + (k / 8) % 1000u);
    e.u.gso.type = ((k / 8) & 1) ? XEN_NETIF_GSO_TYPE_TCPV6 : XEN_NETIF_GSO_TYPE_TCPV4;
    e.u.gso.pad = 0;
    e.u.gso.features = 0;
    return e;
}

static netif_tx_response_t tx_response(uint32_t k)
{
    netif_tx_response_t r;
    if (is_extra(k)) {
        r.id = (uint16_t)(k - 1);
        r.status = NETIF_RSP_NULL;
    } else {
        r.id = (uint16_t)k;
        r.status = k % 13 == 7 ? NETIF_RSP_ERROR : k % 13 == 11 ? NETIF_RSP_DROPPED : NETIF_RSP_OKAY;
    }
    return r;
}

static netif_rx_request_t rx_request(uint32_t k)
{
    netif_rx_request_t r;
    memset(&r, 0, sizeof(r));
    r.id = (uint16_t)k;
    r.pad = 0;
    r.gref = k + 0x40000000u;
    return r;
}

static netif_rx_response_t rx_response(uint32_t k)
{
    netif_rx_response_t r;
    r.id = (uint16_t)k;
    r.offset = (uint16_t)((k * 3u) & 0x7ffu);
    r.flags = (uint16_t)((has_extra(k) ? NETRXF_extra_info : 0) |
                         (k % 3 == 0 ? NETRXF_data_validated : 0) |
                         (k % 7 == 0 ? NETRXF_csum_blank : 0));
    r.status = (int16_t)(k % 13 == 7 ? NETIF_RSP_ERROR : (int)(1u + k % 1500u));
    return r;
}

/* The GSO extra-info segment carried in rx response slot k (k % 8 == 1). */
static netif_extra_info_t rx_extra(uint32_t k)
{
    netif_extra_info_t e;
    memset(&e, 0, sizeof(e));
    e.type = XEN_NETIF_EXTRA_TYPE_GSO;
    e.flags = 0;
    e.u.gso.size = (uint16_t)(1000u + (k / 8) % 400u);
    e.u.gso.type = ((k / 8) & 1) ? XEN_NETIF_GSO_TYPE_TCPV4 : XEN_NETIF_GSO_TYPE_TCPV6;
    return e;
}

/* Decodes and checks the GSO extra-info segment found in a slot. */
static void check_extra(const char *ring, uint32_t k, const void *slot, size_t slot_len,
                        netif_extra_info_t want)
{
    netif_extra_info_t got;
    const unsigned char *bytes = slot;
    size_t i;

    memcpy(&got, slot, sizeof(got));
    if (got.type != XEN_NETIF_EXTRA_TYPE_GSO || got.flags != 0 ||
        got.u.gso.size != want.u.gso.size || got.u.gso.type != want.u.gso.type ||
        got.u.gso.pad != 0 || got.u.gso.features != 0)
        FAIL("%s slot %u: bad GSO extra info: type %u flags %u size %u gso-type %u pad %u "
             "features %u (want size %u gso-type %u)",
             ring, k, got.type, got.flags, got.u.gso.size, got.u.gso.type, got.u.gso.pad,
             got.u.gso.features, want.u.gso.size, want.u.gso.type);
    for (i = sizeof(got); i < slot_len; i++)
        if (bytes[i] != 0)
            FAIL("%s slot %u: byte %zu after the extra info is %u, not 0", ring, k, i, bytes[i]);
}

/* ------------------------------------------------------------------ events */

struct events {
    int in, out;
    unsigned long sent, wakeups, arms;
};

static void notify(struct events *ev)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(ev->out, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(one) && !(n < 0 && errno == EAGAIN))
        FAIL("eventfd write: %s", strerror(errno));
    ev->sent++;
}

/* Sleeps until the peer signals; a silence of WAIT_TIMEOUT_MS is a failure
 * (a lost wake-up, or a dead peer). */
static void wait_event(struct events *ev, const char *state)
{
    for (;;) {
        struct pollfd p = {.fd = ev->in, .events = POLLIN};
        uint64_t v;
        int r = poll(&p, 1, WAIT_TIMEOUT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            FAIL("poll: %s", strerror(errno));
        if (r == 0)
            FAIL("no event for %d ms while asleep (lost wake-up or dead peer): %s",
                 WAIT_TIMEOUT_MS, state);
        if (read(ev->in, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
            ev->wakeups++;
            return;
        }
        if (errno != EAGAIN && errno != EINTR)
            FAIL("eventfd read: %s", strerror(errno));
    }
}

/* --------------------------------------------------------------- front end */

static void run_front(void *mem, struct events *ev, uint32_t n)
{
    netif_tx_sring_t *txs = mem;
    netif_rx_sring_t *rxs = (void *)((char *)mem + PAGE);
    netif_tx_front_ring_t tx;
    netif_rx_front_ring_t rx;
    uint32_t tx_sent = 0, tx_done = 0, rx_sent = 0, rx_done = 0;
    int tx_extra_next = 0, rx_extra_next = 0;

    SHARED_RING_INIT(txs);
    FRONT_RING_INIT(&tx, txs, PAGE);
    SHARED_RING_INIT(rxs);
    FRONT_RING_INIT(&rx, rxs, PAGE);
    if (RING_SIZE(&tx) != 256 || RING_SIZE(&rx) != 256)
        FAIL("unexpected ring sizes %u/%u", RING_SIZE(&tx), RING_SIZE(&rx));
    /* Tell the back end that the rings are initialized (the xenstore step). */
    notify(ev);
    ev->sent = 0;

    while (tx_done < n || rx_done < n) {
        int progress = 0, notify_tx = 0, notify_rx = 0;

        /* Produce in pairs so that an extra-info slot is pushed with its packet. */
        while (tx_sent < n && RING_FREE_REQUESTS(&tx) >= 2) {
            uint32_t k;
            for (k = tx_sent; k < tx_sent + 2; k++) {
                netif_tx_request_t slot;
                if (is_extra(k)) {
                    netif_extra_info_t e = tx_extra(k);
                    memset(&slot, 0, sizeof(slot));
                    memcpy(&slot, &e, sizeof(e));
                } else {
                    slot = tx_request(k);
                }
                *RING_GET_REQUEST(&tx, tx.req_prod_pvt) = slot;
                tx.req_prod_pvt++;
            }
            tx_sent += 2;
            progress = 1;
        }
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&tx, notify_tx);

        while (rx_sent < n && RING_FREE_REQUESTS(&rx) >= 2) {
            *RING_GET_REQUEST(&rx, rx.req_prod_pvt) = rx_request(rx_sent);
            rx.req_prod_pvt++;
            *RING_GET_REQUEST(&rx, rx.req_prod_pvt) = rx_request(rx_sent + 1);
            rx.req_prod_pvt++;
            rx_sent += 2;
            progress = 1;
        }
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&rx, notify_rx);

        if (notify_tx || notify_rx)
            notify(ev);

        /* Transmit responses. */
        while (RING_HAS_UNCONSUMED_RESPONSES(&tx)) {
            RING_IDX prod = tx.sring->rsp_prod;
            if (RING_RESPONSE_PROD_OVERFLOW(&tx, prod))
                FAIL("tx: RING_RESPONSE_PROD_OVERFLOW: rsp_prod %u rsp_cons %u", prod, tx.rsp_cons);
            xen_rmb(); /* responses are read only after rsp_prod */
            for (; tx.rsp_cons != prod; tx.rsp_cons++, tx_done++) {
                netif_tx_response_t got, want = tx_response(tx_done);
                RING_COPY_RESPONSE(&tx, tx.rsp_cons, &got);
                if (tx_done >= tx_sent)
                    FAIL("tx: response %u to a request never sent", tx_done);
                if (got.id != want.id || got.status != want.status)
                    FAIL("tx response %u: id %u status %d, want id %u status %d", tx_done, got.id,
                         got.status, want.id, want.status);
                if (is_extra(tx_done) != tx_extra_next)
                    FAIL("tx response %u: extra-info slot out of place", tx_done);
                tx_extra_next = has_extra(tx_done);
            }
            progress = 1;
        }

        /* Receive responses: packets, and GSO extra info in the slot after a
         * response flagged NETRXF_extra_info. */
        while (RING_HAS_UNCONSUMED_RESPONSES(&rx)) {
            RING_IDX prod = rx.sring->rsp_prod;
            if (RING_RESPONSE_PROD_OVERFLOW(&rx, prod))
                FAIL("rx: RING_RESPONSE_PROD_OVERFLOW: rsp_prod %u rsp_cons %u", prod, rx.rsp_cons);
            xen_rmb();
            for (; rx.rsp_cons != prod; rx.rsp_cons++, rx_done++) {
                netif_rx_response_t got;
                RING_COPY_RESPONSE(&rx, rx.rsp_cons, &got);
                if (rx_done >= rx_sent)
                    FAIL("rx: response %u to a request never sent", rx_done);
                if (rx_extra_next) {
                    if (!is_extra(rx_done))
                        FAIL("rx slot %u: extra info where the schedule has none", rx_done);
                    check_extra("rx", rx_done, &got, sizeof(got), rx_extra(rx_done));
                    rx_extra_next = 0;
                } else {
                    netif_rx_response_t want = rx_response(rx_done);
                    if (got.id != want.id || got.offset != want.offset ||
                        got.flags != want.flags || got.status != want.status)
                        FAIL("rx response %u: id %u offset %u flags %#x status %d, want id %u "
                             "offset %u flags %#x status %d",
                             rx_done, got.id, got.offset, got.flags, got.status, want.id,
                             want.offset, want.flags, want.status);
                    rx_extra_next = (got.flags & NETRXF_extra_info) != 0;
                }
            }
            progress = 1;
        }

        if (progress || (tx_done == n && rx_done == n))
            continue;

        /* Nothing to do: arm rsp_event on both rings, re-check, and sleep. */
        {
            int work_tx, work_rx;
            char state[160];
            ev->arms += !RING_HAS_UNCONSUMED_RESPONSES(&tx);
            RING_FINAL_CHECK_FOR_RESPONSES(&tx, work_tx);
            ev->arms += !RING_HAS_UNCONSUMED_RESPONSES(&rx);
            RING_FINAL_CHECK_FOR_RESPONSES(&rx, work_rx);
            if (work_tx || work_rx)
                continue;
            snprintf(state, sizeof(state),
                     "tx sent %u done %u rsp_prod %u; rx sent %u done %u rsp_prod %u", tx_sent,
                     tx_done, tx.sring->rsp_prod, rx_sent, rx_done, rx.sring->rsp_prod);
            wait_event(ev, state);
        }
    }
}

/* ---------------------------------------------------------------- back end */

static void run_back(void *mem, struct events *ev, uint32_t n)
{
    netif_tx_sring_t *txs = mem;
    netif_rx_sring_t *rxs = (void *)((char *)mem + PAGE);
    netif_tx_back_ring_t tx;
    netif_rx_back_ring_t rx;
    uint32_t tx_done = 0, rx_done = 0;
    int tx_extra_next = 0;

    BACK_RING_INIT(&tx, txs, PAGE);
    BACK_RING_INIT(&rx, rxs, PAGE);

    while (tx_done < n || rx_done < n) {
        int progress = 0, notify_tx = 0, notify_rx = 0;
        RING_IDX avail;

        /* Transmit requests: each slot is answered in order; an extra-info slot
         * follows a request flagged NETTXF_extra_info and gets NETIF_RSP_NULL. */
        while ((avail = RING_HAS_UNCONSUMED_REQUESTS(&tx)) != 0) {
            if (RING_REQUEST_PROD_OVERFLOW(&tx, tx.sring->req_prod))
                FAIL("tx: RING_REQUEST_PROD_OVERFLOW: req_prod %u rsp_prod_pvt %u",
                     tx.sring->req_prod, tx.rsp_prod_pvt);
            xen_rmb(); /* requests are read only after req_prod */
            for (; avail != 0; avail--, tx_done++) {
                netif_tx_request_t got;
                netif_tx_response_t *rsp;
                RING_COPY_REQUEST(&tx, tx.req_cons, &got);
                tx.req_cons++;
                if (tx_done >= n)
                    FAIL("tx: more than %u requests", n);
                if (tx_extra_next) {
                    if (!is_extra(tx_done))
                        FAIL("tx slot %u: extra info where the schedule has none", tx_done);
                    check_extra("tx", tx_done, &got, sizeof(got), tx_extra(tx_done));
                    tx_extra_next = 0;
                } else {
                    netif_tx_request_t want = tx_request(tx_done);
                    if (got.gref != want.gref || got.offset != want.offset ||
                        got.flags != want.flags || got.id != want.id || got.size != want.size)
                        FAIL("tx request %u: gref %u offset %u flags %#x id %u size %u, want "
                             "gref %u offset %u flags %#x id %u size %u",
                             tx_done, got.gref, got.offset, got.flags, got.id, got.size,
                             want.gref, want.offset, want.flags, want.id, want.size);
                    tx_extra_next = (got.flags & NETTXF_extra_info) != 0;
                }
                rsp = RING_GET_RESPONSE(&tx, tx.rsp_prod_pvt);
                *rsp = tx_response(tx_done);
                tx.rsp_prod_pvt++;
            }
            progress = 1;
        }
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&tx, notify_tx);

        /* Receive requests: fill buffer k; a packet with GSO also consumes
         * buffer k + 1 for its extra-info response slot. */
        while ((avail = RING_HAS_UNCONSUMED_REQUESTS(&rx)) != 0) {
            if (RING_REQUEST_PROD_OVERFLOW(&rx, rx.sring->req_prod))
                FAIL("rx: RING_REQUEST_PROD_OVERFLOW: req_prod %u rsp_prod_pvt %u",
                     rx.sring->req_prod, rx.rsp_prod_pvt);
            xen_rmb();
            while (avail != 0) {
                uint32_t k = rx_done, slots = has_extra(k) ? 2 : 1, j;
                if (slots > avail)
                    FAIL("rx request %u needs an extra-info slot but only %u requests are published",
                         k, avail);
                for (j = 0; j < slots; j++) {
                    netif_rx_request_t got, want = rx_request(k + j);
                    if (RING_REQUEST_CONS_OVERFLOW(&rx, rx.req_cons))
                        FAIL("rx: RING_REQUEST_CONS_OVERFLOW at %u", rx.req_cons);
                    RING_COPY_REQUEST(&rx, rx.req_cons, &got);
                    rx.req_cons++;
                    if (k + j >= n)
                        FAIL("rx: more than %u requests", n);
                    if (got.id != want.id || got.pad != 0 || got.gref != want.gref)
                        FAIL("rx request %u: id %u pad %u gref %#x, want id %u gref %#x", k + j,
                             got.id, got.pad, got.gref, want.id, want.gref);
                }
                *RING_GET_RESPONSE(&rx, rx.rsp_prod_pvt) = rx_response(k);
                rx.rsp_prod_pvt++;
                if (slots == 2) {
                    netif_rx_response_t slot;
                    netif_extra_info_t e = rx_extra(k + 1);
                    memcpy(&slot, &e, sizeof(slot));
                    *RING_GET_RESPONSE(&rx, rx.rsp_prod_pvt) = slot;
                    rx.rsp_prod_pvt++;
                }
                rx_done += slots;
                avail -= slots;
            }
            progress = 1;
        }
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&rx, notify_rx);

        if (notify_tx || notify_rx)
            notify(ev);

        if (progress || (tx_done == n && rx_done == n))
            continue;

        {
            int work_tx, work_rx;
            char state[160];
            ev->arms += !RING_HAS_UNCONSUMED_REQUESTS(&tx);
            RING_FINAL_CHECK_FOR_REQUESTS(&tx, work_tx);
            ev->arms += !RING_HAS_UNCONSUMED_REQUESTS(&rx);
            RING_FINAL_CHECK_FOR_REQUESTS(&rx, work_rx);
            if (work_tx || work_rx)
                continue;
            snprintf(state, sizeof(state), "tx done %u req_prod %u; rx done %u req_prod %u",
                     tx_done, tx.sring->req_prod, rx_done, rx.sring->req_prod);
            wait_event(ev, state);
        }
    }
}

/* ------------------------------------------------------------------ layout */

#define KV(key, value) printf("%s=%lld\n", key, (long long)(value))
#define SIZE(t) KV("size." #t, sizeof(struct t))
#define ALIGN(t) KV("align." #t, _Alignof(struct t))
#define OFF(t, f) KV("offset." #t "." #f, offsetof(struct t, f))
/* An integer field: offset, width and signedness. */
#define FIELD(t, f)                                                                \
    do {                                                                           \
        OFF(t, f);                                                                 \
        KV("size." #t "." #f, sizeof(((struct t *)0)->f));                         \
        KV("signed." #t "." #f, (long long)(__typeof__(((struct t *)0)->f))-1 < 0); \
    } while (0)
/* A field of the gso member, relative to the union u. */
#define GSO_FIELD(f)                                                               \
    do {                                                                           \
        KV("offset.netif_extra_info.u.gso." #f,                                    \
           offsetof(struct netif_extra_info, u.gso.f) -                            \
               offsetof(struct netif_extra_info, u));                              \
        KV("size.netif_extra_info.u.gso." #f,                                      \
           sizeof(((struct netif_extra_info *)0)->u.gso.f));                       \
        KV("signed.netif_extra_info.u.gso." #f,                                    \
           (long long)(__typeof__(((struct netif_extra_info *)0)->u.gso.f))-1 < 0); \
    } while (0)
#define CONST(c) KV(#c, c)

static void layout(void)
{
    SIZE(netif_tx_request);
    ALIGN(netif_tx_request);
    FIELD(netif_tx_request, gref);
    FIELD(netif_tx_request, offset);
    FIELD(netif_tx_request, flags);
    FIELD(netif_tx_request, id);
    FIELD(netif_tx_request, size);

    SIZE(netif_tx_response);
    ALIGN(netif_tx_response);
    FIELD(netif_tx_response, id);
    FIELD(netif_tx_response, status);

    SIZE(netif_rx_request);
    ALIGN(netif_rx_request);
    FIELD(netif_rx_request, id);
    FIELD(netif_rx_request, pad);
    FIELD(netif_rx_request, gref);

    SIZE(netif_rx_response);
    ALIGN(netif_rx_response);
    FIELD(netif_rx_response, id);
    FIELD(netif_rx_response, offset);
    FIELD(netif_rx_response, flags);
    FIELD(netif_rx_response, status);

    SIZE(netif_extra_info);
    ALIGN(netif_extra_info);
    FIELD(netif_extra_info, type);
    FIELD(netif_extra_info, flags);
    OFF(netif_extra_info, u);
    KV("size.netif_extra_info.u", sizeof(((struct netif_extra_info *)0)->u));
    KV("size.netif_extra_info.u.gso", sizeof(((struct netif_extra_info *)0)->u.gso));
    KV("align.netif_extra_info.u.gso", _Alignof(__typeof__(((struct netif_extra_info *)0)->u.gso)));
    GSO_FIELD(size);
    GSO_FIELD(type);
    GSO_FIELD(pad);
    GSO_FIELD(features);
    KV("size.netif_extra_info.u.mcast.addr", sizeof(((struct netif_extra_info *)0)->u.mcast.addr));
    KV("fits.netif_extra_info.in.netif_tx_request",
       sizeof(struct netif_extra_info) <= sizeof(struct netif_tx_request));
    KV("fits.netif_extra_info.in.netif_rx_response",
       sizeof(struct netif_extra_info) <= sizeof(struct netif_rx_response));

    FIELD(netif_tx_sring, req_prod);
    FIELD(netif_tx_sring, req_event);
    FIELD(netif_tx_sring, rsp_prod);
    FIELD(netif_tx_sring, rsp_event);
    OFF(netif_tx_sring, pvt);
    KV("size.netif_tx_sring.pvt", sizeof(((struct netif_tx_sring *)0)->pvt));
    OFF(netif_tx_sring, ring);
    OFF(netif_rx_sring, ring);
    KV("size.netif_tx_sring_entry", sizeof(union netif_tx_sring_entry));
    KV("size.netif_rx_sring_entry", sizeof(union netif_rx_sring_entry));
    KV("NET_TX_RING_SIZE.4096", __CONST_RING_SIZE(netif_tx, 4096));
    KV("NET_RX_RING_SIZE.4096", __CONST_RING_SIZE(netif_rx, 4096));
    KV("NET_TX_RING_SIZE.8192", __CONST_RING_SIZE(netif_tx, 8192));
    KV("NET_RX_RING_SIZE.8192", __CONST_RING_SIZE(netif_rx, 8192));
    KV("NET_TX_RING_SIZE.65536", __CONST_RING_SIZE(netif_tx, 65536));
    KV("NET_RX_RING_SIZE.65536", __CONST_RING_SIZE(netif_rx, 65536));

    CONST(NETTXF_csum_blank);
    CONST(NETTXF_data_validated);
    CONST(NETTXF_more_data);
    CONST(NETTXF_extra_info);
    CONST(NETRXF_data_validated);
    CONST(NETRXF_csum_blank);
    CONST(NETRXF_more_data);
    CONST(NETRXF_extra_info);
    CONST(NETRXF_gso_prefix);
    CONST(NETIF_RSP_DROPPED);
    CONST(NETIF_RSP_ERROR);
    CONST(NETIF_RSP_OKAY);
    CONST(NETIF_RSP_NULL);
    CONST(XEN_NETIF_EXTRA_TYPE_NONE);
    CONST(XEN_NETIF_EXTRA_TYPE_GSO);
    CONST(XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
    CONST(XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
    CONST(XEN_NETIF_EXTRA_TYPE_HASH);
    CONST(XEN_NETIF_EXTRA_TYPE_MAX);
    CONST(XEN_NETIF_EXTRA_FLAG_MORE);
    CONST(XEN_NETIF_GSO_TYPE_NONE);
    CONST(XEN_NETIF_GSO_TYPE_TCPV4);
    CONST(XEN_NETIF_GSO_TYPE_TCPV6);
}

/* -------------------------------------------------------------------- main */

static long parse(const char *s, const char *what)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0)
        FAIL("bad %s: %s", what, s);
    return v;
}

int main(int argc, char **argv)
{
    struct events ev = {0};
    void *mem;
    long n;

    if (argc == 2 && strcmp(argv[1], "layout") == 0) {
        role = "layout";
        layout();
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (argc != 6 || (strcmp(argv[1], "front") != 0 && strcmp(argv[1], "back") != 0)) {
        fprintf(stderr, "usage: %s layout | %s front|back MEMFD EVT_IN EVT_OUT N\n", argv[0],
                argv[0]);
        return 2;
    }
    role = argv[1];
    ev.in = (int)parse(argv[3], "EVT_IN");
    ev.out = (int)parse(argv[4], "EVT_OUT");
    n = parse(argv[5], "N");
    if (n % 2 != 0 || n > 0x3fffffffL)
        FAIL("N must be even and below 2^30");

    mem = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)parse(argv[2], "MEMFD"), 0);
    if (mem == MAP_FAILED)
        FAIL("mmap: %s", strerror(errno));

    if (strcmp(role, "front") == 0)
        run_front(mem, &ev, (uint32_t)n);
    else
        run_back(mem, &ev, (uint32_t)n);

    printf("stats role=%s tx_slots=%ld rx_slots=%ld notifications_sent=%lu wakeups=%lu arms=%lu\n",
           role, n, n, ev.sent, ev.wakeups, ev.arms);
    return fflush(stdout) == 0 ? 0 : 1;
}
