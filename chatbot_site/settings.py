"""Settings, read from environment variables only (docs/configuration.md, .env.example).

With no configuration at all the app runs on embedded defaults: SQLite and a server-less
Celery broker under var/, an in-memory channel layer, the demo shop's knowledge base, and
SmolLM2-135M-Instruct tuned on it under var/checkpoints/. Each area reads variables of one
prefix (BUSINESS_, CHAT_, HANDOFF_, KNOWLEDGE_, GENERATION_, LEARNING_), besides Django's own.
"""

from __future__ import annotations

import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatbot_site.env import (
    envbool,
    envchoice,
    envfloat,
    envint,
    envlist,
    envstr,
    is_loopback,
    web_origin,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", True)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me"
SECRET_KEY = envstr("SECRET_KEY", _DEV_SECRET)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
# Where the web process listens (Procfile). Bound to the network, debug pages and the
# development key would serve strangers: refuse (bin/start on a laptop keeps 127.0.0.1).
WEB_HOST = envstr("WEB_HOST", "127.0.0.1")
if not is_loopback(WEB_HOST) and (DEBUG or SECRET_KEY == _DEV_SECRET):
    raise ImproperlyConfigured(
        f"WEB_HOST={WEB_HOST} serves other machines: set DEBUG=false and a SECRET_KEY of your "
        "own first (docs/operations.md), or leave WEB_HOST unset to serve this machine only."
    )

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", False) else None
)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)

DJANGO_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
THIRD_PARTY_APPS = ["channels", "django_celery_beat"]
# In the order of their layers (docs/design.md): an app's admin may extend one listed before it.
LOCAL_APPS = ["knowledge", "serving", "conversations", "learning"]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatbot_site.urls"
ASGI_APPLICATION = "chatbot_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Stores -------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'chatbot.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks, WAL mode.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envstr("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times socket reads out after 5 s by default, exactly the time
            # channels-redis blocks waiting for a message (BZPOPMIN, 5 s): every idle
            # consumer then dies with "Timeout reading from …". Give reads more room.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    # Counters shared by the web processes (conversations/connection_limits.py).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chatbot",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CHECKPOINT_DIR = Path(envstr("CHECKPOINT_DIR", str(VAR_DIR / "checkpoints")))

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL = envstr(
    "CELERY_BROKER_URL", REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"learning.tasks.train_*": {"queue": "gpu"}}
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 3600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 3300, minimum=1)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A training run leaves its worker child holding gigabytes (the model, optimizer state, the
# allocator's arenas); past this resident size (KiB) the child is replaced once its task ends,
# and the memory goes back to the system. 0: never.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = (
    envint("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 2_000_000, minimum=0) or None
)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth, i18n, static -------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing directory
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}

# --- The first admin account (`manage.py ensure_admin`, run by bin/start) -------------
# Without a password one is generated and printed once.
ADMIN_USERNAME = envstr("ADMIN_USERNAME", "admin")
ADMIN_EMAIL = envstr("ADMIN_EMAIL", "")
ADMIN_PASSWORD = envstr("ADMIN_PASSWORD", "")

# --- Business profile (knowledge/profile.py) -------------------------------------
# Who the bot speaks for. Staff edit the profile in the admin; these fill the fields it leaves
# blank (and a blank one here, a neutral text). The demo's knowledge base brings its own.
BUSINESS_NAME = envstr("BUSINESS_NAME", "")
# What the bot calls itself in the chat and the widget.
BUSINESS_ASSISTANT_NAME = envstr("BUSINESS_ASSISTANT_NAME", "")
# How customers reach a person: named in declines (and when no agent is on duty).
BUSINESS_CONTACT = envstr("BUSINESS_CONTACT", "", old="SUPPORT_CONTACT")
# Shown to a customer waiting for a person when no agent has the inbox open.
BUSINESS_HOURS = envstr("BUSINESS_HOURS", "", old="SUPPORT_HOURS")
# The chat's first message.
BUSINESS_GREETING = envstr("BUSINESS_GREETING", "")
# What the bot helps with, as declines name it; blank: the knowledge base's topics.
BUSINESS_HELPS_WITH = envstr("BUSINESS_HELPS_WITH", "")
# The brand colour of the chat page and the widget (#rrggbb).
BUSINESS_COLOUR = envstr("BUSINESS_COLOUR", "")

# --- Chat (websocket limits, prompt history, the widget) -------------------------------
CHAT_MAX_MESSAGE_CHARS = envint("CHAT_MAX_MESSAGE_CHARS", 2000, minimum=1)
CHAT_MAX_FRAME_BYTES = envint("CHAT_MAX_FRAME_BYTES", 16384, minimum=256)
CHAT_MAX_COMMENT_CHARS = envint("CHAT_MAX_COMMENT_CHARS", 2000, minimum=1)
CHAT_MESSAGES_PER_MINUTE = envint("CHAT_MESSAGES_PER_MINUTE", 20, minimum=1)
# The same for all the sessions of one network together (conversations/network.py).
CHAT_MESSAGES_PER_MINUTE_PER_NETWORK = envint(
    "CHAT_MESSAGES_PER_MINUTE_PER_NETWORK", 120, minimum=1
)
# New chat sockets a minute from one network, across web processes (connection_limits.py).
CHAT_CONNECTIONS_PER_MINUTE_PER_NETWORK = envint(
    "CHAT_CONNECTIONS_PER_MINUTE_PER_NETWORK", 60, minimum=1
)
CHAT_FEEDBACK_PER_MINUTE = envint("CHAT_FEEDBACK_PER_MINUTE", 60, minimum=1)
CHAT_MAX_CONVERSATION_MESSAGES = envint("CHAT_MAX_CONVERSATION_MESSAGES", 200, minimum=2)
# Conversations nobody wrote in for this many days are deleted, with their ratings (daily;
# conversations/privacy.py); 0 keeps them for ever.
CHAT_RETENTION_DAYS = envint("CHAT_RETENTION_DAYS", 365, minimum=0)
# Earlier turns a grounded prompt keeps before the customer's last message (0: none). SmolLM2-135M
# tuned on single questions copies its earlier replies' wording when shown them.
CHAT_HISTORY_TURNS = envint("CHAT_HISTORY_TURNS", 0, minimum=0, old="GROUNDED_HISTORY_TURNS")
# Other sites that may embed the chat widget (docs/widget.md), as origins (https://shop.example.com):
# they may frame /widget/, read /widget/config.json and open the chat socket. Empty: only this
# site itself (the chat socket also admits ALLOWED_HOSTS, as before).
CHAT_ALLOWED_ORIGINS = envlist("CHAT_ALLOWED_ORIGINS", [], item=web_origin)

# --- Handoff to a person (docs/handoff.md) -------------------------------------------
# On: a customer who asks for a person, or whom the bot declined twice in a row, waits for an
# agent in the staff inbox (/inbox/) and the bot stays silent. Off: the bot's decline only
# names BUSINESS_CONTACT.
HANDOFF_ENABLED = envbool("HANDOFF_ENABLED", True)
HANDOFF_AFTER_DECLINES = envint("HANDOFF_AFTER_DECLINES", 2, minimum=1)
# An agent counts as on duty while their inbox page pinged within this many seconds.
HANDOFF_AGENT_PRESENCE_SECONDS = envint(
    "HANDOFF_AGENT_PRESENCE_SECONDS", 90, minimum=5, old="AGENT_PRESENCE_SECONDS"
)
# A claimed conversation whose agent has had no inbox open for this many minutes goes back to
# the queue (checked every five minutes).
HANDOFF_CLAIM_RELEASE_MINUTES = envint("HANDOFF_CLAIM_RELEASE_MINUTES", 30, minimum=1)
# Conversations of one network that may wait for a person at once; more are given the contact.
# Conversations the inbox sends at a time (the rest on request, a page at a time).
HANDOFF_INBOX_PAGE_SIZE = envint("HANDOFF_INBOX_PAGE_SIZE", 50, minimum=1)
HANDOFF_MAX_WAITING_PER_NETWORK = envint("HANDOFF_MAX_WAITING_PER_NETWORK", 3, minimum=1)

# --- Knowledge base and retrieval (docs/knowledge-base.md) --------------------------
# "" = all-MiniLM-L6-v2 from its wheel; else a local directory with a sentence encoder.
KNOWLEDGE_ENCODER = envstr("KNOWLEDGE_ENCODER", "")
# One article: SmolLM2-135M answers right more often from the best article alone than when it
# must choose among three (bench/answers.py: 81.6% against 64.8% of held-out paraphrases).
KNOWLEDGE_TOP_K = envint("KNOWLEDGE_TOP_K", 1, minimum=1)
# Articles rank by a soft maximum over their vectors' cosines (log-sum-exp at this temperature):
# several close example questions outrank one slightly closer; 0 ranks by the nearest vector
# alone. The score shown and compared with KNOWLEDGE_MIN_SCORE stays the nearest vector's.
KNOWLEDGE_RANK_TEMPERATURE = envfloat("KNOWLEDGE_RANK_TEMPERATURE", 0.1, minimum=0.0)
# Below this cosine similarity of the best article the bot declines instead of guessing, until
# the knowledge base is calibrated: then its own calibrated threshold (knowledge/calibration.py,
# after every import and at the first start), or staff's override in the business profile.
KNOWLEDGE_MIN_SCORE = envfloat("KNOWLEDGE_MIN_SCORE", 0.575, minimum=-1.0, maximum=1.0)
KNOWLEDGE_POLL_SECONDS = envfloat("KNOWLEDGE_POLL_SECONDS", 5.0, minimum=0.0)
# A generated reply that loops, declines in its own words or says what its articles do not
# (knowledge/faithfulness.py) is replaced by: "article" (the best article's text), "decline"
# (the rules' decline), or "off" (sent as written).
KNOWLEDGE_GUARD_FALLBACK = envchoice(
    "KNOWLEDGE_GUARD_FALLBACK", "article", ("article", "decline", "off")
)

# --- Generation: the engine and the backend (docs/serving.md) -------------------------
GENERATION_MAX_NEW_TOKENS = envint("GENERATION_MAX_NEW_TOKENS", 96, minimum=1)
GENERATION_MAX_CONTEXT_TOKENS = envint("GENERATION_MAX_CONTEXT_TOKENS", 384, minimum=16)
GENERATION_TEMPERATURE = envfloat("GENERATION_TEMPERATURE", 0.0, minimum=0.0)
GENERATION_SEED = envint("GENERATION_SEED", 0)
# How often a web process looks up the active version (promotions reach it within this time).
GENERATION_POLL_SECONDS = envfloat(
    "GENERATION_POLL_SECONDS", 2.0, minimum=0.0, old="ENGINE_POLL_SECONDS"
)
GENERATION_ENGINE_DEVICE = envchoice(
    "GENERATION_ENGINE_DEVICE", "auto", ("auto", "cpu", "cuda"), old="ENGINE_DEVICE"
)
GENERATION_ENGINE_THREADS = envint("GENERATION_ENGINE_THREADS", 1, minimum=0, old="ENGINE_THREADS")
GENERATION_ENGINE_MAX_BATCH = envint(
    "GENERATION_ENGINE_MAX_BATCH", 32, minimum=1, old="ENGINE_MAX_BATCH"
)
GENERATION_ENGINE_BATCH_WAIT_MS = envfloat(
    "GENERATION_ENGINE_BATCH_WAIT_MS", 0.0, minimum=0.0, old="ENGINE_BATCH_WAIT_MS"
)
GENERATION_ENGINE_MAX_QUEUE = envint(
    "GENERATION_ENGINE_MAX_QUEUE", 256, minimum=1, old="ENGINE_MAX_QUEUE"
)
# in_process: each web process runs the engine itself. openai: replies stream from an
# OpenAI-compatible server (`manage.py serve_model`, or vLLM) at GENERATION_SERVER_URL.
GENERATION_BACKEND = envchoice("GENERATION_BACKEND", "in_process", ("in_process", "openai"))
GENERATION_SERVER_URL = envstr("GENERATION_SERVER_URL", "http://127.0.0.1:8001/v1").rstrip("/")
GENERATION_SERVER_API_KEY = envstr("GENERATION_SERVER_API_KEY", "")
# Seconds to connect to the server, and at most between two streamed chunks.
GENERATION_SERVER_CONNECT_TIMEOUT = envfloat("GENERATION_SERVER_CONNECT_TIMEOUT", 2.0, minimum=0.01)
GENERATION_SERVER_READ_TIMEOUT = envfloat("GENERATION_SERVER_READ_TIMEOUT", 30.0, minimum=0.01)
# Replies one web process streams from the server at once (0: no cap); more are answered busy.
GENERATION_SERVER_MAX_CONCURRENT = envint("GENERATION_SERVER_MAX_CONCURRENT", 32, minimum=0)
# vLLM: load a promoted LoRA adapter at runtime (POST /v1/load_lora_adapter) and unload the
# retired one GENERATION_SERVER_UNLOAD_DELAY seconds later, once its streams have ended.
GENERATION_SERVER_LORA_RUNTIME = envbool("GENERATION_SERVER_LORA_RUNTIME", False)
GENERATION_SERVER_UNLOAD_DELAY = envfloat("GENERATION_SERVER_UNLOAD_DELAY", 120.0, minimum=0.0)
# Where `manage.py serve_model` listens (the Procfile's `model` process).
GENERATION_SERVE_HOST = envstr("GENERATION_SERVE_HOST", "127.0.0.1", old="SERVE_MODEL_HOST")
GENERATION_SERVE_PORT = envint(
    "GENERATION_SERVE_PORT", 8001, minimum=1, maximum=65535, old="SERVE_MODEL_PORT"
)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a live Daphne server in tests shares the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-chatbot.sqlite3")}

# --- Learning loop (docs/learning-loop.md) --------------------------------------------
# The base the deployment starts from: smollm2 (the pretrained default, tuned on the knowledge
# base on a first start), starter (trained from scratch), or a hub id / local path.
LEARNING_BASE_MODEL = envstr("LEARNING_BASE_MODEL", "smollm2", old="CHATBOT_BASE_MODEL")
# After an import changed the knowledge base, queue a run that tunes the pretrained base for it
# (learning/knowledge_tuning.py: promoted only when it answers held-out questions as well).
LEARNING_TUNE_AFTER_IMPORT = envbool("LEARNING_TUNE_AFTER_IMPORT", True)
# α: the step size of the task step and of the pull toward θ₀ (5e-5 suits the default base,
# SmolLM2-135M; the from-scratch starter model learns with 1e-3 and 6 epochs:
# docs/learning-loop.md).
LEARNING_RATE = envfloat("LEARNING_RATE", 5e-5, minimum=0.0)
# λ: the strength of the pull toward θ₀ (0 = plain fine-tuning).
LEARNING_ANCHOR_STRENGTH = envfloat("LEARNING_ANCHOR_STRENGTH", 300.0, minimum=0.0)
# Ω's kind: l2sp (wᵢ = 1) or ewc (wᵢ = diagonal Fisher on retention data).
LEARNING_REGULARIZER = envchoice("LEARNING_REGULARIZER", "ewc", ("l2sp", "ewc"))
# Whether biases and norm weights (1-D parameters) are pulled toward θ₀ too.
LEARNING_PULL_1D_PARAMS = envbool("LEARNING_PULL_1D_PARAMS", True)
# θ₀: "base" (the deployment's base model, no drift across rounds) or "parent".
LEARNING_ANCHOR = envchoice("LEARNING_ANCHOR", "base", ("base", "parent"))
# Task loss: sft_ul (likelihood + unlikelihood) or kto.
LEARNING_LOSS = envchoice("LEARNING_LOSS", "sft_ul", ("sft_ul", "kto"))
# Weight of the unlikelihood term on thumbs-down replies (sft_ul).
LEARNING_UNLIKELIHOOD_WEIGHT = envfloat("LEARNING_UNLIKELIHOOD_WEIGHT", 0.0, minimum=0.0)
LEARNING_KTO_BETA = envfloat("LEARNING_KTO_BETA", 0.1, minimum=0.0)
LEARNING_EPOCHS = envint("LEARNING_EPOCHS", 2, minimum=1)
LEARNING_MAX_STEPS = envint("LEARNING_MAX_STEPS", 0, minimum=0)
LEARNING_BATCH_SIZE = envint("LEARNING_BATCH_SIZE", 8, minimum=1)
# Share of each batch taken from retention data of the base corpus (0 = no replay).
LEARNING_REPLAY_SHARE = envfloat("LEARNING_REPLAY_SHARE", 0.5, minimum=0.0, maximum=1.0)
# Share of θ₀ averaged into the weights after training (0: off).
LEARNING_AVERAGE_WITH_ANCHOR = envfloat(
    "LEARNING_AVERAGE_WITH_ANCHOR", 0.0, minimum=0.0, maximum=1.0
)
# EWC: the anchor's Fisher is estimated on at most this many replay examples (one backward pass
# each; an evenly spaced sample of them), once per anchor.
LEARNING_FISHER_MAX_EXAMPLES = envint("LEARNING_FISHER_MAX_EXAMPLES", 128, minimum=1)
LEARNING_GRAD_CLIP = envfloat("LEARNING_GRAD_CLIP", 1.0, minimum=0.0)
LEARNING_SEED = envint("LEARNING_SEED", 0)
LEARNING_MAX_TOKENS = envint("LEARNING_MAX_TOKENS", 256, minimum=16)
# LoRA adapters for large bases: the rank of each adapter (0 = fine-tune every weight). With
# LoRA a run trains only the adapter on the frozen base, and Ω pulls the adapter's delta to 0.
LEARNING_LORA_RANK = envint("LEARNING_LORA_RANK", 0, minimum=0)
LEARNING_LORA_ALPHA = envfloat("LEARNING_LORA_ALPHA", 16.0, minimum=0.0)
LEARNING_LORA_DROPOUT = envfloat("LEARNING_LORA_DROPOUT", 0.0, minimum=0.0)
# The layers that get an adapter: "all-linear", or module names separated by commas.
LEARNING_LORA_TARGETS = envstr("LEARNING_LORA_TARGETS", "all-linear")
# bf16 autocast in training: auto (on CUDA and on CPUs with AMX-BF16 or AVX512-BF16), bf16, off.
LEARNING_AUTOCAST = envchoice("LEARNING_AUTOCAST", "auto", ("auto", "bf16", "off"))
# Feedback must be approved by staff before it is used.
LEARNING_REQUIRE_APPROVAL = envbool("LEARNING_REQUIRE_APPROVAL", False)
# A customer's correction (text that would become a training target) is learned only once staff
# approve its rating; true learns corrections as typed: anyone who can open the chat can then
# teach the bot a sentence that passes the gate (docs/learning-loop.md).
LEARNING_TRAIN_UNREVIEWED_TEXT = envbool("LEARNING_TRAIN_UNREVIEWED_TEXT", False)
# Personal data is redacted from what customers and agents wrote before it becomes an example or
# an export (conversations/redaction.py): e-mails, IBANs, card numbers, phone numbers (national
# ones in this region's format, e.g. GB; empty: international ones only), and what this regular
# expression matches (e.g. order numbers: ORD-\d{6}).
LEARNING_PHONE_REGION = envstr("LEARNING_PHONE_REGION", "").upper()
LEARNING_REDACT_PATTERN = envstr("LEARNING_REDACT_PATTERN", "")
try:
    re.compile(LEARNING_REDACT_PATTERN)
except re.error as error:
    raise ImproperlyConfigured(
        f"LEARNING_REDACT_PATTERN is not a regular expression: {error}"
    ) from error
# Most examples one browser session or user contributes to one run.
LEARNING_PER_OWNER_CAP = envint("LEARNING_PER_OWNER_CAP", 20, minimum=1)
# Most of a run's feedback rows one network's sessions give together (conversations/network.py).
LEARNING_MAX_NETWORK_SHARE = envfloat("LEARNING_MAX_NETWORK_SHARE", 0.2, minimum=0.0, maximum=1.0)
LEARNING_HELDOUT_SHARE = envfloat("LEARNING_HELDOUT_SHARE", 0.2, minimum=0.0, maximum=1.0)
# Checkpoints kept (learning/checkpoint_pruning.py): the newest rejected candidates, for at
# most this many hours; the newest superseded versions, for a rollback; and a budget for all of
# CHECKPOINT_DIR in GB (0: none) that deletes the oldest of those first.
LEARNING_KEEP_REJECTED = envint("LEARNING_KEEP_REJECTED", 2, minimum=0)
LEARNING_KEEP_REJECTED_HOURS = envfloat("LEARNING_KEEP_REJECTED_HOURS", 72.0, minimum=0.0)
LEARNING_KEEP_RETIRED = envint("LEARNING_KEEP_RETIRED", 3, minimum=0)
LEARNING_CHECKPOINT_BUDGET_GB = envfloat("LEARNING_CHECKPOINT_BUDGET_GB", 0.0, minimum=0.0)
# The periodic check queues a run when at least this much usable feedback is new.
LEARNING_MIN_NEW_FEEDBACK = envint("LEARNING_MIN_NEW_FEEDBACK", 20, minimum=1)
# Golden cases the gate draws from the knowledge base itself (for a base tuned to answer from
# articles): this many active articles, each its first example question → its text and numbers.
LEARNING_GOLDEN_FROM_KNOWLEDGE = envint("LEARNING_GOLDEN_FROM_KNOWLEDGE", 16, minimum=0)
# Gate: retention perplexity may rise by at most this share over the parent's.
LEARNING_MAX_PERPLEXITY_RISE = envfloat("LEARNING_MAX_PERPLEXITY_RISE", 0.05, minimum=0.0)
# Corpus file (starter format) the gate and replay use as "what the model must retain";
# empty: the starter corpus.
LEARNING_RETENTION_CORPUS = envstr("LEARNING_RETENTION_CORPUS", "")
# A running run with no progress for this long is taken as dead (its worker was killed).
LEARNING_STALE_RUN_MINUTES = envint("LEARNING_STALE_RUN_MINUTES", 15, minimum=1)
# A run whose worker died this many times (redelivered each time) is marked failed instead.
LEARNING_MAX_ATTEMPTS = envint("LEARNING_MAX_ATTEMPTS", 3, minimum=1)
LEARNING_DEVICE = envchoice("LEARNING_DEVICE", "auto", ("auto", "cpu", "cuda"))
