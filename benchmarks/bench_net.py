"""Network benchmarks on loopback: gossip announce latency, memory per peer, blob throughput.

Announce latency (`net_announce_latency`): ten peers in two or three OS processes
(`benchmarks/_net_host.py`; 4+3+3 nodes by default: each node dials every earlier node
of its process, and every node of a later process also dials one node of the first
process, a different one per process, so announcements cross processes and hops).
Node 0 of the last process waits until all nine others ack a warm-up announcement
(the mesh reaches everyone), then publishes `--announcements` rounds every
`--interval` s; every receiver timestamps delivery with the wall clock (one machine,
one clock). Latency is publish call to delivery by our validator-checked subscription,
per (announcement, receiver); prints p50/p95/max and the loss. `--profile DIR` runs
cProfile in every host process during the measured part only and prints the top
functions of all processes together (share of profiled CPU, own and cumulative):
profiling slows the hosts, so its latencies are not comparable with plain runs.

Memory per peer and the 8 MiB blob transfer run in this process (trio). Prints JSON
lines; the whole run takes about a minute on the shared 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pstats
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

from net import MemoryBlobStore, Node, NodeConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "benchmarks._net_host"
SPLITS = {2: (5, 5), 3: (4, 3, 3)}  # ten peers over two or three processes
MEMORY_PEERS = 6
BLOB_BYTES = 8 * 1024 * 1024


class _Host:
    """One `benchmarks._net_host` process; its stdout JSON lines arrive on a queue."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        data_dir.mkdir(parents=True)
        self.log = data_dir / "stderr"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", HOST, "--data-dir", str(data_dir), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, event: str, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.events.empty()):
                tail = self.log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"no {event!r} from a host process; stderr:\n{tail}")
            try:
                got = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if got["event"] == event:
                return got

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stop(self) -> None:
        """Wait a little for a clean exit (stdin closed), then kill."""
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _default(key: str) -> Any:
    return next(f.default for f in dataclasses.fields(NodeConfig) if f.name == key)


def _dialled_links(split: tuple[int, ...]) -> int:
    """Connections the hosts open themselves (see `benchmarks/_net_host.py`)."""
    return sum(n * (n - 1) // 2 for n in split) + sum(split[1:])


def announce_latency(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Ten peers in `args.processes` processes; returns the JSON record."""
    split = tuple(int(n) for n in args.split.split(",")) if args.split else SPLITS[args.processes]
    tuning = [
        f"--{name}={value}"
        for name, value in (
            ("degree", args.degree),
            ("degree-low", args.degree_low),
            ("degree-high", args.degree_high),
        )
        if value is not None
    ]
    profiles = [args.profile / f"p{i}.prof" for i in range(len(split))] if args.profile else []

    def profiling(index: int) -> list[str]:
        return ["--profile", str(profiles[index])] if profiles else []

    deadline = time.monotonic() + 120
    hosts: list[_Host] = []
    try:
        first = _Host(root / "p0", "--nodes", str(split[0]), *tuning, *profiling(0))
        hosts.append(first)
        addrs = [first.wait_for("listening", deadline)["addrs"][0] for _ in range(split[0])]
        for index, count in enumerate(split[1:], start=1):
            # Each later process dials a different node of the first one.
            host = _Host(
                root / f"p{index}",
                "--nodes",
                str(count),
                "--connect",
                addrs[-index],
                *tuning,
                *profiling(index),
            )
            hosts.append(host)
            for _ in range(count):
                host.wait_for("listening", deadline)
        pids = [host.proc.pid for host in hosts]
        publisher = hosts[-1]  # its announcements cross processes before most peers see them
        assert publisher.proc.stdin is not None
        publisher.proc.stdin.write(
            f"publish {args.announcements} {args.interval} {sum(split) - 1}\n"
        )
        publisher.proc.stdin.flush()
        warm = publisher.wait_for("warm", deadline)
        if profiles:
            for host in hosts:
                assert host.proc.stdin is not None
                host.proc.stdin.write("profile\n")
                host.proc.stdin.flush()
        cpu_before = _cpu_seconds(pids)  # after the warm-up, which has its own settle time
        published = publisher.wait_for("sent", deadline)
        sent = {int(k): v for k, v in published["times"].items()}
        publish_ms = [(v - sent[int(k)]) * 1000 for k, v in published["returned"].items()]
        time.sleep(args.drain)  # let the last announcements arrive before collecting
        cpu = _cpu_seconds(pids) - cpu_before
        for host in hosts:
            host.close()
        nodes = [n for host in hosts for n in host.wait_for("arrivals", deadline)["nodes"]]
    finally:
        for host in hosts:
            host.stop()
    if args.logs is not None:
        (args.logs / "raw.json").write_text(json.dumps({"sent": sent, "nodes": nodes}))
    latencies: list[float] = []
    for node in nodes:
        times = {int(k): v for k, v in node["times"].items()}
        if node["peer_id"] == warm["publisher"]:
            continue
        latencies += [(times[r] - t) * 1000 for r, t in sent.items() if r in times]
    expected = len(sent) * (sum(split) - 1)
    # py-libp2p's warning when a peer GRAFTs inside our window after a PRUNE: the start
    # of the prune/graft cycles that cut hubs' subtrees off (docs/net-notes.md).
    floods = sum(h.log.read_text(errors="replace").count("GRAFT flood detected") for h in hosts)
    return {
        "bench": "net_announce_latency",
        "peers": sum(split),
        "processes": len(split),
        "announcements": len(sent),
        "interval_ms": args.interval * 1000,
        "delivered": len(latencies),
        "expected": expected,
        "warm_up_s": warm["seconds"],
        # Fewer than peers - 1 means the warm-up gave up (60 s) on a split mesh.
        "warm_up_ackers": warm["ackers"],
        "graft_flood_warnings": floods,
        # Refused by the receivers' validators, by reason, all nodes together (warm-up
        # and acks included): REPLAY counts late copies the replay window refused.
        "rejected": {
            reason: sum(n.get("rejected", {}).get(reason, 0) for n in nodes)
            for reason in sorted({r for n in nodes for r in n.get("rejected", {})})
        },
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(_quantile(latencies, 0.95), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "publish_call_p50_ms": round(statistics.median(publish_ms), 1),
        # All hosts' CPU while publishing, per announcement (idle ticking included).
        "cpu_ms_per_announcement": round(cpu * 1000 / max(1, len(sent)), 1),
        # The gossipsub degrees the nodes ran with (flags, else NodeConfig's defaults).
        "degree": args.degree or _default("gossip_degree"),
        "degree_high": args.degree_high or _default("gossip_degree_high"),
        # Connected peers per node at the end, next to what the hosts dialled (each
        # process a clique, every node of a later process also linked to the first
        # process); more would be connections nobody asked for.
        "peers_per_node_mean": round(statistics.mean(n["peers"] for n in nodes), 2),
        "dialled_peers_per_node_mean": round(2 * _dialled_links(split) / sum(split), 2),
        "peers_per_node_max": max(n["peers"] for n in nodes),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def profile_summary(paths: list[Path], top: int) -> dict[str, Any]:
    """The `top` functions by own time over all hosts' cProfile stats, as shares."""
    stats = pstats.Stats(*(str(p) for p in paths))
    entries = stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> (cc, nc, tt, ct, callers)
    total = sum(tt for _, _, tt, _, _ in entries.values())

    def row(key: tuple[str, int, str], value: tuple[Any, ...]) -> dict[str, Any]:
        filename, line, name = key
        where = filename.split("site-packages/")[-1].replace(str(REPO_ROOT) + "/", "")
        return {
            "function": f"{where}:{line}({name})",
            "calls": value[1],
            "own_pct": round(100 * value[2] / total, 1),
            "cum_pct": round(100 * value[3] / total, 1),
        }

    ordered = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)
    by_cum = sorted(entries.items(), key=lambda kv: kv[1][3], reverse=True)
    return {
        "bench": "net_announce_profile",
        "profiled_cpu_s": round(total, 2),
        "top_own": [row(k, v) for k, v in ordered[:top]],
        "top_cumulative": [row(k, v) for k, v in by_cum[:top]],
    }


def _rss_bytes() -> int:
    """Resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _memory_and_blob(root: Path) -> None:
    async with trio.open_nursery() as nursery:
        nodes = []
        rss: list[int] = []
        for i in range(MEMORY_PEERS):
            rss.append(_rss_bytes())
            node = Node(NodeConfig.load(data_dir=root / f"n{i}"), blob_store=MemoryBlobStore())
            await nursery.start(node.run)
            nodes.append(node)
        for i, node in enumerate(nodes[1:], start=1):
            await node.connect(nodes[0].listen_addrs[0])
            if i > 1:
                await node.connect(nodes[i - 1].listen_addrs[0])
        rss.append(_rss_bytes())
        # The first node pays for imports and shared state; later ones show the marginal cost.
        per_peer = (rss[-1] - rss[1]) / max(1, MEMORY_PEERS - 1)
        print(
            json.dumps(
                {
                    "bench": "net_memory_per_peer",
                    "peers": MEMORY_PEERS,
                    "first_node_mib": round((rss[1] - rss[0]) / 2**20, 1),
                    "per_additional_peer_mib": round(per_peer / 2**20, 2),
                    "process_rss_mib": round(rss[-1] / 2**20, 1),
                }
            ),
            flush=True,
        )
        a, b = nodes[0], nodes[1]
        digest = a.blob_store.put(os.urandom(BLOB_BYTES))
        start = trio.current_time()
        await b.fetch_blob(a.peer_id, digest)
        elapsed = trio.current_time() - start
        print(
            json.dumps(
                {
                    "bench": "net_blob_transfer",
                    "bytes": BLOB_BYTES,
                    "seconds": round(elapsed, 3),
                    "mb_per_s": round(BLOB_BYTES / elapsed / 1e6, 1),
                    "chunk_bytes": a.config.blob_chunk_size,
                }
            ),
            flush=True,
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, choices=sorted(SPLITS), default=3)
    p.add_argument("--split", help="nodes per process, e.g. 1,1 (overrides --processes)")
    p.add_argument("--announcements", type=int, default=40)
    p.add_argument("--interval", type=float, default=0.2, help="seconds between announcements")
    p.add_argument("--drain", type=float, default=2.0, help="seconds to wait for stragglers")
    p.add_argument("--degree", type=int, help="gossipsub D (default: NodeConfig's)")
    p.add_argument("--degree-low", type=int)
    p.add_argument("--degree-high", type=int)
    p.add_argument("--latency-only", action="store_true")
    p.add_argument("--logs", type=Path, help="keep the host processes' data and stderr here")
    p.add_argument("--profile", type=Path, help="cProfile the hosts; stats files go here")
    p.add_argument("--profile-top", type=int, default=30, help="functions to list")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as root:
        hosts = args.logs or Path(root) / "hosts"
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        print(json.dumps(announce_latency(args, hosts)), flush=True)
        if args.profile is not None:
            paths = sorted(args.profile.glob("p*.prof"))
            print(json.dumps(profile_summary(paths, args.profile_top)), flush=True)
        if not args.latency_only:
            trio.run(_memory_and_blob, Path(root) / "memory")


if __name__ == "__main__":
    main()
