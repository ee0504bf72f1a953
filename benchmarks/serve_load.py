"""Requests per second and latency of serve.py under 1, 8 and 32 concurrent clients.

    python benchmarks/serve_load.py [--requests 64] [--bars 8] [--threads 1] [--repeats 2] [--ckpt PATH]

The server runs as ``python serve.py`` in its own process on a loopback port; the clients
are threads of this process, each sending ``POST /api/generate`` (JSON, ``--bars`` bars of the
model's first two instruments, sample.py's sampling defaults, seed = the request's number) and waiting for
the answer before sending its next. Every round sends the same ``--requests`` requests, split
over its clients: one client is the one-at-a-time baseline, so the rounds differ only in how
many requests the server sees together (it batches those that arrive while a batch runs).
Latency is from sending a request to reading its whole answer (the MIDI is written by then;
the piano roll and WAV are drawn only when fetched, which this load does not do).

The model is lstm_small's network (2 x 256 LSTM) with random weights unless ``--ckpt`` is given.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from deeporb.encoding.words import EncodingConfig, Vocabulary  # noqa: E402
from deeporb.model import LSTMGenerator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTS = ("acoustic_bass", "acoustic_grand_piano", "drums", "violin")


def lstm_small_checkpoint(path: Path) -> Path:
    """configs/model/lstm_small.yaml's network with random weights, saved as a checkpoint."""
    torch.manual_seed(0)
    vocab = Vocabulary(EncodingConfig(), INSTRUMENTS)
    session = {"names": ["random"], "qpm_median": 120.0, "time_signatures": {"4/4": 1},
               "instruments": {k: {"program": {"acoustic_bass": 32, "violin": 40}.get(k, 0), "is_drum": k == "drums"}
                               for k in INSTRUMENTS}}
    model = LSTMGenerator(vocab.to_dict(), embed_dim=256, hidden_size=256, num_layers=2, dropout=0.1,
                          tie_weights=True, session=session)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def post(host: str, port: int, body: dict) -> tuple[float, dict]:
    """One request on its own connection -> (seconds until the whole answer was read, answer)."""
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.request("POST", "/api/generate", data, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {answer}")
    return time.perf_counter() - t0, answer


def round_of(host: str, port: int, bodies: list[dict], clients: int) -> dict:
    """``clients`` closed-loop clients share ``bodies`` (client c sends c, c + clients, ...)."""
    def client(c: int) -> list[float]:
        return [post(host, port, b)[0] for b in bodies[c::clients]]

    before = status(host, port)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [s for part in pool.map(client, range(clients)) for s in part]
    wall = time.perf_counter() - t0
    after = status(host, port)
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests": len(bodies), "wall": wall, "rps": len(bodies) / wall,
            "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
            "per_batch": (after["requests"] - before["requests"]) / batches}


def status(host: str, port: int) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", "/api/status")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per round (the same in every round)")
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds per client count; the best is kept")
    parser.add_argument("--ckpt", type=Path, default=None, help="a trained checkpoint instead of random weights")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt.resolve() if args.ckpt else lstm_small_checkpoint(Path(tmp) / "lstm_small_random.ckpt")
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "serve.py"), f"ckpt_path={ckpt}", "port=0", f"out_dir={tmp}/pieces",
             f"max_queue={max(args.clients) * 2}", "keep_pieces=100000"],
            stdout=subprocess.PIPE, text=True, env=env, cwd=tmp)
        try:
            line = server.stdout.readline()
            if " at http://" not in line:
                raise SystemExit(f"the server did not start: {line!r}")
            host, port = line.split(" at http://")[1].split("/")[0].rsplit(":", 1)
            port = int(port)
            conn = http.client.HTTPConnection(host, port, timeout=60)
            conn.request("GET", "/api/model")
            info = json.loads(conn.getresponse().read())
            ask = info["instruments"][:2]  # two parts: two sampler rows each in the tracks view, one in the score view
            conn.close()
            bodies = [{"bars": args.bars, "seed": i, "instruments": ask} for i in range(args.requests)]
            _, first = post(host, port, bodies[0])  # warm-up: first calls allocate and initialise kernels
            round_of(host, port, bodies[:8], 8)
            best: dict[int, dict] = {}
            for _ in range(args.repeats):  # alternating, so a busy spell slows every client count alike
                for c in args.clients:
                    r = round_of(host, port, bodies, c)
                    if c not in best or r["rps"] > best[c]["rps"]:
                        best[c] = r
            rounds = [best[c] for c in args.clients]
        finally:
            server.terminate()
            server.wait(30)
    load = ", ".join(f"{x:.1f}" for x in load_before) + " at the start, " + ", ".join(
        f"{x:.1f}" for x in os.getloadavg()) + " at the end (the machine is shared)"
    base = rounds[0]["rps"]
    rows = [f"| {r['clients']} | {r['requests']} | {r['wall']:.2f} | {r['rps']:.2f} | {r['p50']:.3f} | "
            f"{r['p95']:.3f} | {r['per_batch']:.1f} | {r['rps'] / base:.1f}× |" for r in rounds]
    model = f"checkpoint `{args.ckpt.name}`" if args.ckpt else "lstm_small's 2 × 256 LSTM (random weights)"
    command = (f"python benchmarks/serve_load.py --requests {args.requests} --bars {args.bars} --threads {args.threads}"
               f" --repeats {args.repeats}"
               + (f" --ckpt {args.ckpt}" if args.ckpt else ""))
    markdown = "\n".join([
        "## Serving load",
        "",
        f"`{command}`; {machine()}; the server (`python serve.py`, its own process, {args.threads} torch "
        f"thread(s)) and the clients (threads of the benchmark) share the machine; load average {load}. "
        f"Model: {model}, {info['view']} view; each request asks for {args.bars} bars of "
        f"{' and '.join(ask)} with sample.py's defaults (temperature 1, top-p 0.95), "
        f"seed = its number, so every round sends the same {args.requests} requests.",
        "",
        f"Best of {args.repeats} alternating rounds per client count. Each client sends its next request when its answer (JSON; the MIDI is written by then) arrives. "
        "One client is one request at a time; with more, the requests that arrive while a batch "
        "runs are generated together in the next (one `generate` call; each request draws from its "
        "own seeded generator, so its piece does not depend on its batch). Latency: send to answer read. "
        "Two things keep the gain below the batch size: a batch lasts as long as its longest row (rows "
        "that finish leave it, but new requests wait for the next batch; "
        f"{'random weights make bar lengths vary widely' if not args.ckpt else 'bar lengths vary'}), "
        "and a network step for a full batch costs more than one for a single request.",
        "",
        "| clients | requests | seconds | requests/s | p50 latency s | p95 latency s | requests per batch | vs one at a time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])
    print(markdown)
    if not args.no_write:
        write_section("serve_load", markdown)


if __name__ == "__main__":
    main()
