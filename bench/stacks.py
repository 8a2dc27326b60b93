#!/usr/bin/env python3
"""Summarizes `perf script` output (read from stdin) of the Moat server.

Prints where the CPU went: by crate of the sampled (leaf) function, the top functions by
self time, and the inclusive share of the stages of a protected, forwarded request. Writes
the stacks folded (`root;...;leaf count`), the input format of flamegraph.pl and inferno.

    perf script -i perf.data | python3 bench/stacks.py out.folded
"""
import collections
import re
import sys

# Stages of a request, matched against any frame of a stack (inclusive share).
STAGES = [
    ("whole policy check (protect::checked)", r"middleware::protect::checked"),
    ("  RFC 9421 signature (httpsig)", r"moat_core::httpsig"),
    ("  replay cache", r"replay::"),
    ("  access/integrity token checks", r"protect::verify_(user|integrity)|tokens::|attest::integrity"),
    ("  rate limit", r"ratelimit::"),
    ("forwarding (gateway::forward)", r"gateway::forward"),
    ("upstream client: pool and connection task (hyper-util)", r"hyper_util::client|hyper::client"),
    ("  header hygiene", r"gateway::headers"),
    ("server connection task: parse, route, check, forward, respond", r"hyper::server|serve::serve"),
    ("metrics", r"moat_observe::metrics|moat_server::metrics|prometheus_client"),
    ("allocator (mimalloc)", r"^_?mi_"),
    ("kernel", r"^(__x64_sys|do_syscall_64|entry_SYSCALL|asm_|irqentry|tcp_|ip_|__tcp|sock_)"),
]


def stacks(lines):
    """Yields each sample's frames, leaf first."""
    frames = None
    for line in lines:
        if not line.strip():
            if frames:
                yield frames
            frames = None
            continue
        if not line[0].isspace():
            frames = []
            continue
        if frames is None:
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        sym = re.sub(r"\+0x[0-9a-f]+ \(.*\)$", "", parts[1])
        sym = re.sub(r" \(.*\)$", "", sym)
        frames.append(sym)
    if frames:
        yield frames


def crate(frames):
    """The crate of the first frame that names one (kernel symbols are plain names)."""
    leaf = frames[0]
    if re.match(r"^_?mi_", leaf):
        return "mimalloc"
    if re.search(r"mem(cpy|move|set|cmp)|bcmp", leaf):
        return "libc mem*"
    if leaf.startswith("aws_lc"):
        return "aws-lc (crypto)"
    for f in frames[:6]:
        m = re.search(r"(?:^|[<\s(&])([a-z_][a-z0-9_]*)::", f)
        if m:
            return m.group(1)
    if re.match(r"^[a-z_0-9.]+$", leaf):
        return "kernel"
    return "other"


def main():
    samples = list(stacks(sys.stdin))
    n = len(samples)
    if n == 0:
        sys.exit("no samples")
    by_crate = collections.Counter(crate(s) for s in samples)
    by_leaf = collections.Counter(s[0] for s in samples)
    print(f"\n{n} samples of the server\n\nself time by crate:")
    for name, count in by_crate.most_common(20):
        print(f"  {100 * count / n:6.2f}%  {name}")
    print("\nself time by function:")
    for name, count in by_leaf.most_common(25):
        print(f"  {100 * count / n:6.2f}%  {name[:150]}")
    print("\nstages (share of samples with the stage anywhere on the stack; stacks deeper than")
    print("perf's copy are cut at the root, so these are lower bounds):")
    for label, pattern in STAGES:
        rx = re.compile(pattern)
        count = sum(1 for s in samples if any(rx.search(f) for f in s))
        print(f"  {100 * count / n:6.2f}%  {label}")
    if len(sys.argv) > 1:
        folded = collections.Counter(";".join(reversed(s)).replace(" ", "_") for s in samples)
        with open(sys.argv[1], "w") as out:
            for stack, count in folded.items():
                out.write(f"{stack} {count}\n")


if __name__ == "__main__":
    main()
