"""Latency of `cascadec lsp` from an edit to its diagnostics, measured by a real LSP client over stdio.

The client (pygls) starts `python -m cascadec.cli lsp`, opens the spec, then sends ``--edits`` full-text
changes, each altering one number (every other one also misspells a key, so half the edits produce a
CAS301 and half clear it); the latency of an edit is the wall time from sending `didChange` to receiving
the `publishDiagnostics` of that document version. Also reported: the CPU time of one in-process compile
of the same text (what the server spends per edit) and the machine's load average (other processes on a
shared machine inflate wall times).

    python bench/lsp_latency.py --spec specs/nemotron-cascade-2.cascade --edits 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time

from lsprotocol import types as t
from pygls.lsp.client import LanguageClient


def _edits(text: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        edited = text.replace("steps = 25", f"steps = {26 + i}", 1)
        out.append(edited.replace("kl = 0.03", "kll = 0.03", 1) if i % 2 == 0 else edited)
    return out


async def measure(spec: str, edits: int) -> tuple[list[float], list[int]]:
    client = LanguageClient("bench", "1")
    arrived: dict[int, float] = {}
    counts: dict[int, int] = {}
    got = asyncio.Event()

    @client.feature(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _diagnostics(params: t.PublishDiagnosticsParams) -> None:
        arrived[params.version or 0] = time.perf_counter()
        counts[params.version or 0] = len(params.diagnostics)
        got.set()

    await client.start_io(sys.executable, "-m", "cascadec.cli", "lsp")
    await client.initialize_async(t.InitializeParams(capabilities=t.ClientCapabilities()))
    client.initialized(t.InitializedParams())
    uri = "file://" + os.path.abspath(spec)
    text = open(spec, encoding="utf-8").read()
    client.text_document_did_open(t.DidOpenTextDocumentParams(t.TextDocumentItem(uri, "cascade", 1, text)))
    await asyncio.wait_for(got.wait(), 60)
    latencies, found = [], []
    for version, edited in enumerate(_edits(text, edits), start=2):
        got.clear()
        sent = time.perf_counter()
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            t.VersionedTextDocumentIdentifier(version=version, uri=uri), [t.TextDocumentContentChangeWholeDocument(edited)]))
        while version not in arrived:
            await asyncio.wait_for(got.wait(), 60)
            got.clear()
        latencies.append((arrived[version] - sent) * 1000)
        found.append(counts[version])
        await asyncio.sleep(0.05)  # a person types slower than this; do not queue edits behind each other
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return latencies, found


def compile_cpu_ms(spec: str, runs: int = 20) -> float:
    from cascadec.compiler import compile_source

    text = open(spec, encoding="utf-8").read()
    compile_source(text, spec)
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        compile_source(text, spec)
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default="specs/nemotron-cascade-2.cascade")
    ap.add_argument("--edits", type=int, default=60)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    latencies, found = asyncio.run(measure(args.spec, args.edits))
    load_after = os.getloadavg()[0]
    cpu = compile_cpu_ms(args.spec)
    q = statistics.quantiles(latencies, n=20)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"{platform.platform()}; Python {platform.python_version()}")
    print(f"1-minute load average: {load_before:.1f} before, {load_after:.1f} after")
    print(f"edits: {len(latencies)}; diagnostics per edit: {sorted(set(found))} (alternating)")
    print(f"edit -> diagnostics, ms: median {statistics.median(latencies):.1f}, p95 {q[18]:.1f}, "
          f"min {min(latencies):.1f}, max {max(latencies):.1f}")
    print(f"in-process compile of the spec, CPU ms (median of 20): {cpu:.1f}")


if __name__ == "__main__":
    main()
