/*
 * DPDK's rte_gso_segment on the gso bench's TCP/IPv4 super-frame, driven by benches/gso.rs.
 *
 *   dpdk_gso FRAME_FILE L2_LEN L3_LEN L4_LEN MSS
 *
 * Initializes EAL in memory only (--no-huge --no-pci --no-shconf, one lcore; --in-memory
 * is refused together with --no-huge), copies the
 * frame from FRAME_FILE into one mbuf with RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4 |
 * RTE_MBUF_F_TX_IP_CKSUM and the header lengths set, and checks one segmentation (segment
 * count, lengths, each segment's payload bytes and sequence number). Then prints "ready
 * SEGMENTS OUT_BYTES" and serves the bench: for each line "N" on stdin it segments the
 * frame N times and prints "SEG_NS TOTAL_NS": nanoseconds spent inside rte_gso_segment,
 * and for the whole loop including rte_pktmbuf_free_bulk of the segments (which returns
 * the header mbufs and detaches the indirect ones from the input). EOF ends it.
 *
 * rte_gso_segment neither checks nor fills checksums (the NIC is expected to), so the
 * comparable pvio row is ChecksumMode::Partial.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_byteorder.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_gso.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_tcp.h>

#define MAX_SEGS 256

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "dpdk_gso: %s (rte_errno %d: %s)\n", what, rte_errno, rte_strerror(rte_errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s FRAME_FILE L2_LEN L3_LEN L4_LEN MSS\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	uint16_t l2 = (uint16_t)atoi(argv[2]), l3 = (uint16_t)atoi(argv[3]), l4 = (uint16_t)atoi(argv[4]);
	uint16_t mss = (uint16_t)atoi(argv[5]);
	uint16_t hdr = (uint16_t)(l2 + l3 + l4);

	static uint8_t frame[65536];
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	size_t len = fread(frame, 1, sizeof(frame), f);
	fclose(f);
	if (len <= hdr) {
		fprintf(stderr, "dpdk_gso: frame of %zu bytes is not longer than its %u header bytes\n", len, hdr);
		return 1;
	}

	char *eal_args[] = {
		argv[0], "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256", "-l", "0",
		"--log-level", "lib.*:error", NULL,
	};
	int eal_argc = (int)(sizeof(eal_args) / sizeof(eal_args[0])) - 1;
	if (rte_eal_init(eal_argc, eal_args) < 0)
		die("rte_eal_init failed");

	/* Header mbufs (direct) and payload references (indirect, no data room). */
	struct rte_mempool *direct =
		rte_pktmbuf_pool_create("gso_direct", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
	struct rte_mempool *indirect = rte_pktmbuf_pool_create("gso_indirect", 1023, 0, 0, 0, SOCKET_ID_ANY);
	/* One mbuf big enough for the whole super-frame after the headroom. */
	struct rte_mempool *big = rte_pktmbuf_pool_create("gso_input", 3, 0, 0, UINT16_MAX, SOCKET_ID_ANY);
	if (!direct || !indirect || !big)
		die("rte_pktmbuf_pool_create failed");

	struct rte_mbuf *pkt = rte_pktmbuf_alloc(big);
	if (!pkt)
		die("rte_pktmbuf_alloc failed");
	char *data = rte_pktmbuf_append(pkt, (uint16_t)len);
	if (!data) {
		fprintf(stderr, "dpdk_gso: %zu bytes do not fit one mbuf (tailroom %u)\n", len,
			rte_pktmbuf_tailroom(pkt));
		return 1;
	}
	memcpy(data, frame, len);
	pkt->l2_len = l2;
	pkt->l3_len = l3;
	pkt->l4_len = l4;
	const uint64_t flags = RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;

	struct rte_gso_ctx ctx = {
		.direct_pool = direct,
		.indirect_pool = indirect,
		.flag = 0, /* incrementing IP IDs, as Linux and pvio do */
		.gso_types = RTE_ETH_TX_OFFLOAD_TCP_TSO,
		.gso_size = (uint16_t)(hdr + mss),
	};
	struct rte_mbuf *out[MAX_SEGS];

	/* One checked segmentation. */
	pkt->ol_flags = flags;
	int n = rte_gso_segment(pkt, &ctx, out, MAX_SEGS);
	size_t payload = len - hdr;
	int want = (int)((payload + mss - 1) / mss);
	if (n != want) {
		fprintf(stderr, "dpdk_gso: rte_gso_segment returned %d, expected %d segments\n", n, want);
		return 1;
	}
	uint32_t seq0 = rte_be_to_cpu_32(((const struct rte_tcp_hdr *)(frame + l2 + l3))->sent_seq);
	size_t out_bytes = 0;
	for (int i = 0; i < n; i++) {
		size_t plen = payload - (size_t)i * mss < mss ? payload - (size_t)i * mss : mss;
		uint8_t seg[2048];
		if (out[i]->pkt_len != hdr + plen || out[i]->pkt_len > sizeof(seg)) {
			fprintf(stderr, "dpdk_gso: segment %d is %u bytes, expected %zu\n", i, out[i]->pkt_len,
				hdr + plen);
			return 1;
		}
		const uint8_t *s = rte_pktmbuf_read(out[i], 0, out[i]->pkt_len, seg);
		const struct rte_tcp_hdr *th = (const struct rte_tcp_hdr *)(s + l2 + l3);
		if (memcmp(s + hdr, frame + hdr + (size_t)i * mss, plen) != 0 ||
		    rte_be_to_cpu_32(th->sent_seq) != seq0 + (uint32_t)(i * mss)) {
			fprintf(stderr, "dpdk_gso: segment %d has the wrong payload or sequence number\n", i);
			return 1;
		}
		out_bytes += out[i]->pkt_len;
	}
	rte_pktmbuf_free_bulk(out, (unsigned)n);
	if (rte_mbuf_refcnt_read(pkt) != 1) {
		fprintf(stderr, "dpdk_gso: input refcount %u after freeing the segments\n", rte_mbuf_refcnt_read(pkt));
		return 1;
	}
	printf("ready %d %zu\n", n, out_bytes);
	fflush(stdout);

	char line[64];
	while (fgets(line, sizeof(line), stdin)) {
		long iters = strtol(line, NULL, 10);
		uint64_t seg_ns = 0, sink = 0;
		uint64_t t0 = now_ns();
		for (long k = 0; k < iters; k++) {
			pkt->ol_flags = flags; /* rte_gso_segment clears TCP_SEG on success */
			uint64_t a = now_ns();
			int m = rte_gso_segment(pkt, &ctx, out, MAX_SEGS);
			seg_ns += now_ns() - a;
			if (m != n) {
				fprintf(stderr, "dpdk_gso: rte_gso_segment returned %d in the loop\n", m);
				return 1;
			}
			sink += out[m - 1]->pkt_len;
			rte_pktmbuf_free_bulk(out, (unsigned)m);
		}
		uint64_t total = now_ns() - t0;
		printf("%llu %llu %llu\n", (unsigned long long)seg_ns, (unsigned long long)total,
		       (unsigned long long)sink);
		fflush(stdout);
	}
	rte_pktmbuf_free(pkt);
	rte_eal_cleanup();
	return 0;
}
