#!/usr/bin/env python3
"""Soak benchmark: one `infer-eval serve` under --minutes (default 10) of mixed
traffic at --concurrency (default 32) clients (a benchmark, not a test; not
run by CI).

Each client loops over request kinds: greedy, sampled (n = 2, seeds),
streamed, streamed and cancelled after a few events, penalised with a
logit bias, and bad requests (400s). Before the soak every answering kind is
sent alone to an idle server; during it every completed answer's digests
(`infer_eval.digest` and `logits_digest` of each choice) must equal that
solo answer's. The server's RSS (/proc/PID/status VmRSS) is sampled every
10 s. Prints and writes (--out) a JSON summary: requests by kind, answers
compared and any that differed, 400s, cancellations, p50/p99 latency of
whole answers, RSS over time, and the growth after warm-up (the first
minute).

  python3 benches/serve_soak.py --binary target/release/infer-eval --minutes 10

Standard library only.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

# The load benchmark's prompts and port helper (same folder).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_load import PROMPTS as LOAD_PROMPTS, free_port  # noqa: E402

PROMPTS = LOAD_PROMPTS[:6]


def kinds():
    """(name, body, answered?) for every request kind, per prompt."""
    out = []
    for i, p in enumerate(PROMPTS):
        out.append((f"greedy/{i}", {"prompt": p, "max_tokens": 24, "temperature": 0}, True))
        out.append((f"sampled/{i}", {"prompt": p, "max_tokens": 24, "temperature": 0.9, "top_p": 0.95,
                                     "seed": 100 + i, "n": 2}, True))
        out.append((f"stream/{i}", {"prompt": p, "max_tokens": 24, "temperature": 0.7, "seed": i,
                                    "stream": True}, True))
        out.append((f"penalised/{i}", {"prompt": p, "max_tokens": 24, "temperature": 0,
                                       "presence_penalty": 0.5, "frequency_penalty": 0.3,
                                       "logit_bias": {"13": -100}}, True))
        out.append((f"cancelled/{i}", {"prompt": p, "max_tokens": 400, "temperature": 0,
                                       "ignore_eos": True, "stream": True}, False))
    out.append(("bad/temperature", {"prompt": "x", "temperature": -1}, False))
    out.append(("bad/json", None, False))
    return out


def post(port, body, raw=None, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else json.dumps(body)
    c.request("POST", "/v1/completions", body=data, headers={"Content-Type": "application/json"})
    return c, c.getresponse()


def digests_whole(v):
    return [(ch["index"], ch["infer_eval"]["digest"], ch["infer_eval"]["logits_digest"])
            for ch in sorted(v["choices"], key=lambda c: c["index"])]


def digests_stream(resp, stop_after=None):
    """The digests of a streamed answer (from its last chunk per choice), or
    None when the client leaves after `stop_after` events."""
    got, events = {}, 0
    for line in resp:
        line = line.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        events += 1
        if stop_after is not None and events >= stop_after:
            return None
        v = json.loads(data)
        for ch in v.get("choices", []):
            ext = ch.get("infer_eval")
            if ext and ext.get("digest"):
                got[ch["index"]] = (ch["index"], ext["digest"], ext["logits_digest"])
    return [got[k] for k in sorted(got)]


def one(port, name, body, stop_after=None):
    """Send one request: (status, digests or None, seconds)."""
    t0 = time.perf_counter()
    raw = "{not json" if body is None else None
    c, r = post(port, body, raw)
    try:
        if r.status != 200:
            r.read()
            return r.status, None, time.perf_counter() - t0
        if body.get("stream"):
            d = digests_stream(r, stop_after)
        else:
            d = digests_whole(json.loads(r.read()))
        return 200, d, time.perf_counter() - t0
    finally:
        c.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/infer-eval")
    ap.add_argument("--model", default="llama")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", default="serve_soak.json")
    a = ap.parse_args()

    port = free_port()
    srv = subprocess.Popen([a.binary, "serve", "--model", a.model, "--port", str(port), "--threads",
                            str(a.threads), "--max-queue", "1024"], stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        t0 = time.time()
        while True:
            line = srv.stderr.readline().decode()
            if "listening on" in line:
                break
            if srv.poll() is not None or time.time() - t0 > 300:
                sys.exit(f"the server did not start: {line}")
        threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
        ks = kinds()
        solo = {}
        for name, body, answered in ks:
            if answered:
                status, d, _ = one(port, name, body)
                assert status == 200 and d, (name, status)
                solo[name] = d
        print(f"solo answers: {len(solo)} kinds", file=sys.stderr)

        lock = threading.Lock()
        stats = {"sent": {}, "compared": 0, "differed": [], "bad_400": 0, "cancelled": 0,
                 "errors": [], "latency_s": []}
        end = time.time() + a.minutes * 60
        rss = []

        def client(k):
            j = k
            while time.time() < end:
                name, body, answered = ks[j % len(ks)]
                j += 7
                try:
                    leave = 3 if name.startswith("cancelled") else None
                    status, d, secs = one(port, name, body, leave)
                except Exception as e:  # noqa: BLE001 (a benchmark counts every failure)
                    with lock:
                        stats["errors"].append(f"{name}: {e}")
                    continue
                with lock:
                    stats["sent"][name.split("/")[0]] = stats["sent"].get(name.split("/")[0], 0) + 1
                    if name.startswith("bad"):
                        stats["bad_400"] += status == 400
                        if status != 400:
                            stats["errors"].append(f"{name}: status {status}")
                    elif name.startswith("cancelled"):
                        stats["cancelled"] += 1
                    elif status != 200:
                        stats["errors"].append(f"{name}: status {status}")
                    else:
                        stats["compared"] += 1
                        stats["latency_s"].append(secs)
                        if d != solo[name]:
                            stats["differed"].append(name)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.concurrency)]
        for t in threads:
            t.start()
        start = time.time()
        while any(t.is_alive() for t in threads):
            rss.append((round(time.time() - start), rss_kib(srv.pid)))
            time.sleep(10)
        for t in threads:
            t.join()
        lat = sorted(stats.pop("latency_s"))
        after_warmup = [r for s, r in rss if s >= 60] or [r for _, r in rss]
        summary = {
            **stats,
            "minutes": a.minutes,
            "concurrency": a.concurrency,
            "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
            "latency_p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3) if lat else None,
            "rss_kib": rss,
            "rss_growth_after_warmup_kib": after_warmup[-1] - after_warmup[0],
            "errors": stats["errors"][:20],
            "n_errors": len(stats["errors"]),
        }
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps({k: v for k, v in summary.items() if k != "rss_kib"}, indent=1))
        if summary["differed"] or summary["n_errors"]:
            sys.exit(1)
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=60)


if __name__ == "__main__":
    main()
