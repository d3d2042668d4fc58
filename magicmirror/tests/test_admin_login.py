"""The admin's log-in form and the API's token route are throttled like the site's log-in: per client
IP and per submitted username, one budget for all three (RATELIMIT_LOGIN)."""

from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-9"  # the conftest users' password


@pytest.fixture(autouse=True)
def three_a_minute(settings, monkeypatch):
    settings.RATELIMIT_LOGIN = "3/m"
    # The limiter's clock stands still: a minute boundary mid-test would reset the counts.
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))


@pytest.fixture
def staff(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


def admin_login(client, username, password, ip="10.0.0.1"):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE="en"
    )


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def assert_refused(response):
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()  # the site's 429 page, as on /accounts/login/


def test_the_fourth_wrong_password_is_refused(staff):
    client = Client()
    for _ in range(3):
        response = admin_login(client, "root", "wrong")
        assert response.status_code == 200  # the form again, with its error
    assert_refused(admin_login(client, "root", "wrong"))
    assert_refused(admin_login(client, "root", PASSWORD))  # the right one too, now
    assert not logged_in(client)


def test_the_limit_follows_the_username_across_addresses(staff):
    for n in range(3):
        assert admin_login(Client(), "root", "wrong", ip=f"10.0.1.{n}").status_code == 200
    client = Client()
    assert_refused(admin_login(client, "root", PASSWORD, ip="10.0.2.1"))  # a fresh address, same account
    assert not logged_in(client)


def test_the_limit_follows_the_address_across_usernames(staff):
    client = Client()
    for name in ("admin", "staff", "superuser"):
        assert admin_login(client, name, "wrong").status_code == 200
    assert_refused(admin_login(client, "root", PASSWORD))
    assert not logged_in(client)


def test_the_right_password_works_before_the_limit(staff):
    client = Client()
    for _ in range(2):
        assert admin_login(client, "root", "wrong").status_code == 200
    response = admin_login(client, "root", PASSWORD)
    assert response.status_code == 302
    assert logged_in(client)
    assert client.get(reverse("admin:index")).status_code == 200


def test_the_site_and_admin_forms_share_one_budget(staff):
    """Alternating between the two forms gives an attacker no more guesses."""
    client = Client()
    for _ in range(2):
        response = client.post(reverse("login"), {"username": "root", "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
        assert response.status_code == 200
    assert admin_login(client, "root", "wrong").status_code == 200
    assert_refused(admin_login(client, "root", PASSWORD))
    assert not logged_in(client)


def test_showing_the_form_is_not_counted(staff):
    client = Client()
    for _ in range(5):
        assert client.get(reverse("admin:login"), REMOTE_ADDR="10.0.0.1").status_code == 200
    assert admin_login(client, "root", PASSWORD).status_code == 302


def token(client, username, password, ip="10.0.0.1"):
    return client.post(
        "/api/auth/token", {"username": username, "password": password}, content_type="application/json", REMOTE_ADDR=ip
    )


def test_the_token_route_limits_a_username_across_addresses(staff):
    for n in range(3):
        assert token(Client(), "root", "wrong", ip=f"10.0.3.{n}").status_code == 400
    refused = token(Client(), "root", PASSWORD, ip="10.0.4.1")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


def test_the_token_route_shares_the_log_in_forms_budget(staff):
    client = Client()
    for _ in range(2):
        assert admin_login(client, "root", "wrong").status_code == 200
    assert token(Client(), "root", "wrong", ip="10.0.5.1").status_code == 400
    assert token(Client(), "root", PASSWORD, ip="10.0.5.2").status_code == 429
    assert_refused(admin_login(Client(), "root", PASSWORD, ip="10.0.5.3"))


def test_a_token_body_that_is_not_an_object_is_a_clear_error(staff):
    response = Client().post("/api/auth/token", "[1, 2]", content_type="application/json", REMOTE_ADDR="10.0.6.1")
    assert response.status_code == 400
    assert response.json()["error"]["code"]
