#!/usr/bin/env python3
"""Sorts the samples of `perf script -F comm,ip,sym` (with call graphs) of one security server
into categories and prints a Markdown table: share of samples and, given the server's CPU per
exchange in milliseconds, microseconds per exchange. Used by scripts/profile-exchange.

Each sample goes to the first rule that matches, in this order: the message log's own threads
(journal writer; index thread and sled's I/O threads); kernel samples by what the kernel was
doing; ECDSA verification and signing anywhere on the stack; allocation and copying by the
sampled function; then by the innermost of our frames."""
import collections
import re
import sys

RULES_KERNEL = [
    (r"tcp_|sock_|sendmsg|recvmsg|recvfrom|writev|readv|ip_|net_rx|__napi|skb",
     "kernel: loopback TCP (send, receive)"),
    (r"futex|schedule|finish_task_switch|epoll|ep_poll|try_to_wake|wake_up|_raw_spin_unlock_irq",
     "kernel: wake-ups, switches, epoll"),
]
RULES_STACK = [
    (r"signature::verify|EcdsaVerificationAlgorithm", "ECDSA P-256 verify"),
    (r"Signer>::sign|EcdsaKeyPair::sign", "ECDSA P-256 sign"),
]
RULES_LEAF = [
    (r"^(mi_|_mi_|malloc|free|realloc|cfree|__libc_malloc)", "allocation (mimalloc)"),
    (r"memcpy|memmove|memset|memcmp|bcmp", "copying (memcpy, memmove, memset)"),
    (r"sha256_block|sha512_block|ring::digest", "hashing (SHA-256/512: digests, manifests)"),
]
RULES_OURS = [
    (r"aes_gcm|rustls|tokio_rustls|gcm_", "TLS (rustls, AES-GCM)"),
    (r"messagelog", "message log: building records, hand-off"),
    (r"trustbus_pki::cms|trustbus_pki::asic|der::|x509_cert|cms::|const_oid|der_util",
     "CMS, DER, manifest (build, parse)"),
    (r"hyper::|httparse|http::", "HTTP/1.1 (hyper)"),
    (r"transport::|multipart|trustbus_sdk::rest|header_part",
     "trustbus/1 transport, REST headers, multipart"),
    (r"tokio::runtime|mio::|tokio::sync|parking_lot|std::sync", "tokio runtime, channels, locks"),
]


def category(comm, frames):
    if comm.startswith("msglog-writer"):
        return "message log: journal writer thread (write, fdatasync, hash chain)"
    if comm.startswith(("msglog-indexer", "sled")):
        return "message log: index thread and sled I/O"
    if not frames:
        return "other security-server logic"
    kernel_leaf, leaf = frames[0]
    text = " ".join(f for _, f in frames)
    if kernel_leaf:
        for pat, name in RULES_KERNEL:
            if re.search(pat, text):
                return name
        return "kernel: other (syscall entry, timers, faults)"
    for pat, name in RULES_STACK:
        if re.search(pat, text):
            return name
    for pat, name in RULES_LEAF:
        if re.search(pat, leaf):
            return name
    for pat, name in RULES_OURS:
        if re.search(pat, text):
            return name
    return "other security-server logic"


def main():
    ms = float(sys.argv[1]) if len(sys.argv) > 1 else None
    counts = collections.Counter()
    comm, frames = None, []

    def flush():
        if comm is not None:
            counts[category(comm, frames)] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if comm is None:
            comm = line.split()[0]
            continue
        parts = line.split(None, 1)
        if len(parts) == 2:
            addr, sym = parts
            frames.append((addr.startswith("ffffffff"), re.sub(r"\+0x[0-9a-f]+ \(.*\)$", "", sym.strip())))
    flush()
    total = sum(counts.values())
    if total == 0:
        print("no samples")
        return
    print("| category | share of samples | µs per exchange |")
    print("|---|---:|---:|")
    for name, n in counts.most_common():
        us = f"{n / total * ms * 1000:.0f}" if ms else ""
        print(f"| {name} | {n * 100 / total:.1f} % | {us} |")
    print(f"| total ({total} samples) | 100 % | {ms * 1000:.0f} |" if ms else f"| total ({total} samples) | 100 % | |")


if __name__ == "__main__":
    main()
