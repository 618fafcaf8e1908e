"""A retrain from trigger to promotion, beside the bare training loop on the same examples.

    .venv/bin/python bench/retrain.py [--checkpoint PATH | --quick] [--feedback 200] [--inline]

Sets up a throw-away installation (SQLite database and server-less broker in a temporary
directory, whatever DATABASE_URL / REDIS_URL say), registers the starter checkpoint as the
active version and stores ``--feedback`` rated replies from simulated customers (half thumbs-up
on the corpus answer, half thumbs-down on a brush-off, each from its own browser session). Then,
in one run, one after the other so that they never share the CPU:

1. the bare training loop: the examples the run will use (same split, same batches: feedback
   plus replay, same steps), plain ``torch.optim.Adam`` on the task loss, nothing else;
2. the real thing: ``request_training_run`` (what Retrain now, the command and the schedule
   call) → a Celery worker process (already started and idle, as in production) claims it →
   examples → the regularized update → gate → checkpoint → promotion; timed until the run's
   outcome is in the database. ``--inline`` executes it in this process instead of a worker.

It prints both times, their ratio, and where the rest of the time goes. ``--quick`` builds the
tiny test model instead of using the starter checkpoint (seconds, for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.site import newest_checkpoint, throwaway_site  # noqa: E402  (after the path: run as a script)
from bench.web_process import celery_worker_command  # noqa: E402

BRUSH_OFFS = (
    "Sorry, I cannot help with that. Please call us later.",
    "I don't know, maybe check the website.",
    "That is not something I can answer right now.",
)


def configure_environment(workdir: Path, threads: int) -> dict[str, str]:
    """A self-contained installation: nothing the bench writes touches the configured stores."""
    throwaway_site(
        workdir,
        "bench-retrain-",
        CELERY_BROKER_URL=f"sqla+sqlite:///{workdir / 'broker.sqlite3'}",
        LEARNING_DEVICE="cpu",
        OMP_NUM_THREADS=str(threads),
        LOG_LEVEL="WARNING",
    )
    return dict(os.environ)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="starter checkpoint directory (default: the newest CHECKPOINT_DIR/starter-*)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="build and use the tiny test model instead"
    )
    parser.add_argument(
        "--feedback", type=int, default=200, help="rated replies to learn from (default 200)"
    )
    parser.add_argument(
        "--inline", action="store_true", help="execute the run in this process, not in a worker"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads for both (default: all cores)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyper-parameter for both loops, as with `manage.py retrain --set` "
        "(default: the LEARNING_* settings)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes NAME=VALUE, got {item!r}")
        try:
            args.overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            args.overrides[name] = value
    checkpoint = None if args.quick else (args.checkpoint or newest_checkpoint("starter-*"))
    if not args.quick and (checkpoint is None or not checkpoint.is_dir()):
        parser.error(
            "no starter checkpoint: pass --checkpoint PATH, build one with "
            "`manage.py build_starter_model`, or use --quick"
        )

    # Ctrl-C or a kill still stops the worker and removes the temporary directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    env = configure_environment(workdir, args.threads)
    import django

    django.setup()
    import torch

    torch.set_num_threads(args.threads)
    try:
        return run_bench(args, checkpoint, workdir, env)
    finally:
        if args.keep:
            print(f"(kept {workdir})")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def run_bench(args: argparse.Namespace, checkpoint: Path | None, workdir: Path, env) -> int:
    from django.core.management import call_command

    from learning.models import ModelVersion
    from learning.versions import activate_version, register_version

    call_command("migrate", verbosity=0)
    if checkpoint is None:
        checkpoint, intents = build_tiny(workdir / "checkpoints" / "tiny-starter")
    else:
        intents = None
    version = activate_version(
        register_version("bench-starter", str(checkpoint), ModelVersion.Source.STARTER),
        note="bench/retrain.py",
    )
    rows = store_feedback(args.feedback, intents)
    print(f"model: {checkpoint}  ({parameter_count(checkpoint) / 1e6:.2f} M parameters)")
    print(
        f"feedback: {rows} rated replies from {rows} browser sessions; torch threads {args.threads}"
    )

    bare = bare_training_loop(version, args.overrides)
    print(
        f"bare training loop: {bare['steps']} steps of {bare['batch']} "
        f"({bare['train']} train examples), plain Adam: {bare['seconds']:.2f} s (before)"
    )

    worker = None if args.inline else start_worker(workdir, env)
    try:
        outcome = trigger_and_wait(args.overrides, inline=args.inline)
        if worker is not None:
            print_worker_memory(worker, outcome["run"])
    finally:
        if worker is not None:
            stop_worker(worker)
    run = outcome["run"]
    total = outcome["seconds"]
    # Again after the run (the examples are rebuilt from the same rows, now marked used), so a
    # change in the machine's load during the run shows as a gap between the two.
    after = bare_training_loop(version, args.overrides, include_used=True)["seconds"]
    bare_seconds = (bare["seconds"] + after) / 2
    print(f"bare training loop again: {after:.2f} s (after); mean {bare_seconds:.2f} s")
    if max(bare["seconds"], after) > 1.25 * min(bare["seconds"], after):
        print("  (the two differ by more than 25%: the machine's load changed; ratios are noisy)")
    metrics = run.metrics_after or {}
    print(
        f"trigger → {run.get_status_display().lower()} ({'inline' if args.inline else 'worker'}):"
        f" {total:.2f} s  (run #{run.pk}, {run.total_steps} steps, gate: "
        f"{'passed' if run.gate_passed else 'failed'})"
    )
    hp = run.hyperparameters
    print(
        "  hyper-parameters: "
        + ", ".join(f"{k} {hp[k]}" for k in ("lr", "anchor_strength", "regularizer", "loss"))
        + f", unlikelihood weight {hp.get('unlikelihood_weight')}, epochs {hp['epochs']}"
    )
    if run.error:
        print(f"  error: {run.error.splitlines()[0]}")
        return 1
    queue_wait = (run.started_at - run.created_at).total_seconds()
    train = metrics.get("train_seconds", float("nan"))
    in_worker = metrics.get("seconds_total", float("nan"))
    print(f"  queued → claimed by the worker:        {queue_wait:6.2f} s")
    print(f"  regularized training loop in the run:  {train:6.2f} s")
    print(
        f"  load, examples, gate, checkpoint, DB:  {in_worker - train:6.2f} s"
        f"  (worker total {in_worker:.2f} s)"
    )
    print(f"  broker, task start, final commit, polling: {total - queue_wait - in_worker:6.2f} s")
    for reason in run.gate_reasons:
        print(f"    {reason}")
    print(f"ratio trigger→outcome / bare loop:            {total / bare_seconds:.2f}×")
    print(f"ratio regularized loop in the run / bare loop: {train / bare_seconds:.2f}×")
    return 0


def build_tiny(destination: Path) -> tuple[Path, int]:
    from learning.starter.training import StarterConfig, build_starter_model
    from serving.checkpoints import write_checkpoint

    build = build_starter_model(StarterConfig.tiny())
    metadata = {"name": destination.name, "config": build.config.as_dict()}
    write_checkpoint(build.model, build.tokenizer, destination, metadata)
    return destination, build.config.max_intents


def parameter_count(checkpoint: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as weights:
        for name in weights.keys():
            total += math.prod(weights.get_slice(name).get_shape())
    return total


def store_feedback(count: int, max_intents: int | None) -> int:
    """``count`` rated replies: even ones up on the corpus answer, odd ones down on a brush-off."""
    from bench.learning.rated_replies import store_rated_reply
    from knowledge.demo.corpus import load_corpus

    intents = load_corpus().intents[:max_intents]
    rng = random.Random(0)
    for n in range(count):
        intent = intents[(n // 2) % len(intents)]
        question = rng.choice(intent.questions)
        reply, rating = (intent.answer, 1) if n % 2 == 0 else (rng.choice(BRUSH_OFFS), -1)
        store_rated_reply(question, reply, rating, f"bench-{n}")
    return count


def bare_training_loop(version, overrides: dict, *, include_used: bool = False) -> dict:
    """Plain Adam on the task loss over the run's own batches: the floor a retrain can reach."""
    import torch
    from django.conf import settings

    from conversations.models import Feedback
    from learning.evaluation import encode_pairs
    from learning.examples import build_examples_from_feedback
    from learning.losses import collate, sft_ul_loss, token_logprobs
    from learning.retention import replay_pairs
    from learning.training import Hyperparameters, _replay_per_batch, planned_steps
    from serving.chat_template import padding_id
    from serving.checkpoints import load_checkpoint

    hp = Hyperparameters.from_settings(overrides)
    model, tokenizer = load_checkpoint(version.checkpoint_path)
    pad_id = padding_id(tokenizer)
    examples = build_examples_from_feedback(
        tokenizer,
        feedback=Feedback.objects.all() if include_used else None,
        require_approval=settings.LEARNING_REQUIRE_APPROVAL,
        unreviewed_text=settings.LEARNING_TRAIN_UNREVIEWED_TEXT,
        network_share=settings.LEARNING_MAX_NETWORK_SHARE,
        per_owner_cap=settings.LEARNING_PER_OWNER_CAP,
        max_tokens=hp.max_tokens,
        heldout_share=settings.LEARNING_HELDOUT_SHARE,
        seed=hp.seed,
    )
    replay = encode_pairs(tokenizer, replay_pairs(), max_tokens=hp.max_tokens)
    steps = planned_steps(len(examples.train), hp)
    n_replay = _replay_per_batch(hp) if hp.replay_share > 0 else 0
    n_feedback = max(1, hp.batch_size - n_replay)
    rng = random.Random(hp.seed)
    batches = []
    for step in range(steps):
        start = (step * n_feedback) % len(examples.train)
        chosen = [examples.train[(start + i) % len(examples.train)] for i in range(n_feedback)]
        part = [(e.prompt_ids, e.reply_ids, e.label) for e in chosen]
        batches.append(part + [replay[rng.randrange(len(replay))] for _ in range(n_replay)])

    torch.manual_seed(hp.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=hp.lr, foreach=True)
    model.train()
    started = time.perf_counter()
    for part in batches:
        batch = collate(part, pad_id)
        logps, mask = token_logprobs(model, batch)
        loss = sft_ul_loss(logps, mask, batch.labels, unlikelihood_weight=hp.unlikelihood_weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp.grad_clip, foreach=True)
        optimizer.step()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "steps": steps,
        "batch": n_feedback + n_replay,
        "train": len(examples.train),
    }


def start_worker(workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    """A Celery worker as production runs it; returns once it is ready for tasks."""
    log = workdir / "worker.log"
    process = subprocess.Popen(
        celery_worker_command("default,gpu"),
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, pool child included
    )
    deadline = time.monotonic() + 120
    while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    return process


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def print_worker_memory(process: subprocess.Popen, run) -> None:
    """The worker's resident memory once the run is over: the child that trained is replaced
    when it holds more than CELERY_WORKER_MAX_MEMORY_PER_CHILD, so its memory goes back."""
    from bench.web_process import resident_bytes

    trained = int(run.worker.rpartition(":")[2] or 0)
    deadline = time.monotonic() + 30
    while trained in _children(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # the new child's imports
    children = _children(process.pid)
    sizes = ", ".join(f"{resident_bytes(pid) / 2**20:.0f} MiB" for pid in children)
    print(
        f"worker after the run: main process {resident_bytes(process.pid) / 2**20:.0f} MiB,"
        f" child {sizes or 'none'}; the child that trained"
        f" {'is still there' if trained in children else 'was replaced'}"
    )


def stop_worker(process: subprocess.Popen) -> None:
    group = os.getpgid(process.pid)
    os.killpg(group, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        process.wait(timeout=10)


def trigger_and_wait(overrides: dict, *, inline: bool) -> dict:
    from learning import runs
    from learning.models import TrainingRun

    finished = (
        TrainingRun.Status.SUCCEEDED,
        TrainingRun.Status.REJECTED,
        TrainingRun.Status.FAILED,
    )
    started = time.perf_counter()
    run, _ = runs.request_training_run(
        trigger=TrainingRun.Trigger.COMMAND, overrides=overrides, enqueue=not inline
    )
    if inline:
        runs.execute_training_run(run.pk)
    while (run := TrainingRun.objects.get(pk=run.pk)).status not in finished:
        time.sleep(0.2)  # light polling: the worker needs the CPU
    return {"run": run, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    sys.exit(main())
