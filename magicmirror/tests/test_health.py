import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(not django_settings.EMBEDDED, reason="embedded default only")
def test_health_embedded(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["embedded"] is True
    assert body["checks"]["database"]["ok"] and body["checks"]["database"]["vendor"] == "sqlite"
    assert body["checks"]["channel_layer"]["backend"] == "InMemoryChannelLayer"
    assert body["checks"]["workers"] == {"ok": True, "mode": "in-process", "workers": []}


@pytest.mark.services_only
def test_health_with_mysql_redis_and_a_worker(client, celery_worker_process):
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["embedded"] is False
    assert body["checks"]["database"]["vendor"] == "mysql"
    assert body["checks"]["channel_layer"]["backend"] == "RedisChannelLayer"
    assert celery_worker_process in body["checks"]["workers"]["workers"]


def test_health_is_503_when_the_channel_layer_is_down(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["channel_layer"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_health_needs_no_login_and_only_get(client):
    assert client.get("/health").status_code in (200, 503)
    assert client.post("/health").status_code == 405
