"""Serving benchmark: N concurrent websocket chats on a real Daphne vs the bare model's `generate`.

One run, side by side, for each N: the server phase (N sessions, each sending M messages one
after the other over /ws/chat/) and, right after it, the bare model's batched greedy `generate`
on exactly the prompts the server answered (read back from the database, history included),
in batches of N. It prints aggregate generated tokens/s and its ratio to the bare model, time
to first token and per-token latency percentiles (with the engine's own part of the first
token time, from its queue to the token, as stored with each reply), errors, a count check of
every message and reply in the database, and the web process's memory against the model's
weight size.

With ``--backend openai`` it measures the generation server instead (issue 13), side by side on
the same prompts: the in-process Daphne (GENERATION_BACKEND=in_process), one Daphne with
GENERATION_BACKEND=openai in front of one ``manage.py serve_model``, and two such Daphnes with
the sessions split between them, sharing that serve_model; the three set-ups take turns, in a
rotating order, ``--repeats`` times for each N. It prints tokens/s and first-token times of each,
the openai web process's memory against the same process before its first chat, and PASS/FAIL
for each target.

    .venv/bin/python bench/serve.py --quick          # tiny model, a minute or two
    .venv/bin/python bench/serve.py --checkpoint var/checkpoints/starter-0-<hash>
    .venv/bin/python bench/serve.py --quick --backend openai   # about two minutes
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.web_process import (  # noqa: E402  (after the path: run as a script)
    free_ports,
    run_manage,
    spawn_daphne,
    stop_process,
    wait_until_listening,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Targets (starter model, two CPU cores): at N=32 tokens/s >= 8x N=1 and >= 0.7x the "
            "bare model at batch 32; N=1 time to first token <= 1.2x bare + 5 ms; no lost "
            "messages; at N=64 with --max-queue below 64 the overflow is answered busy; web "
            "process RSS <= weights + 300 MiB. With --backend openai (N=1 and 32): the openai "
            "web process's RSS after serving <= the same process before its first chat + 150 "
            "MiB; N=32 tokens/s through serve_model >= 0.9x in-process; N=1 TTFT p50 through "
            "serve_model <= in-process + 3 ms; two web processes on one serve_model >= 1.0x "
            "one at N=32. The server runs on a fresh SQLite database under a temporary VAR_DIR, "
            "removed afterwards (--keep keeps it)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="model checkpoint directory to serve (default: the newest starter-0-* under "
        "CHECKPOINT_DIR, else a starter model built for the run; with --quick, a tiny one)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny model built in seconds, 2 messages a session"
    )
    parser.add_argument(
        "--backend",
        choices=("in_process", "openai"),
        default="in_process",
        help="in_process: the server against the bare model; openai: the in-process server "
        "against one and two web processes sharing a `manage.py serve_model`",
    )
    parser.add_argument(
        "--sessions",
        help="comma-separated concurrent session counts N (default 1,8,32,64; with --backend "
        "openai 1,32)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="(--backend openai) how many times each set-up serves each N, taking turns",
    )
    parser.add_argument("--messages", type=int, help="messages per session M (default 4; quick 2)")
    parser.add_argument(
        "--max-queue",
        type=int,
        default=48,
        help="GENERATION_ENGINE_MAX_QUEUE of the server (below the largest N to see busy answers)",
    )
    parser.add_argument("--max-batch", type=int, default=32, help="GENERATION_ENGINE_MAX_BATCH")
    parser.add_argument(
        "--batch-wait-ms", type=float, default=0.0, help="GENERATION_ENGINE_BATCH_WAIT_MS"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=96, help="GENERATION_MAX_NEW_TOKENS (both sides)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server's engine (GENERATION_ENGINE_THREADS) and the bare model",
    )
    parser.add_argument("--port", type=int, default=18100, help="port for Daphne on 127.0.0.1")
    parser.add_argument("--keep", action="store_true", help="keep the temporary VAR_DIR")
    parser.add_argument(
        "--knowledge",
        action="store_true",
        help="seed the knowledge base (MiniLM) so that every reply retrieves its articles and is "
        "grounded in them (the bare model gets the same articles); then N=1 again with every "
        "article switched off: time to first token with and without retrieval, side by side",
    )
    args = parser.parse_args(argv)
    if args.sessions is None:
        args.sessions = "1,32" if args.backend == "openai" else "1,8,32,64"
    args.sessions = [int(n) for n in args.sessions.split(",") if n.strip()]
    if args.messages is None:
        args.messages = 2 if args.quick and args.backend == "in_process" else 4
    if not args.sessions or min(args.sessions) < 1 or args.messages < 1 or args.repeats < 1:
        parser.error("--sessions, --messages and --repeats must be positive")
    return args


# --- the server -----------------------------------------------------------------------


class Server:
    """A Daphne process on a fresh SQLite database with one checkpoint active."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.var_dir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
        }
        self.env.update(
            VAR_DIR=str(self.var_dir),
            DEBUG="false",
            SECRET_KEY="bench-serve-not-secret",
            LOG_LEVEL="WARNING",
            CHAT_MESSAGES_PER_MINUTE="100000",
            # Keep each thread's database connection: reconnecting per query halves the rate
            # at which the consumer's one database thread stores messages (13 vs 7 ms a post).
            DATABASE_CONN_MAX_AGE=os.environ.get("DATABASE_CONN_MAX_AGE", "60"),
            GENERATION_ENGINE_MAX_QUEUE=str(args.max_queue),
            GENERATION_ENGINE_MAX_BATCH=str(args.max_batch),
            GENERATION_ENGINE_BATCH_WAIT_MS=str(args.batch_wait_ms),
            GENERATION_ENGINE_THREADS=str(args.threads),
            GENERATION_MAX_NEW_TOKENS=str(args.max_new_tokens),
            KNOWLEDGE_POLL_SECONDS="1",
            PYTHONPATH=str(ROOT),
        )
        self.process: subprocess.Popen | None = None
        self.checkpoint: Path | None = None

    @property
    def database(self) -> Path:
        return self.var_dir / "chatbot.sqlite3"

    def manage(self, *arguments: str) -> str:
        return run_manage(self.env, *arguments)

    def prepare(self) -> None:
        self.manage("migrate", "--noinput")
        if self.args.knowledge:
            print("seeding the knowledge base (embedding 61 articles)...", flush=True)
            self.manage("seed_knowledge_base")
        if self.args.checkpoint is None and not self.args.quick:
            self.args.checkpoint = newest_starter_checkpoint(self.env)
        if self.args.checkpoint is None:
            print("building a starter model for the run (--checkpoint skips this)...", flush=True)
            arguments = ["--tiny"] if self.args.quick else []
            self.manage("build_starter_model", "--skip-eval", *arguments)
            self.checkpoint = Path(next(iter(glob.glob(str(self.var_dir / "checkpoints/*")))))
            return
        self.checkpoint = self.args.checkpoint.resolve()
        script = (
            "from learning.versions import register_version, activate_version\n"
            f"v = register_version('bench', {str(self.checkpoint)!r}, 'starter')\n"
            "activate_version(v, note='bench/serve.py')\n"
        )
        self.manage("shell", "-c", script)

    def start(self) -> None:
        self.log = (self.var_dir / "daphne.log").open("w")
        self.process = spawn_daphne(self.args.port, self.env, self.log)
        wait_until_listening(self.process, self.args.port, self.var_dir / "daphne.log")

    def switch_knowledge_off(self) -> None:
        """Every article inactive (the web process notices within KNOWLEDGE_POLL_SECONDS)."""
        self.manage(
            "shell",
            "-c",
            "from django.utils import timezone\n"
            "from knowledge.models import KnowledgeArticle\n"
            "KnowledgeArticle.objects.update(is_active=False, updated_at=timezone.now())\n",
        )
        time.sleep(2)

    def memory(self) -> dict[str, int]:
        """The web process's memory (/proc status, bytes): RSS, its peak, anonymous part."""
        return process_memory(self.process.pid)

    def import_memory(self) -> dict[str, int]:
        """RSS and anonymous memory of a fresh process that only imports what the server runs.

        Django, the ASGI application, torch and transformers' Llama: the floor under any web
        process that hosts the model, before a single weight is loaded.
        """
        script = (
            "import django; django.setup()\n"
            "import chatbot_site.asgi, serving.engine\n"
            "from transformers import LlamaForCausalLM\n"
            "for line in open('/proc/self/status'):\n"
            "    if line.startswith(('VmRSS', 'RssAnon')): print(line.split()[1])\n"
        )
        env = {**self.env, "DJANGO_SETTINGS_MODULE": "chatbot_site.settings"}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
        )
        rss, anon = (int(value) * 1024 for value in done.stdout.split()[-2:])
        return {"rss": rss, "anon": anon}

    def stop(self) -> None:
        stop_process(self.process)
        if self.process is not None:
            self.log.close()
        if not self.args.keep:
            shutil.rmtree(self.var_dir, ignore_errors=True)
        else:
            print(f"kept {self.var_dir}")


def process_memory(pid: int) -> dict[str, int]:
    """A process's memory (/proc status, bytes): RSS, its peak, anonymous and file-backed part."""
    fields = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anon", "RssFile": "file"}
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in fields:
            values[fields[key]] = int(rest.split()[0]) * 1024
    return values


def newest_starter_checkpoint(env: dict[str, str]) -> Path | None:
    directory = Path(
        os.environ.get("CHECKPOINT_DIR")
        or Path(os.environ.get("VAR_DIR", ROOT / "var")) / "checkpoints"
    )
    found = sorted(directory.glob("starter-0-*"), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


# --- the clients ----------------------------------------------------------------------


@dataclass
class Reply:
    sent: float
    first_delta: float | None = None
    end: float | None = None
    bot_id: int | None = None


@dataclass
class Phase:
    """One N: the server's rounds and, after each, the bare model on the same prompts."""

    sessions: int
    replies: list[Reply] = field(default_factory=list)
    sent: int = 0
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    server_seconds: float = 0.0
    server_tokens: int = 0
    bare_seconds: float = 0.0
    bare_tokens: int = 0
    bare_first_ms: list[float] = field(default_factory=list)


async def chat_turn(ws: Any, question: str, phase: Phase) -> Reply | None:
    """Send one message and read until its reply ends (or an error answers it)."""
    reply = Reply(sent=time.perf_counter())
    await ws.send(json.dumps({"type": "user_message", "text": question}))
    phase.sent += 1
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=300))
        kind = frame["type"]
        if kind == "bot_message.start":
            reply.bot_id = frame["id"]
        elif kind == "bot_message.delta" and reply.first_delta is None:
            reply.first_delta = time.perf_counter()
        elif kind == "bot_message.end":
            reply.end = time.perf_counter()
            phase.replies.append(reply)
            return reply
        elif kind == "error":
            if frame["code"] == "busy":
                phase.busy += 1
            else:
                phase.errors.append(f"{frame['code']}: {frame['detail']}")
            return None


async def guarded_turn(ws: Any, question: str, phase: Phase) -> Reply | None:
    try:
        return await chat_turn(ws, question, phase)
    except Exception as error:  # a lost connection is an error of the run, not a crash
        phase.errors.append(f"{type(error).__name__}: {error}")
        return None


async def run_phase(
    ports: int | list[int],
    sessions: int,
    messages: int,
    questions: list[str],
    *,
    bare: BareModel | None = None,
    database: Path | None = None,
) -> Phase:
    """N sessions, M rounds; in each round every session sends one message and reads its reply.

    After each round the bare model answers the same prompts as one batch (off the event loop,
    so the sockets stay alive): both sides are measured seconds apart, under the same load.
    With several ``ports`` (web processes), the sessions take turns among them.
    """
    from websockets.asyncio.client import connect

    ports = [ports] if isinstance(ports, int) else ports
    phase = Phase(sessions)
    sockets = await asyncio.gather(
        *(
            connect(
                f"ws://127.0.0.1:{ports[s % len(ports)]}/ws/chat/",
                origin=f"http://127.0.0.1:{ports[s % len(ports)]}",
                max_size=2**22,
                open_timeout=120,
            )
            for s in range(sessions)
        )
    )
    try:
        for ws in sockets:
            phase.conversations.append(json.loads(await ws.recv())["conversation"])
        for round_number in range(messages):
            plan = [
                questions[(s * messages + round_number) % len(questions)] for s in range(sessions)
            ]
            started = time.perf_counter()
            replies = await asyncio.gather(
                *(guarded_turn(ws, q, phase) for ws, q in zip(sockets, plan, strict=True))
            )
            phase.server_seconds += time.perf_counter() - started
            if bare is None or database is None:
                continue
            rows = read_phase_rows(database, phase.conversations)
            done = [r for r in replies if r is not None and r.bot_id in rows["tokens"]]
            phase.server_tokens += sum(rows["tokens"][r.bot_id] for r in done)
            if not done:
                continue
            turns = [rows["prompts"][r.bot_id] for r in done]
            prompts = [bare.prompt(t) for t in turns]
            generated, seconds = await asyncio.to_thread(
                bare.generate, prompts, bare.max_new_tokens
            )
            phase.bare_tokens += generated
            phase.bare_seconds += seconds
            if sessions == 1:
                for _ in range(3):
                    first = await asyncio.to_thread(bare.first_token_seconds, turns[0])
                    phase.bare_first_ms.append(first * 1000)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return phase


# --- the database ---------------------------------------------------------------------


def read_phase_rows(database: Path, conversations: list[str]) -> dict[str, Any]:
    """Messages of the phase's conversations: counts, replies' tokens, and each reply's prompt."""
    from conversations.models import Message
    from knowledge.prompt import grounded_turns

    connection = sqlite3.connect(database)
    try:
        marks = ",".join("?" * len(conversations))
        ids = [c.replace("-", "") for c in conversations]
        rows = connection.execute(
            f"SELECT id, conversation_id, role, text, finish_reason, token_count, "
            f"time_to_first_token_ms, grounding "
            f"FROM conversations_message WHERE conversation_id IN ({marks}) ORDER BY id",
            ids,
        ).fetchall()
    finally:
        connection.close()
    history: dict[str, list[tuple]] = {}
    prompts: dict[int, list[dict[str, str]]] = {}
    tokens: dict[int, int] = {}
    engine_ttft: dict[int, float] = {}
    for pk, conversation, role, text, finish, count, first_ms, grounding in rows:
        earlier = history.setdefault(conversation, [])
        if role == "assistant":
            # What the engine was prompted with: the history, after the articles shown.
            prompts[pk] = grounded_turns(
                [
                    {"role": r, "content": t}
                    for r, t, f in earlier
                    if r == "user" or f in Message.PROMPTABLE_REASONS
                ],
                json.loads(grounding or "[]"),
            )
            tokens[pk] = count or 0
            if first_ms is not None:
                engine_ttft[pk] = first_ms
        earlier.append((role, text, finish))
    return {
        "user": sum(1 for row in rows if row[2] == "user"),
        "finished": sum(
            1 for row in rows if row[2] == "assistant" and row[4] in Message.COMPLETE_REASONS
        ),
        "other": sum(
            1 for row in rows if row[2] == "assistant" and row[4] not in Message.COMPLETE_REASONS
        ),
        "prompts": prompts,
        "tokens": tokens,
        "engine_ttft": engine_ttft,
    }


# --- the bare model -------------------------------------------------------------------


class BareModel:
    """The same checkpoint in this process, answering with `generate` (greedy, left-padded)."""

    def __init__(self, checkpoint: Path, max_new_tokens: int, threads: int = 0):
        import torch

        from serving import chat_template
        from serving.checkpoints import load_checkpoint

        self.torch = torch
        self.chat_template = chat_template
        self.model, self.tokenizer = load_checkpoint(checkpoint)
        self.stop = sorted(chat_template.stop_ids(self.model, self.tokenizer))
        self.max_new_tokens = max_new_tokens
        self.threads = threads

    def prompt(self, turns: list[dict[str, str]]) -> list[int]:
        return self.chat_template.prompt_ids(self.tokenizer, turns)

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> tuple[int, float]:
        """Generated tokens (through the first stop token) and seconds, for one batch."""
        torch = self.torch
        if self.threads:  # per calling thread under OpenMP, as in the engine's worker thread
            torch.set_num_threads(self.threads)
        pad = self.chat_template.padding_id(self.tokenizer)
        ids, mask = self.chat_template.left_padded(prompts, pad)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=self.stop,
                pad_token_id=pad,
            )
        seconds = time.perf_counter() - started
        generated = 0
        for row in output[:, ids.shape[1] :].tolist():
            count = 0
            for token in row:
                count += 1
                if token in self.stop:
                    break
            generated += count
        return generated, seconds

    def first_token_seconds(self, turns: list[dict[str, str]]) -> float:
        started = time.perf_counter()
        self.generate([self.prompt(turns)], 1)
        return time.perf_counter() - started


# --- the report -----------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summarize(phase: Phase, rows: dict[str, Any]) -> dict[str, Any]:
    """One phase's replies against the database: latencies (ms), tokens, and the count check."""
    replied = [r for r in phase.replies if r.bot_id is not None]
    counts_ok = (
        rows["user"] == phase.sent
        and rows["finished"] == len(replied)
        and rows["other"] == 0
        and len(replied) + phase.busy + len(phase.errors) == phase.sent
    )
    return {
        "replied": replied,
        "tokens": sum(rows["tokens"].get(r.bot_id, 0) for r in replied),
        "ttft": [(r.first_delta - r.sent) * 1000 for r in replied if r.first_delta],
        # The server's own part of TTFT: from the engine's queue to the first token (with the
        # openai backend, from sending the request to the first chunk).
        "engine_ttft": [
            rows["engine_ttft"][r.bot_id] for r in replied if r.bot_id in rows["engine_ttft"]
        ],
        "per_token": [
            (r.end - r.first_delta) * 1000 / (rows["tokens"][r.bot_id] - 1)
            for r in replied
            if r.first_delta and rows["tokens"].get(r.bot_id, 0) > 1
        ],
        "counts_ok": counts_ok,
        "counts": (
            f"{'ok' if counts_ok else 'MISMATCH'} (sent {phase.sent}, stored {rows['user']}; "
            f"replies {len(replied)}, stored {rows['finished']}, other {rows['other']})"
        ),
    }


def measure(args: argparse.Namespace) -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")
    django.setup()
    from knowledge.demo.corpus import load_corpus

    corpus = load_corpus()
    questions = [q for intent in corpus.intents for q in intent.questions]
    server = Server(args)
    failures: list[str] = []
    try:
        server.prepare()
        server.start()
        bare = BareModel(server.checkpoint, args.max_new_tokens, args.threads)
        weights = sum(f.stat().st_size for f in server.checkpoint.glob("*.safetensors"))
        print(
            f"model {server.checkpoint} ({weights / 2**20:.1f} MiB of weights); server pid "
            f"{server.process.pid}, GENERATION_ENGINE_MAX_QUEUE={args.max_queue}, "
            f"GENERATION_ENGINE_MAX_BATCH={args.max_batch}, "
            f"GENERATION_ENGINE_THREADS={args.threads}, M={args.messages} messages a session"
        )
        asyncio.run(run_phase(args.port, 1, 2, ["hello"]))  # loads the model in the server
        bare.generate([bare.prompt([{"role": "user", "content": "hello"}])], 4)
        header = (
            f"{'N':>3} {'tok/s':>8} {'bare':>8} {'ratio':>6} {'TTFT p50':>9} {'p95':>7} "
            f"{'bare 1st':>9} {'engine':>7} {'tok ms p50':>10} {'p95':>6} {'busy':>5} "
            f"{'err':>4} counts"
        )
        print(header)
        results: dict[int, dict[str, float]] = {}
        for n in args.sessions:
            phase = asyncio.run(
                run_phase(
                    args.port, n, args.messages, questions, bare=bare, database=server.database
                )
            )
            rows = read_phase_rows(server.database, phase.conversations)
            numbers = summarize(phase, rows)
            ttft = numbers["ttft"]
            engine_ttft, per_token = numbers["engine_ttft"], numbers["per_token"]
            counts_ok, counts = numbers["counts_ok"], numbers["counts"]
            rate = phase.server_tokens / phase.server_seconds
            bare_rate = phase.bare_tokens / phase.bare_seconds if phase.bare_seconds else 0.0
            bare_first = (
                statistics.median(phase.bare_first_ms) if phase.bare_first_ms else float("nan")
            )
            print(
                f"{n:>3} {rate:>8.0f} {bare_rate:>8.0f} {rate / max(bare_rate, 1e-9):>6.2f} "
                f"{percentile(ttft, 0.5):>7.1f}ms {percentile(ttft, 0.95):>5.1f}ms "
                f"{bare_first:>7.1f}ms {percentile(engine_ttft, 0.5):>5.1f}ms "
                f"{percentile(per_token, 0.5):>10.2f} "
                f"{percentile(per_token, 0.95):>6.2f} {phase.busy:>5} {len(phase.errors):>4} "
                f"{counts}",
                flush=True,
            )
            for error in phase.errors[:3]:
                print(f"    error: {error}")
            results[n] = {
                "rate": rate,
                "bare": bare_rate,
                "ttft": percentile(ttft, 0.5),
                "engine": percentile(engine_ttft, 0.5),
                "bare_first": bare_first,
            }
            if not counts_ok:
                failures.append(f"N={n}: count check failed")
            if phase.errors:
                failures.append(f"N={n}: {len(phase.errors)} unexpected errors")
            if phase.busy and n <= args.max_queue:
                failures.append(f"N={n}: {phase.busy} busy answers below the queue limit")
            if n > args.max_queue and not phase.busy:
                failures.append(f"N={n}: no busy answer above the queue limit")
        if args.knowledge and 1 in results:
            results[1].update(without_retrieval(args, server, questions))
        memory = server.memory()
        print(
            f"web process memory: RSS {memory['rss'] / 2**20:.0f} MiB (peak "
            f"{memory['peak'] / 2**20:.0f}; anonymous {memory['anon'] / 2**20:.0f}, file-backed "
            f"{memory['file'] / 2**20:.0f}), weights {weights / 2**20:.1f} MiB: RSS - weights = "
            f"{(memory['rss'] - weights) / 2**20:.0f} MiB"
        )
        floor = server.import_memory()
        print(
            f"  a process that only imports Django, the app, torch and transformers: RSS "
            f"{floor['rss'] / 2**20:.0f} MiB (anonymous {floor['anon'] / 2**20:.0f}); the "
            f"server beyond those imports and the weights: "
            f"{(memory['rss'] - floor['rss'] - weights) / 2**20:.0f} MiB"
        )
        failures += check_targets(results, memory, weights)
    finally:
        server.stop()
    print("targets: all met" if not failures else "targets missed:\n  " + "\n  ".join(failures))
    return 0 if not failures else 1


def without_retrieval(
    args: argparse.Namespace, server: Server, questions: list[str]
) -> dict[str, float]:
    """N=1 again with every article switched off: no retrieval, no articles in the prompt."""
    server.switch_knowledge_off()
    phase = asyncio.run(run_phase(args.port, 1, args.messages, questions))
    rows = read_phase_rows(server.database, phase.conversations)
    replied = [r for r in phase.replies if r.bot_id is not None and r.first_delta]
    ttft = [(r.first_delta - r.sent) * 1000 for r in replied]
    engine = [rows["engine_ttft"][r.bot_id] for r in replied if r.bot_id in rows["engine_ttft"]]
    return {"ttft_without": percentile(ttft, 0.5), "engine_without": percentile(engine, 0.5)}


def check_targets(
    results: dict[int, dict[str, float]], memory: dict[str, int], weights: int
) -> list[str]:
    missed = []
    if 1 in results and 32 in results:
        speedup = results[32]["rate"] / results[1]["rate"]
        print(f"N=32 vs N=1 tokens/s: {speedup:.1f}x (target >= 8x)")
        if speedup < 8:
            missed.append(f"N=32 tokens/s only {speedup:.1f}x N=1")
        if results[1]["bare"]:
            # The ceiling of that ratio on this machine: how far batching helps the model at all.
            bare_speedup = results[32]["bare"] / results[1]["bare"]
            print(f"  (the bare model's own generate: batch 32 is {bare_speedup:.1f}x batch 1)")
        share = results[32]["rate"] / results[32]["bare"]
        print(f"N=32 vs bare generate at batch 32: {share:.2f}x (target >= 0.7x)")
        if share < 0.7:
            missed.append(f"N=32 tokens/s only {share:.2f}x bare generate")
    if "ttft_without" in results.get(1, {}):
        one = results[1]
        added = one["ttft"] - one["ttft_without"]
        in_engine = one["engine"] - one["engine_without"]
        print(
            f"N=1 TTFT p50 with retrieval {one['ttft']:.1f} ms (engine {one['engine']:.1f}), "
            f"without {one['ttft_without']:.1f} ms (engine {one['engine_without']:.1f}): "
            f"{added:+.1f} ms, of which outside the engine (retrieval) {added - in_engine:+.1f} "
            f"ms and in it (the articles' longer prompt) {in_engine:+.1f} ms"
        )
    if 1 in results:
        limit = 1.2 * results[1]["bare_first"] + 5
        print(f"N=1 TTFT p50 {results[1]['ttft']:.1f} ms vs bound {limit:.1f} ms (1.2x bare + 5)")
        if not results[1]["ttft"] <= limit:
            missed.append(f"N=1 TTFT {results[1]['ttft']:.1f} ms over {limit:.1f} ms")
    if memory["rss"] - weights > 300 * 2**20:
        missed.append(f"RSS {(memory['rss'] - weights) / 2**20:.0f} MiB above the weights")
    return missed


# --- the openai backend: web processes in front of one serve_model ---------------------

IN_PROCESS, OPENAI, OPENAI_TWO = "in-process", "openai", "openai x2"
MiB = 2**20


@dataclass
class Child:
    """A Daphne or serve_model process of the run, its stderr in the run's VAR_DIR."""

    name: str
    port: int
    process: subprocess.Popen
    log: IO[str]


def start_child(server: Server, name: str, port: int, **overrides: str) -> Child:
    """A Daphne serving the site on ``port`` with ``overrides`` in its environment, or with
    ``name`` "serve_model" the model server (`manage.py serve_model`); returns once listening."""
    env = {**server.env, **overrides}
    log_path = server.var_dir / f"{name.replace(' ', '-')}.log"
    log = log_path.open("w")
    if name == "serve_model":
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve_model", "--port", str(port)],
            env={**env, "GENERATION_SERVE_HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    else:
        process = spawn_daphne(port, env, log)
    child = Child(name, port, process, log)
    wait_until_listening(process, port, log_path)
    return child


def loads_torch(pid: int) -> bool:
    """Whether the process has torch's library mapped (imported torch at some point)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def django_floor_memory(env: dict[str, str]) -> int:
    """RSS of a fresh process that only sets Django up and imports the ASGI application."""
    script = (
        "import django; django.setup()\n"
        "import chatbot_site.asgi\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS'): print(line.split()[1])\n"
    )
    env = {**env, "DJANGO_SETTINGS_MODULE": "chatbot_site.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    return int(done.stdout.split()[-1]) * 1024


@dataclass
class Tally:
    """One set-up at one N, over all its repeats."""

    seconds: float = 0.0
    tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    engine_ttft: list[float] = field(default_factory=list)
    per_token: list[float] = field(default_factory=list)
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def add(self, phase: Phase, numbers: dict[str, Any]) -> None:
        self.seconds += phase.server_seconds
        self.tokens += numbers["tokens"]
        self.ttft += numbers["ttft"]
        self.engine_ttft += numbers["engine_ttft"]
        self.per_token += numbers["per_token"]
        self.busy += phase.busy
        self.errors += phase.errors
        if not numbers["counts_ok"]:
            self.counts.append(numbers["counts"])


def measure_backends(args: argparse.Namespace) -> int:
    """The in-process server vs one and two openai web processes sharing one serve_model."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")
    django.setup()
    from knowledge.demo.corpus import load_corpus

    corpus = load_corpus()
    questions = [q for intent in corpus.intents for q in intent.questions]
    server = Server(args)
    children: list[Child] = []
    try:
        server.prepare()
        in_port, model_port, web_port, second_port = free_ports(4)
        remote = {
            "GENERATION_BACKEND": "openai",
            "GENERATION_SERVER_URL": f"http://127.0.0.1:{model_port}/v1",
        }
        # The same ENGINE_* and GENERATION_* settings (server.env) for both engines.
        model = start_child(server, "serve_model", model_port)
        children.append(model)
        children.append(start_child(server, IN_PROCESS, in_port, GENERATION_BACKEND="in_process"))
        web = start_child(server, OPENAI, web_port, **remote)
        children.append(web)
        children.append(start_child(server, "openai second", second_port, **remote))
        time.sleep(1)  # let start-up settle before the baseline
        before_chat = process_memory(web.process.pid)
        plans = {IN_PROCESS: [in_port], OPENAI: [web_port], OPENAI_TWO: [web_port, second_port]}
        for port in (in_port, web_port, second_port):  # load the models, open the connections
            asyncio.run(run_phase(port, 1, 2, ["hello"]))
        print(
            f"model {server.checkpoint}; GENERATION_ENGINE_MAX_QUEUE={args.max_queue}, "
            f"GENERATION_ENGINE_MAX_BATCH={args.max_batch}, "
            f"GENERATION_ENGINE_THREADS={args.threads} for both engines "
            f"(in-process Daphne pid {children[1].process.pid}, serve_model pid "
            f"{model.process.pid}); M={args.messages} messages a session, {args.repeats} "
            f"repeats taking turns"
        )
        tallies = {(setup, n): Tally() for n in args.sessions for setup in plans}
        for n in args.sessions:
            for repeat in range(args.repeats):
                order = list(plans)[repeat % 3 :] + list(plans)[: repeat % 3]
                for setup in order:
                    phase = asyncio.run(run_phase(plans[setup], n, args.messages, questions))
                    rows = read_phase_rows(server.database, phase.conversations)
                    tallies[setup, n].add(phase, summarize(phase, rows))
        print_tallies(tallies)
        after = process_memory(web.process.pid)
        memory = {
            "before": before_chat["rss"],
            "after": after["rss"],
            "peak": after["peak"],
            "torch": loads_torch(web.process.pid),
            "floor": django_floor_memory(server.env),
            "in_process": process_memory(children[1].process.pid)["rss"],
            "serve_model": process_memory(model.process.pid)["rss"],
        }
        verdicts = backend_targets(tallies, memory)
    finally:
        for child in reversed(children):
            stop_process(child.process)
            child.log.close()
        server.stop()
    failed = [name for name, ok in verdicts if not ok]
    print("targets: all met" if not failed else f"targets missed: {', '.join(failed)}")
    return 0 if not failed else 1


def print_tallies(tallies: dict[tuple[str, int], Tally]) -> None:
    print(
        f"{'set-up':<10} {'N':>3} {'tok/s':>7} {'TTFT p50':>9} {'p95':>8} {'engine':>8} "
        f"{'tok ms p50':>10} {'p95':>6} {'replies':>7} {'busy':>5} {'err':>4} counts"
    )
    for (setup, n), tally in tallies.items():
        print(
            f"{setup:<10} {n:>3} {tally.rate:>7.0f} {percentile(tally.ttft, 0.5):>7.1f}ms "
            f"{percentile(tally.ttft, 0.95):>6.1f}ms {percentile(tally.engine_ttft, 0.5):>6.1f}ms "
            f"{percentile(tally.per_token, 0.5):>10.2f} {percentile(tally.per_token, 0.95):>6.2f} "
            f"{len(tally.ttft):>7} {tally.busy:>5} {len(tally.errors):>4} "
            f"{'ok' if not tally.counts else 'MISMATCH ' + '; '.join(tally.counts)}"
        )
        for error in tally.errors[:3]:
            print(f"    error: {error}")
    print(
        "  (engine: the server's part of TTFT as stored with each reply; in-process from the "
        "engine's queue to the first token, openai from sending the request to the first chunk)"
    )


def backend_targets(
    tallies: dict[tuple[str, int], Tally], memory: dict[str, Any]
) -> list[tuple[str, bool]]:
    """Print each of issue 13's targets with PASS/FAIL; (name, met) for each."""
    verdicts: list[tuple[str, bool]] = []

    def verdict(name: str, met: bool, line: str) -> None:
        verdicts.append((name, met))
        print(f"{'PASS' if met else 'FAIL'}  {line}")

    grown = memory["after"] - memory["before"]
    verdict(
        "memory",
        grown <= 150 * MiB and not memory["torch"],
        f"openai web process RSS {memory['after'] / MiB:.0f} MiB after serving (peak "
        f"{memory['peak'] / MiB:.0f}) - the same Daphne before its first chat (bare Django, "
        f"Daphne and the app) {memory['before'] / MiB:.0f} MiB = {grown / MiB:+.0f} MiB "
        f"(target <= 150); torch {'LOADED' if memory['torch'] else 'never loaded'}",
    )
    print(
        f"      for comparison: a process that only sets Django up and imports the ASGI app "
        f"{memory['floor'] / MiB:.0f} MiB (the openai web process is "
        f"{(memory['after'] - memory['floor']) / MiB:+.0f} MiB above it); the in-process Daphne "
        f"{memory['in_process'] / MiB:.0f} MiB; serve_model {memory['serve_model'] / MiB:.0f} MiB"
    )
    errors = sum(len(t.errors) + len(t.counts) + t.busy for t in tallies.values())
    verdict("no losses", errors == 0, f"errors, busy answers and count mismatches: {errors}")
    sessions = sorted({n for _, n in tallies})
    if 32 in sessions:
        inside, remote = tallies[IN_PROCESS, 32].rate, tallies[OPENAI, 32].rate
        ratio = remote / inside if inside else 0.0
        verdict(
            "throughput",
            ratio >= 0.9,
            f"N=32 tokens/s through serve_model {remote:.0f} / in-process {inside:.0f} = "
            f"{ratio:.2f}x (target >= 0.9x)",
        )
        two = tallies[OPENAI_TWO, 32].rate
        ratio = two / remote if remote else 0.0
        verdict(
            "two web processes",
            ratio >= 1.0,
            f"N=32 tokens/s with two web processes on one serve_model {two:.0f} / one {remote:.0f}"
            f" = {ratio:.2f}x (target >= 1.0x)",
        )
    low = min(sessions)
    added = percentile(tallies[OPENAI, low].ttft, 0.5) - percentile(
        tallies[IN_PROCESS, low].ttft, 0.5
    )
    verdict(
        "first token",
        added <= 3.0,
        f"N={low} TTFT p50 through serve_model {percentile(tallies[OPENAI, low].ttft, 0.5):.1f} ms"
        f" - in-process {percentile(tallies[IN_PROCESS, low].ttft, 0.5):.1f} ms = {added:+.1f} ms "
        f"(target <= 3 ms: the hop's own cost, measured without a queue)",
    )
    for n in sessions:
        if n != low:
            loaded = percentile(tallies[OPENAI, n].ttft, 0.5)
            base = percentile(tallies[IN_PROCESS, n].ttft, 0.5)
            print(
                f"      at N={n}: {loaded:.1f} - {base:.1f} = {loaded - base:+.1f} ms (queueing "
                f"behind the batch dominates there)"
            )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return measure_backends(args) if args.backend == "openai" else measure(args)


if __name__ == "__main__":
    sys.exit(main())
