"""Helpers for network tests: run trio code under a deadline, start nodes on loopback."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from net import MemoryBlobStore, Node, NodeConfig


def run_trio(fn: Callable[[], Awaitable[None]], *, timeout: float = 30.0) -> None:
    """Run an async test body in trio, failing it after `timeout` seconds."""

    async def bounded() -> None:
        with trio.fail_after(timeout):
            await fn()

    trio.run(bounded)


@asynccontextmanager
async def running_nodes(tmp_path: Path, count: int, **config: Any) -> AsyncIterator[list[Node]]:
    """`count` nodes listening on loopback, each with its own data dir and memory store."""
    async with trio.open_nursery() as nursery:
        nodes = []
        for i in range(count):
            cfg = NodeConfig.load(data_dir=tmp_path / f"node{i}", **config)
            node = Node(cfg, blob_store=MemoryBlobStore())
            await nursery.start(node.run)
            nodes.append(node)
        yield nodes
        nursery.cancel_scope.cancel()


async def connect_chain(nodes: list[Node]) -> None:
    """Connect each node to the one before it (a line: the sparsest connected mesh)."""
    for before, after in itertools.pairwise(nodes):
        await after.connect(before.listen_addrs[0])
