"""Handoff delivery benchmark: an agent's message to a customer, across two web processes vs one.

Two Daphne processes, A and B, share one database and the Redis channel layer, as two web
processes of a deployment do. C customers per arrangement connect to A (`/ws/chat/`) and ask
for a person (`{"type": "handoff"}`); one staff inbox socket on B and one on A (`/ws/inbox/`,
the same staff user) claim them: B the "cross-process" customers, A the "same process" ones.
Then, round after round, each inbox socket sends one `agent_message` to each of its
conversations (at most --in-flight awaiting delivery at a time); a message's latency is the
time from the agent's send to the customer's receipt of `agent_message`, both read from one
clock, since this process runs every client. The two arrangements alternate round by round,
so both are measured under the same load, and the run prints p50 / p95 / max and messages/s
of each and their ratio (cross-process / same process), then checks the database holds every
agent message sent.

No model is loaded: the bot does not answer a handed-off conversation, and neither the
`handoff` frame nor an agent's message needs one (an agent's answer is only retrieved for and
made a training example when it answers a customer's question, and these customers ask none).

    REDIS_URL=redis://127.0.0.1:6379/5 \\
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chatbot_bench \\
        .venv/bin/python bench/handoff.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.serve import percentile  # noqa: E402  (after the path: run as a script)
from bench.web_process import (  # noqa: E402
    free_ports,
    resident_bytes,
    run_manage,
    spawn_daphne,
    stop_process,
    wait_until_listening,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CROSS, SAME = "cross-process", "same process"
TIMEOUT = 30.0  # seconds for any one frame the bench waits for


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Stores: the channel layer is Redis (--redis-url, else REDIS_URL, else "
            f"{DEFAULT_REDIS_URL}; give the bench a database number of its own: every inbox "
            "socket on that Redis hears the bench's conversations). The database: by default a "
            "throw-away one this run creates and drops, on the PostgreSQL server of "
            "--database-url / DATABASE_URL (named after that URL's database, plus _handoff_ "
            "and a random suffix; the named database itself is not touched), or a temporary "
            "SQLite file when no PostgreSQL URL is given. --use-database uses the named "
            "database instead: it is migrated, and afterwards only the rows this run created "
            "(its staff user, sessions and conversations) are deleted; it is never flushed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--customers", type=int, default=10, help="customers C per arrangement (2C in all)"
    )
    parser.add_argument(
        "--messages", type=int, default=30, help="measured agent messages M per conversation"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="agent messages per conversation sent and delivered before measuring (not counted)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=1,
        help="agent messages an inbox socket may have awaiting delivery at once (1: each "
        "message is sent once the previous one arrived: latency without queueing)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        help="Redis of the channel layer",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL server (and name prefix) of the throw-away database, or with "
        "--use-database the database to use; empty: a temporary SQLite file",
    )
    parser.add_argument(
        "--use-database",
        action="store_true",
        help="use --database-url's database itself instead of a throw-away one",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    for name in ("customers", "messages", "in_flight"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.use_database and not args.database_url:
        parser.error("--use-database needs --database-url or DATABASE_URL")
    return args


# --- the database ------------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme.startswith(("postgres", "pgsql"))


class BenchDatabase:
    """The database both web processes share.

    Throw-away (the default): a new PostgreSQL database next to ``url``'s, or a SQLite file in
    a temporary directory; `remove` drops it (only ever a database this object created). Given
    (``use_given``): ``url`` itself, which `remove` leaves alone (the bench deletes its own rows
    before that).
    """

    def __init__(self, url: str, *, use_given: bool, workdir: Path):
        self.given_url = url
        self.created: str | None = None  # name of the PostgreSQL database created here
        if use_given:
            self.url = url
            self.description = f"the given database {urlsplit(url).path.lstrip('/')}"
        elif url and is_postgres(url):
            parts = urlsplit(url)
            prefix = (parts.path.lstrip("/") or "chatbot")[:40]
            name = f"{prefix}_handoff_{secrets.token_hex(4)}"
            self._create_postgres(name)
            self.created = name
            self.url = urlunsplit(parts._replace(path=f"/{name}"))
            self.description = f"throw-away PostgreSQL database {name}"
        else:
            path = workdir / "handoff.sqlite3"
            self.url = f"sqlite:///{path}"
            self.description = f"throw-away SQLite database {path}"

    def _maintenance(self) -> Any:
        """A connection to the server's `postgres` database, to create and drop ours."""
        import dj_database_url
        import psycopg

        config = dj_database_url.parse(self.given_url)
        return psycopg.connect(
            dbname="postgres",
            user=config.get("USER") or None,
            password=config.get("PASSWORD") or None,
            host=config.get("HOST") or None,
            port=config.get("PORT") or None,
            autocommit=True,
        )

    def _create_postgres(self, name: str) -> None:
        from psycopg import sql

        with self._maintenance() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def remove(self) -> None:
        if self.created is None:
            return
        from psycopg import sql

        with self._maintenance() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.created)
                )
            )
        self.created = None


SETUP_SCRIPT = """
import json, secrets
from django.contrib.auth import get_user_model, login
from django.contrib.auth.models import Permission
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest

agent = get_user_model().objects.create_user(
    username="bench-handoff-" + secrets.token_hex(4), first_name="Bench", is_staff=True
)
agent.user_permissions.add(Permission.objects.get(codename="answer_customers"))
request = HttpRequest()
request.session = SessionStore()
login(request, agent, backend="django.contrib.auth.backends.ModelBackend")
request.session.save()
customers = []
for _ in range({count}):
    session = SessionStore()
    session.create()
    customers.append(session.session_key)
print(json.dumps({{"agent_id": agent.pk, "agent_session": request.session.session_key,
                  "customer_sessions": customers}}))
"""

# Counts this run's agent messages; with delete=True then removes every row the run created.
CHECK_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from conversations.models import Conversation, Message

ids = {conversations!r}
stored = Message.objects.filter(conversation_id__in=ids, role=Message.Role.AGENT).count()
if {delete!r}:
    Conversation.objects.filter(pk__in=ids).delete()
    Session.objects.filter(session_key__in={sessions!r}).delete()
    get_user_model().objects.filter(pk={agent_id!r}).delete()
print(json.dumps({{"stored": stored}}))
"""


@dataclass
class Accounts:
    """The staff user and the sessions the bench's clients present as cookies."""

    agent_id: int
    agent_session: str
    customer_sessions: list[str]


def create_accounts(env: dict[str, str], customers: int) -> Accounts:
    output = run_manage(env, "shell", "-c", SETUP_SCRIPT.format(count=customers))
    return Accounts(**json.loads(output.strip().splitlines()[-1]))


def check_and_clean(
    env: dict[str, str], accounts: Accounts, conversations: list[str], *, delete: bool
) -> int:
    """Agent messages stored in ``conversations``; with ``delete`` the run's rows are removed."""
    script = CHECK_SCRIPT.format(
        conversations=conversations,
        delete=delete,
        sessions=[accounts.agent_session, *accounts.customer_sessions],
        agent_id=accounts.agent_id,
    )
    return json.loads(run_manage(env, "shell", "-c", script).strip().splitlines()[-1])["stored"]


# --- the web processes -------------------------------------------------------------------


def web_environment(database_url: str, redis_url: str, var_dir: Path) -> dict[str, str]:
    """Both processes' settings: the bench's stores, nothing from a developer's own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        VAR_DIR=str(var_dir),
        DEBUG="false",
        SECRET_KEY="bench-handoff-not-secret",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        HANDOFF_ENABLED="true",
        # Keep each database thread's connection, as a deployment would.
        DATABASE_CONN_MAX_AGE=os.environ.get("DATABASE_CONN_MAX_AGE", "60"),
        PYTHONPATH=str(ROOT),
    )
    return env


class WebProcesses:
    """Daphne processes A and B on free ports, each logging to ``var_dir``."""

    def __init__(self, env: dict[str, str], var_dir: Path):
        self.ports = dict(zip("AB", free_ports(2), strict=True))
        self.logs = {name: var_dir / f"daphne-{name}.log" for name in self.ports}
        self.processes: dict[str, subprocess.Popen] = {}
        self._files = []
        for name, port in self.ports.items():
            log = self.logs[name].open("w")
            self._files.append(log)
            self.processes[name] = spawn_daphne(port, env, log)
        for name, port in self.ports.items():
            wait_until_listening(self.processes[name], port, self.logs[name])

    def resident_mib(self) -> dict[str, float]:
        return {name: resident_bytes(p.pid) / 2**20 for name, p in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)
        for log in self._files:
            log.close()


# --- the clients -------------------------------------------------------------------------


class Customer:
    """A customer's chat socket: reads every frame, timestamps each agent message's arrival."""

    def __init__(self, socket: Any, conversation: str, pending: dict[str, asyncio.Future]):
        self.socket = socket
        self.conversation = conversation
        self.pending = pending
        self.received = 0
        self.unexpected: list[str] = []
        self.statuses: dict[str, asyncio.Event] = {}
        self.reader = asyncio.create_task(self._read())

    def status(self, value: str) -> asyncio.Event:
        return self.statuses.setdefault(value, asyncio.Event())

    async def _read(self) -> None:
        async for text in self.socket:
            arrived = time.perf_counter()
            frame = json.loads(text)
            if frame["type"] == "agent_message":
                self.received += 1
                waiting = self.pending.pop(frame["text"], None)
                if waiting is None or waiting.done():
                    self.unexpected.append(f"agent_message nobody waits for: {frame['text']!r}")
                else:
                    waiting.set_result(arrived)
            elif frame["type"] == "status":
                self.status(frame["status"]).set()
            else:
                self.unexpected.append(json.dumps(frame)[:200])


class Agent:
    """A staff inbox socket: sends claims and messages, drains the broadcasts, keeps errors."""

    def __init__(self, socket: Any):
        self.socket = socket
        self.errors: list[str] = []
        self.saved = 0
        self.pong: asyncio.Future | None = None
        self.reader = asyncio.create_task(self._read())

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def settle(self) -> None:
        """Return once the server has finished every frame sent before: a consumer handles its
        frames one after the other, so the `pong` comes after the last message's broadcasts."""
        self.pong = asyncio.get_running_loop().create_future()
        await self.send({"type": "ping"})
        await asyncio.wait_for(self.pong, TIMEOUT)

    async def _read(self) -> None:
        async for text in self.socket:
            frame = json.loads(text)
            if frame["type"] == "error":
                self.errors.append(f"{frame['code']}: {frame['detail']}")
            elif frame["type"] == "agent_message.saved":
                self.saved += 1
            elif frame["type"] == "pong" and self.pong is not None and not self.pong.done():
                self.pong.set_result(None)


@dataclass
class Arrangement:
    """One arrangement's customers, its agent, and what was measured."""

    name: str
    agent: Agent
    customers: list[Customer]
    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": len(self.latencies_ms),
            "p50_ms": percentile(self.latencies_ms, 0.5),
            "p95_ms": percentile(self.latencies_ms, 0.95),
            "max_ms": max(self.latencies_ms, default=float("nan")),
            "messages_per_s": len(self.latencies_ms) / self.seconds if self.seconds else 0.0,
            "errors": self.errors[:10],
        }


async def connect(port: int, path: str, cookie: str) -> Any:
    from websockets.asyncio.client import connect as ws_connect

    return await ws_connect(
        f"ws://127.0.0.1:{port}{path}",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": f"sessionid={cookie}"},
        open_timeout=TIMEOUT,
    )


async def open_customer(port: int, session: str, pending: dict[str, asyncio.Future]) -> Customer:
    socket = await connect(port, "/ws/chat/", session)
    hello = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
    if hello.get("type") != "conversation":
        raise SystemExit(f"the chat refused a customer: {hello}")
    return Customer(socket, hello["conversation"], pending)


async def open_agent(port: int, session: str) -> Agent:
    socket = await connect(port, "/ws/inbox/", session)
    hello = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
    if hello.get("type") != "inbox":
        raise SystemExit(f"the inbox refused the bench's staff user: {hello}")
    return Agent(socket)


async def hand_over(arrangement: Arrangement) -> None:
    """Each customer asks for a person; the arrangement's agent claims every conversation."""
    for customer in arrangement.customers:
        await customer.socket.send(json.dumps({"type": "handoff"}))
    await wait_all(c.status("waiting_for_agent") for c in arrangement.customers)
    for customer in arrangement.customers:
        await arrangement.agent.send({"type": "claim", "conversation": customer.conversation})
    await wait_all(c.status("with_agent") for c in arrangement.customers)


async def wait_all(events: Any) -> None:
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), TIMEOUT)


async def send_round(
    arrangement: Arrangement,
    round_number: int,
    in_flight: int,
    pending: dict[str, asyncio.Future],
    *,
    measured: bool,
) -> None:
    """One agent message to each of the arrangement's customers, at most ``in_flight`` at once
    awaiting delivery; with ``measured``, their latencies and the round's time are recorded.

    With one in flight, each message is sent to an idle server: after its delivery the agent's
    socket settles (the consumer also announces the message to the inbox and checks whether
    it answers a question, after the customer has it) and that wait is not counted.
    """
    window = asyncio.Semaphore(in_flight)
    loop = asyncio.get_running_loop()
    settling = 0.0

    async def deliver(customer: Customer, index: int) -> float | None:
        async with window:
            text = f"{arrangement.name} round {round_number} customer {index}"
            arrival = pending[text] = loop.create_future()
            sent = time.perf_counter()
            await arrangement.agent.send(
                {"type": "agent_message", "conversation": customer.conversation, "text": text}
            )
            try:
                latency = (await asyncio.wait_for(arrival, TIMEOUT) - sent) * 1000
            except TimeoutError:
                pending.pop(text, None)
                arrangement.errors.append(f"not delivered within {TIMEOUT:.0f} s: {text!r}")
                return None
            if in_flight == 1:
                nonlocal settling
                settle_started = time.perf_counter()
                await arrangement.agent.settle()
                settling += time.perf_counter() - settle_started
            return latency

    started = time.perf_counter()
    latencies = await asyncio.gather(
        *(deliver(customer, index) for index, customer in enumerate(arrangement.customers))
    )
    if measured:
        arrangement.seconds += time.perf_counter() - started - settling
        arrangement.sent += len(latencies)
        arrangement.latencies_ms += [ms for ms in latencies if ms is not None]


async def measure_delivery(
    ports: dict[str, int],
    accounts: Accounts,
    *,
    customers: int,
    messages: int,
    warmup: int,
    in_flight: int,
) -> dict[str, Arrangement]:
    """Both arrangements on the running processes, round by round; see the module docstring."""
    pending: dict[str, asyncio.Future] = {}
    sessions = iter(accounts.customer_sessions)
    arrangements: dict[str, Arrangement] = {}
    for name, agent_on in ((CROSS, "B"), (SAME, "A")):
        agent = await open_agent(ports[agent_on], accounts.agent_session)
        group = [await open_customer(ports["A"], next(sessions), pending) for _ in range(customers)]
        arrangements[name] = Arrangement(name, agent, group)
    everyone = [c for a in arrangements.values() for c in a.customers]
    agents = [a.agent for a in arrangements.values()]
    try:
        for arrangement in arrangements.values():
            await hand_over(arrangement)
        order = list(arrangements.values())
        for round_number in range(warmup + messages):
            for arrangement in order if round_number % 2 == 0 else order[::-1]:
                await send_round(
                    arrangement, round_number, in_flight, pending, measured=round_number >= warmup
                )
            if any(a.errors for a in order):
                break  # a lost message: report now rather than wait out every later one
        await asyncio.sleep(0.2)  # let a stray duplicate show up before the sockets close
    finally:
        await asyncio.gather(
            *(s.socket.close() for s in [*everyone, *agents]), return_exceptions=True
        )
        await asyncio.gather(*(s.reader for s in [*everyone, *agents]), return_exceptions=True)
    expected = warmup + messages
    for arrangement in arrangements.values():
        arrangement.errors += arrangement.agent.errors
        if arrangement.agent.saved != customers * expected:
            arrangement.errors.append(
                f"agent_message.saved {arrangement.agent.saved} times of {customers * expected}"
            )
        for customer in arrangement.customers:
            arrangement.errors += customer.unexpected
            if customer.received != expected:
                arrangement.errors.append(
                    f"{customer.conversation} received {customer.received} of {expected}"
                )
    return arrangements


# --- the run -----------------------------------------------------------------------------


@dataclass
class Report:
    customers: int
    messages: int
    warmup: int
    in_flight: int
    database: str
    redis_url: str
    results: dict[str, dict[str, Any]]
    ratio: dict[str, float]
    stored: int
    expected_stored: int
    resident_mib: dict[str, float]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.stored == self.expected_stored and all(
            r["delivered"] == r["sent"] == self.customers * self.messages and not r["errors"]
            for r in self.results.values()
        )


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as error:
        raise SystemExit(f"Redis at {url} does not answer ({error}); set REDIS_URL.") from error


def run_benchmark(
    *,
    customers: int,
    messages: int,
    warmup: int,
    in_flight: int = 1,
    redis_url: str,
    database_url: str = "",
    use_database: bool = False,
) -> Report:
    """Set up the stores and two web processes, measure both arrangements, tear it all down."""
    check_redis(redis_url)
    started = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    database = BenchDatabase(database_url, use_given=use_database, workdir=var_dir)
    processes: WebProcesses | None = None
    try:
        env = web_environment(database.url, redis_url, var_dir)
        run_manage(env, "migrate", "--noinput")
        accounts = create_accounts(env, 2 * customers)
        processes = WebProcesses(env, var_dir)
        arrangements = asyncio.run(
            measure_delivery(
                processes.ports,
                accounts,
                customers=customers,
                messages=messages,
                warmup=warmup,
                in_flight=in_flight,
            )
        )
        resident = processes.resident_mib()
        processes.stop()
        conversations = [c.conversation for a in arrangements.values() for c in a.customers]
        stored = check_and_clean(env, accounts, conversations, delete=use_database)
    finally:
        if processes is not None:
            processes.stop()
        database.remove()
        shutil.rmtree(var_dir, ignore_errors=True)
    results = {name: arrangement.summary() for name, arrangement in arrangements.items()}
    cross, same = results[CROSS], results[SAME]
    ratio = {
        key: cross[key] / same[key] if same[key] else float("nan")
        for key in ("p50_ms", "p95_ms", "max_ms", "messages_per_s")
    }
    return Report(
        customers=customers,
        messages=messages,
        warmup=warmup,
        in_flight=in_flight,
        database=database.description,
        redis_url=redis_url,
        results=results,
        ratio=ratio,
        stored=stored,
        expected_stored=2 * customers * (warmup + messages),
        resident_mib=resident,
        seconds=time.perf_counter() - started,
    )


def print_report(report: Report) -> None:
    print(
        f"handoff delivery: {report.customers} customers an arrangement on process A, "
        f"{report.messages} agent messages each (+{report.warmup} warm-up), {report.in_flight} "
        f"in flight per inbox socket; {report.database}; Redis {report.redis_url}"
    )
    print(
        f"{'arrangement':<34} {'sent':>5} {'delivered':>9} {'p50':>8} {'p95':>8} {'max':>8} "
        f"{'msg/s':>7}"
    )
    labels = {CROSS: "agent on B, customers on A (cross)", SAME: "agent on A, customers on A"}
    for name, result in report.results.items():
        print(
            f"{labels[name]:<34} {result['sent']:>5} {result['delivered']:>9} "
            f"{result['p50_ms']:>6.2f}ms {result['p95_ms']:>6.2f}ms {result['max_ms']:>6.2f}ms "
            f"{result['messages_per_s']:>7.0f}"
        )
        for error in result["errors"][:3]:
            print(f"    error: {error}")
    ratio = report.ratio
    print(
        f"{'cross / same':<34} {'':>5} {'':>9} {ratio['p50_ms']:>7.2f}x {ratio['p95_ms']:>7.2f}x "
        f"{ratio['max_ms']:>7.2f}x {ratio['messages_per_s']:>6.2f}x"
    )
    mib = report.resident_mib
    print(
        f"stored agent messages: {report.stored} of {report.expected_stored} sent "
        f"({'ok' if report.stored == report.expected_stored else 'MISMATCH'}); web processes "
        f"resident A {mib['A']:.0f} MiB, B {mib['B']:.0f} MiB (no model loaded); "
        f"{report.seconds:.0f} s in all"
    )
    print("result: every message delivered once" if report.ok else "result: FAILED")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run_benchmark(
        customers=args.customers,
        messages=args.messages,
        warmup=args.warmup,
        in_flight=args.in_flight,
        redis_url=args.redis_url,
        database_url=args.database_url,
        use_database=args.use_database,
    )
    if args.json:
        print(json.dumps({**report.__dict__, "ok": report.ok}, indent=2))
    else:
        print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
