#!/usr/bin/env python3
"""Soak test of `invar serve` (scripts/soak runs it in the server tests' venv).

Starts the server, drives mixed traffic for a set time (completions and chat, streamed and
not, greedy and seeded, n > 1, clients that leave mid-stream or give up waiting, a few bad
requests), then checks:
  - every greedy and seeded repeat of the probe requests is bitwise equal to its first answer
    (text, token logprobs, top logprobs: JSON floats round-trip exactly);
  - no KV block is held once the traffic stops (/metrics), nothing runs or waits;
  - the server's RSS after warm-up stays within 10% (median of the last samples against the
    median of the first samples after warm-up). The KV cache's pages are committed as they are
    first written, and the prefix cache keeps freed blocks, so RSS rises until every block has
    held data: the server gets a pool of --kv-blocks (256: 4096 tokens, one full context of
    SmolLM2, the least the engine allows) and warm-up lasts
    until the pool has been full (used + cached = total) and at least --warmup seconds;
  - no 5xx answer, no request failing other than as planned, and SIGTERM exits 0.
Prints a report (machine, commit, date, traffic, probes, RSS, metrics) and exits 1 on a failure.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import queue
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

import httpx

MODEL = "soak"
WORDS = ("river mountain quiet number garden violet seven engine paper silver window thunder "
         "copper lantern orbit harbor meadow signal cobalt ember the a of and to in is was "
         "for on with as by at from story list explain why how").split()
PROBES = {
    "greedy": {"prompt": "The capital of France is", "max_tokens": 32, "temperature": 0,
               "logprobs": 2},
    "seeded": {"prompt": "Once upon a time, in a small village,", "max_tokens": 32,
               "temperature": 0.9, "top_p": 0.95, "seed": 4242, "logprobs": 2},
    "chat_greedy": {"messages": [{"role": "user", "content": "Name three colours."}],
                    "max_tokens": 24, "temperature": 0, "logprobs": True, "top_logprobs": 2},
}


class Server:
    def __init__(self, binary, model, kv_blocks, extra):
        cmd = [binary, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
               "--served-model-name", MODEL, "--max-queue", "4096", "--kv-blocks",
               str(kv_blocks), *extra]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.log = []
        lines = queue.Queue()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                lines.put(line)
        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 300
        while True:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                sys.exit("soak: invar serve did not start:\n" + "".join(self.log))
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                self.startup = line.strip()
                return

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


class Soak:
    def __init__(self, server, args):
        self.server = server
        self.args = args
        self.rng = random.Random(args.seed)
        self.stop = asyncio.Event()
        self.counts = {}        # kind -> [ok, failed]
        self.failures = []      # (kind, what)
        self.tokens = 0
        self.probe_first = {}
        self.probe_runs = {name: 0 for name in PROBES}
        self.probe_mismatches = []
        self.samples = []       # (seconds since start, rss MB, metrics)

    def count(self, kind, ok, what=""):
        c = self.counts.setdefault(kind, [0, 0])
        c[0 if ok else 1] += 1
        if not ok and len(self.failures) < 50:
            self.failures.append((kind, what))

    def prompt(self):
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 60)))

    async def one(self, client):
        r = self.rng.random()
        url = self.server.url
        if r < 0.20:
            kind = "completion greedy"
            body = {"prompt": self.prompt(), "max_tokens": self.rng.randint(1, 48),
                    "temperature": 0}
        elif r < 0.35:
            kind = "completion seeded n=2"
            body = {"prompt": self.prompt(), "max_tokens": self.rng.randint(1, 32),
                    "temperature": 0.8, "seed": self.rng.randint(0, 2**31), "n": 2}
        elif r < 0.55:
            kind = "completion stream"
            body = {"prompt": self.prompt(), "max_tokens": self.rng.randint(1, 64),
                    "temperature": self.rng.choice([0, 1.0]), "stream": True,
                    "seed": self.rng.randint(0, 2**31), "logprobs": self.rng.choice([None, 1]),
                    "stream_options": {"include_usage": True}}
        elif r < 0.65:
            kind = "chat"
            body = {"messages": [{"role": "user", "content": self.prompt()}],
                    "max_tokens": self.rng.randint(1, 48), "temperature": 0}
        elif r < 0.75:
            kind = "chat stream seeded"
            body = {"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": self.prompt()}],
                    "max_tokens": self.rng.randint(1, 48), "temperature": 0.7,
                    "seed": self.rng.randint(0, 2**31), "stream": True}
        elif r < 0.87:
            kind = "cancel mid-stream"
            body = {"prompt": self.prompt(), "max_tokens": 400, "ignore_eos": True,
                    "stream": True}
        elif r < 0.95:
            kind = "cancel while waiting"
            body = {"prompt": self.prompt(), "max_tokens": 400, "ignore_eos": True}
        else:
            kind = "bad request"
            body = self.rng.choice([{"prompt": ""}, {"prompt": "x", "temperature": -1},
                                    {"messages": []}, {"prompt": "x", "n": 1000}])
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        body = {k: v for k, v in body.items() if v is not None}
        body["model"] = MODEL
        try:
            if kind == "cancel while waiting":
                try:
                    await client.post(url + path, json=body, timeout=self.rng.uniform(0.2, 1.5))
                    self.count(kind, True)  # finished before the client gave up
                except httpx.TimeoutException:
                    self.count(kind, True)
                return
            if body.get("stream"):
                leave_after = self.rng.randint(1, 8) if kind == "cancel mid-stream" else None
                async with client.stream("POST", url + path, json=body, timeout=300) as resp:
                    if resp.status_code != 200:
                        self.count(kind, False, f"status {resp.status_code}")
                        return
                    chunks, done = 0, False
                    async for line in resp.aiter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: "):
                            chunks += 1
                            if leave_after and chunks >= leave_after:
                                break
                    self.tokens += chunks
                    self.count(kind, done or leave_after is not None,
                               "" if done or leave_after else "no [DONE]")
                return
            resp = await client.post(url + path, json=body, timeout=300)
            if kind == "bad request":
                self.count(kind, resp.status_code == 400, f"status {resp.status_code}")
                return
            ok = resp.status_code == 200
            if ok:
                self.tokens += resp.json()["usage"]["completion_tokens"]
            self.count(kind, ok, f"status {resp.status_code}: {resp.text[:200]}")
        except (httpx.HTTPError, json.JSONDecodeError) as e:
            self.count(kind, False, repr(e))

    async def worker(self, client):
        while not self.stop.is_set():
            await self.one(client)

    async def probe(self, client, name):
        body = dict(PROBES[name], model=MODEL)
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        resp = await client.post(self.server.url + path, json=body, timeout=300)
        if resp.status_code != 200:
            self.probe_mismatches.append((name, f"status {resp.status_code}"))
            return
        choice = resp.json()["choices"][0]
        answer = json.dumps([choice.get("text", choice.get("message")), choice["logprobs"]],
                            sort_keys=True)
        self.probe_runs[name] += 1
        first = self.probe_first.setdefault(name, answer)
        if answer != first:
            self.probe_mismatches.append((name, f"repeat {self.probe_runs[name]} differs"))

    async def prober(self, client):
        while not self.stop.is_set():
            for name in PROBES:
                await self.probe(client, name)
            try:
                await asyncio.wait_for(self.stop.wait(), self.args.probe_interval)
            except asyncio.TimeoutError:
                pass

    async def sample(self, client, start):
        resp = await client.get(self.server.url + "/metrics", timeout=60)
        self.samples.append((time.monotonic() - start, self.server.rss_mb(),
                             parse_metrics(resp.text)))

    async def monitor(self, client, start):
        while not self.stop.is_set():
            await self.sample(client, start)
            try:
                await asyncio.wait_for(self.stop.wait(), self.args.sample_interval)
            except asyncio.TimeoutError:
                pass

    async def run(self):
        limits = httpx.Limits(max_connections=self.args.concurrency * 2 + 20)
        async with httpx.AsyncClient(limits=limits, timeout=300) as client:
            start = time.monotonic()
            tasks = [asyncio.create_task(self.worker(client))
                     for _ in range(self.args.concurrency)]
            tasks.append(asyncio.create_task(self.prober(client)))
            tasks.append(asyncio.create_task(self.monitor(client, start)))
            await asyncio.sleep(self.args.minutes * 60)
            self.stop.set()
            await asyncio.gather(*tasks)
            self.traffic_s = time.monotonic() - start
            # Idle: nothing held once the traffic is gone.
            deadline = time.monotonic() + 120
            while True:
                await self.sample(client, start)
                m = self.samples[-1][2]
                if (m["invar_kv_blocks_used"] == 0 and m["invar_num_requests_running"] == 0
                        and m["invar_num_requests_waiting"] == 0
                        and m["invar_engine_requests_in_flight"] == 0) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            for name in PROBES:  # once more on the idle server
                await self.probe(client, name)
            self.idle = self.samples[-1]


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    system = line.split("=", 1)[1].strip().strip('"') + ", " + system
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {mem} RAM, {system}"


def commit(root):
    def git(*a):
        return subprocess.run(["git", "-C", root, *a], capture_output=True, text=True).stdout.strip()
    c = git("rev-parse", "--short", "HEAD") or "?"
    return c + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the RSS reference (default: 20%% of the run, at least 30)")
    ap.add_argument("--probe-interval", type=float, default=10)
    ap.add_argument("--sample-interval", type=float, default=5)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--kv-blocks", type=int, default=256,
                    help="the server's KV pool (small enough to fill during warm-up)")
    ap.add_argument("--report", help="also write the report to this file")
    ap.add_argument("serve_args", nargs="*", help="more `invar serve` options (after --)")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    started_at = commit(root)  # what the binary was built from, not what HEAD is by the end
    server = Server(args.binary, args.model, args.kv_blocks, args.serve_args)
    soak = Soak(server, args)
    asyncio.run(soak.run())
    server.proc.send_signal(signal.SIGTERM)
    try:
        exit_code = server.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        exit_code = "killed after 120 s"

    # RSS: median of the first samples after warm-up against the median of the last ones.
    min_warmup = args.warmup if args.warmup is not None else max(30.0, 0.2 * args.minutes * 60)
    during = [s for s in soak.samples if s[0] <= soak.traffic_s]
    filled = next((s[0] for s in during if s[2]["invar_kv_blocks_used"]
                   + s[2]["invar_kv_blocks_cached"] >= s[2]["invar_kv_blocks_total"]), None)
    warmup = max(min_warmup, filled if filled is not None else 0.0)
    after_warmup = [s for s in during if s[0] >= warmup]
    k = max(3, len(after_warmup) // 10)
    ref = statistics.median(s[1] for s in after_warmup[:k]) if after_warmup else float("nan")
    end = statistics.median(s[1] for s in after_warmup[-k:]) if after_warmup else float("nan")
    peak = max((s[1] for s in after_warmup), default=float("nan"))
    growth = end / ref - 1 if after_warmup else float("nan")
    idle_m = soak.idle[2]

    problems = []
    if filled is None:
        problems.append("the KV pool never filled: RSS cannot settle (fewer --kv-blocks?)")
    if len(after_warmup) < 2 * k:
        problems.append(f"too few RSS samples after warm-up ({len(after_warmup)}): run longer")
    elif not growth <= 0.10:
        problems.append(f"RSS grew {growth:+.1%} after warm-up ({ref:.0f} -> {end:.0f} MB)")
    for key in ("invar_kv_blocks_used", "invar_num_requests_running", "invar_num_requests_waiting",
                "invar_engine_requests_in_flight"):
        if idle_m[key] != 0:
            problems.append(f"{key} = {idle_m[key]:.0f} once idle (leak)")
    if idle_m["invar_http_responses_5xx_total"] != 0:
        problems.append(f"{idle_m['invar_http_responses_5xx_total']:.0f} 5xx answers")
    failed = sum(c[1] for c in soak.counts.values())
    if failed:
        problems.append(f"{failed} requests failed: {soak.failures[:5]}")
    if soak.probe_mismatches:
        problems.append(f"probe mismatches: {soak.probe_mismatches[:5]}")
    if min(soak.probe_runs.values()) < 2:
        problems.append(f"too few probe repeats: {soak.probe_runs}")
    if exit_code != 0:
        problems.append(f"invar serve exited {exit_code} after SIGTERM")

    total = sum(c[0] + c[1] for c in soak.counts.values())
    lines = [
        f"invar soak: {args.minutes:g} min of mixed traffic against `invar serve`",
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"commit: {started_at}",
        f"machine: {machine()}",
        f"model: {args.model}",
        f"server: {server.startup}",
        f"command: {' '.join(server.cmd)}",
        f"traffic: {args.concurrency} concurrent clients for {soak.traffic_s:.0f} s, seed {args.seed}; "
        f"{total} requests, {soak.tokens} tokens received "
        f"({soak.tokens / soak.traffic_s:.1f}/s)",
        "",
        f"{'kind':<24} {'ok':>7} {'failed':>7}",
    ]
    for kind, (ok, bad) in sorted(soak.counts.items()):
        lines.append(f"{kind:<24} {ok:>7} {bad:>7}")
    lines += [
        "",
        "probes (each repeat bitwise equal to the first answer): " + ", ".join(
            f"{n} {soak.probe_runs[n]} runs" for n in PROBES)
        + f"; mismatches: {len(soak.probe_mismatches)}",
        f"RSS: warm-up {warmup:.0f} s (KV pool first full at "
        f"{'never' if filled is None else f'{filled:.0f} s'}); after it {ref:.0f} MB (median of the first {k} samples), "
        f"at the end {end:.0f} MB (median of the last {k}), change {growth:+.1%}, peak {peak:.0f} MB",
        "RSS by minute (MB): " + " ".join(
            f"{s[1]:.0f}" for i, s in enumerate(during)
            if i == 0 or int(s[0] // 60) != int(during[i - 1][0] // 60)),
        f"once idle: kv_blocks_used {idle_m['invar_kv_blocks_used']:.0f} of "
        f"{idle_m['invar_kv_blocks_total']:.0f} (cached {idle_m['invar_kv_blocks_cached']:.0f}), "
        f"running {idle_m['invar_num_requests_running']:.0f}, "
        f"waiting {idle_m['invar_num_requests_waiting']:.0f}, "
        f"in flight {idle_m['invar_engine_requests_in_flight']:.0f}",
        f"totals: {idle_m['invar_requests_finished_total']:.0f} engine requests, "
        f"{idle_m['invar_generation_tokens_total']:.0f} generated tokens, "
        f"{idle_m['invar_preemptions_total']:.0f} preemptions, "
        f"{idle_m['invar_requests_cancelled_disconnect_total']:.0f} cancelled by disconnects, "
        f"{idle_m['invar_http_requests_total']:.0f} HTTP requests, "
        f"{idle_m['invar_http_responses_4xx_total']:.0f} 4xx, "
        f"{idle_m['invar_http_responses_5xx_total']:.0f} 5xx",
        f"SIGTERM: exit {exit_code}",
        "",
        "result: " + ("PASS" if not problems else "FAIL\n  " + "\n  ".join(problems)),
    ]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.report:
        with open(args.report, "w") as f:
            f.write(report)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
