"""Settings come from the environment; production refuses unsafe configurations."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "d = s.DATABASES['default']; "
    "print(json.dumps({'engine': d['ENGINE'], 'host': d.get('HOST'), 'port': str(d.get('PORT')), "
    "'name': d.get('NAME'), 'user': d.get('USER'), 'password': d.get('PASSWORD'), "
    "'charset': d.get('OPTIONS', {}).get('charset'), "
    "'key': s.LLM_API_KEY, 'base_url': s.LLM_BASE_URL, 'model': s.LLM_MODEL, 'embedded': s.EMBEDDED, "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'eager': s.CELERY_TASK_ALWAYS_EAGER}))"
)
CONFIG_VARS = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DEBUG",
    "LLM_API_KEY",
    "LLM_BASE_URL",
    "LLM_MODEL",
    "DEEPSEEK_API_KEY",
    "BASE_URL",
    "MODEL",
    "MYSQL_HOST",
    "MYSQL_PORT",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "MYSQL_DATABASE",
    "MYSQL_CHARSET",
    "MAGICMIRROR_TESTING",
    "DJANGO_SETTINGS_MODULE",
    "OLLAMA_URL",
}


def run(args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    clean.update(DJANGO_SETTINGS_MODULE="magicmirror.settings", MAGICMIRROR_DOTENV="", **env)
    # cwd outside the repository would miss the app; .env is not read when absent.
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def probe(**env):
    result = run(["-c", PROBE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_default_without_configuration():
    config = probe(DEBUG="true")
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["embedded"] is True and config["eager"] is True
    assert config["layer"] == "channels.layers.InMemoryChannelLayer"
    assert config["base_url"] == "https://api.deepseek.com" and config["model"] == "deepseek-chat"


def test_original_names_are_aliases():
    config = probe(
        DEBUG="true",
        DEEPSEEK_API_KEY="sk-original",
        BASE_URL="http://127.0.0.1:11434/v1",
        MODEL="qwen2.5",
        MYSQL_HOST="db.internal",
        MYSQL_PORT="3310",
        MYSQL_USER="mirror",
        MYSQL_PASSWORD="p/w@x:y%40",
        MYSQL_DATABASE="mirror_db",
        REDIS_URL="redis://127.0.0.1:6399/0",
    )
    assert (config["key"], config["base_url"], config["model"]) == (
        "sk-original",
        "http://127.0.0.1:11434/v1",
        "qwen2.5",
    )
    assert config["engine"] == "django.db.backends.mysql"
    assert (config["host"], config["port"], config["user"], config["name"]) == (
        "db.internal",
        "3310",
        "mirror",
        "mirror_db",
    )
    assert config["password"] == "p/w@x:y%40"
    assert config["charset"] == "utf8mb4"
    assert config["layer"] == "channels_redis.core.RedisChannelLayer" and config["eager"] is False


def test_new_names_win_and_database_url_works():
    config = probe(
        DEBUG="true",
        LLM_API_KEY="sk-new",
        DEEPSEEK_API_KEY="sk-old",
        DATABASE_URL="mysql://u:p@h:3306/dbname",
        MYSQL_HOST="ignored",
    )
    assert config["key"] == "sk-new"
    assert (config["host"], config["name"]) == ("h", "dbname")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOWED_HOSTS": "mirror.example.com"}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "x" * 60}, "ALLOWED_HOSTS is required"),
    ],
)
def test_production_refuses_to_start_unconfigured(env, message):
    result = run(["manage.py", "check"], DEBUG="false", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_check_deploy_is_clean_in_production():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="false",
        SECRET_KEY="kV9#pLr2_xQ8!mZt4@wNb6$yHc1^dFg7&jSe3*uAo5(iRl0)vTq-8pWn+zX",
        ALLOWED_HOSTS="mirror.example.com",
        LLM_API_KEY="sk-live",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_missing_llm_key_is_a_warning_not_a_crash():
    # With Ollama detection off nothing can answer: the check says so (and the site still starts).
    result = run(["manage.py", "check"], DEBUG="true", OLLAMA_URL="")
    assert result.returncode == 0, result.stderr
    assert "chat.W001" in result.stdout + result.stderr
    assert "No LLM API key is configured" in result.stdout + result.stderr


def test_missing_llm_key_with_ollama_detection_is_not_a_check_warning():
    # The default OLLAMA_URL may answer once the site runs (looked for at start-up, not in checks).
    result = run(["manage.py", "check"], DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "chat.W001" not in result.stdout + result.stderr


@pytest.mark.services_only
@pytest.mark.django_db
def test_mysql_connection_is_utf8mb4_and_strict(user):
    from chat.models import Conversation, Message

    with connection.cursor() as cursor:
        cursor.execute("SELECT @@character_set_connection, @@sql_mode")
        charset, sql_mode = cursor.fetchone()
    assert charset == "utf8mb4"
    assert "STRICT_TRANS_TABLES" in sql_mode
    text = "你好，世界！🪞✨ 表情 👩‍💻"
    conversation = Conversation.objects.create(owner=user, title="镜子 🪞")
    Message.objects.create(conversation=conversation, role="user", content=text)
    assert Message.objects.get(conversation=conversation).content == text
    assert Conversation.objects.get(pk=conversation.pk).title == "镜子 🪞"
    assert django_settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


IMPORTED_BY_NAME = (
    "CSRF_FAILURE_VIEW",
    "ROOT_URLCONF",
    "ASGI_APPLICATION",
    "REST_FRAMEWORK.DEFAULT_PARSER_CLASSES",
    "REST_FRAMEWORK.DEFAULT_SCHEMA_CLASS",
    "REST_FRAMEWORK.EXCEPTION_HANDLER",
)


@pytest.mark.parametrize("name", IMPORTED_BY_NAME)
def test_each_module_settings_name_imports_first(name):
    # Django and DRF import these by name in whatever order their checks run (a set's order, which
    # differs between machines): each must import as the first thing after setup, with no cycle.
    script = (
        "import django, importlib; django.setup(); from django.conf import settings; "
        "from django.utils.module_loading import import_string; "
        f"value = settings; path = {name!r}.split('.')\n"
        "for part in path: value = value[part] if isinstance(value, dict) else getattr(value, part)\n"
        "for dotted in value if isinstance(value, list) else [value]:\n"
        "    importlib.import_module(dotted) if path == ['ROOT_URLCONF'] else import_string(dotted)\n"
        "print('imported')"
    )
    result = run(["-c", script], DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("imported")
