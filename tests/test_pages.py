"""The server-rendered pages: accounts, chat, profile, error pages, language switch, static files."""

import posixpath
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse
from django.utils import translation

from chat.models import Conversation
from speakers.models import Speaker, UserSettings

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-9"  # the conftest users' password
NEW_PASSWORD = "Lantern-orbit-2046"


@pytest.fixture
def client():
    """A browser that prefers English, so assertions can read the templates' source strings
    whatever the default language (zh-hans) and its catalog say."""
    return Client(HTTP_ACCEPT_LANGUAGE="en")


def page(response):
    return response.content.decode()


def logged_in(client):
    return "_auth_user_id" in client.session


# --- Register ------------------------------------------------------------------------------------


def test_register_creates_an_argon2_user_logs_in_and_redirects_to_chat(client):
    response = client.post(
        reverse("register"), {"username": "newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    user = get_user_model().objects.get(username="newbie")
    assert user.password.startswith("argon2")
    assert client.session["_auth_user_id"] == str(user.pk)

    chat = client.get(response["Location"])
    assert chat.status_code == 200
    assert chat.wsgi_request.user == user
    assert "Welcome, newbie!" in page(chat)  # the flash message


def test_register_with_mismatched_passwords_shows_the_error(client):
    response = client.post(
        reverse("register"), {"username": "newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"}
    )
    assert response.status_code == 200
    html = page(response)
    errors = response.context["form"].errors["password2"]
    assert errors
    for error in errors:
        assert str(error) in html
    assert 'id="id_password2_error"' in html
    assert 'aria-invalid="true"' in html
    assert 'role="alert"' in html
    assert not get_user_model().objects.filter(username="newbie").exists()
    assert not logged_in(client)


def test_register_page_sends_logged_in_users_to_chat(client, user):
    client.force_login(user)
    response = client.get(reverse("register"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")


# --- Log in / log out ----------------------------------------------------------------------------


def test_login_page_renders_its_form(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = page(response)
    assert 'name="username"' in html and 'name="password"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert reverse("register") in html


def test_login_works_and_redirects_to_chat(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_follows_next(client, user):
    profile = reverse("speakers:profile")
    response = client.post(
        f"{reverse('login')}?next={profile}", {"username": "alice", "password": PASSWORD, "next": profile}
    )
    assert response.status_code == 302
    assert response["Location"] == profile


def test_wrong_password_shows_an_error(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "not-the-password"})
    assert response.status_code == 200
    errors = response.context["form"].non_field_errors()
    assert errors
    html = page(response)
    assert 'class="alert alert-error" role="alert"' in html
    assert str(errors[0]) in html
    assert not logged_in(client)


def test_login_is_rate_limited(client, user, settings):
    settings.RATELIMIT_LOGIN = "3/h"  # an hour window: a minute boundary mid-test would reset the count
    for _ in range(3):
        response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many attempts" in page(response)
    assert not logged_in(client)


def test_logout_by_post_ends_the_session(client, user):
    client.force_login(user)
    assert client.get(reverse("chat:home")).status_code == 200
    assert client.get(reverse("logout")).status_code == 405  # Django 5: POST only
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert not logged_in(client)
    assert client.get(reverse("chat:home")).status_code == 302


def test_the_header_offers_a_logout_form_and_admin_only_to_staff(client, user, make_user):
    client.force_login(user)
    html = page(client.get(reverse("chat:home")))
    assert re.search(rf'<form[^>]*method="post"[^>]*action="{reverse("logout")}"', html)
    assert reverse("admin:index") not in html

    staff = make_user("staffer", is_staff=True)
    client.force_login(staff)
    assert reverse("admin:index") in page(client.get(reverse("chat:home")))


# --- Login required ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chat:home", "speakers:profile", "password_change"])
def test_pages_send_anonymous_users_to_login(client, name):
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert f"next={url}" in response["Location"]


# --- Chat page -----------------------------------------------------------------------------------


def test_chat_page_lists_only_my_conversations_newest_first(client, user, other_user):
    older = Conversation.objects.create(owner=user, title="Trip to Hangzhou")
    newer = Conversation.objects.create(owner=user, title="Recipe ideas")
    Conversation.objects.create(owner=other_user, title="Mallory's secret plan")
    client.force_login(user)
    response = client.get(reverse("chat:home"))
    assert response.status_code == 200
    html = page(response)
    assert "Trip to Hangzhou" in html and "Recipe ideas" in html
    assert "secret plan" not in html
    assert html.index(f'data-id="{newer.pk}"') < html.index(f'data-id="{older.pk}"')
    assert static("js/chat.js") in html and 'type="module"' in html
    assert 'id="message-input"' in html and 'id="status"' in html and 'aria-live="polite"' in html
    assert "csrftoken" in response.cookies  # chat.js reads it for X-CSRFToken


def test_chat_page_escapes_titles(client, user):
    Conversation.objects.create(owner=user, title="<script>alert(1)</script>")
    client.force_login(user)
    html = page(client.get(reverse("chat:home")))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_chat_page_voice_picker_shows_my_speakers_only(client, user, other_user):
    mine = Speaker.objects.create(owner=user, slot=1, name="Grandma", prompt_text="你好", audio="speakers/a.wav")
    Speaker.objects.create(owner=other_user, slot=1, name="Impostor", prompt_text="hi", audio="speakers/b.wav")
    UserSettings.objects.create(user=user, current_speaker=mine)
    client.force_login(user)
    html = page(client.get(reverse("chat:home")))
    assert f'<option value="{mine.pk}" selected>Grandma</option>' in html
    assert "Impostor" not in html


# --- Profile page --------------------------------------------------------------------------------


def test_profile_lists_only_my_speakers_and_the_count(client, user, other_user):
    mine = Speaker.objects.create(
        owner=user, slot=1, name="Grandma", prompt_text="今天天气很好。", audio="speakers/a.wav"
    )
    Speaker.objects.create(owner=other_user, slot=1, name="Impostor", prompt_text="hi", audio="speakers/b.wav")
    client.force_login(user)
    response = client.get(reverse("speakers:profile"))
    assert response.status_code == 200
    html = page(response)
    assert "Grandma" in html and "今天天气很好。" in html
    assert "Impostor" not in html
    assert f'src="/api/speakers/{mine.pk}/audio"' in html
    assert "1 of 3" in html
    assert re.search(r'<fieldset id="speaker-fieldset">', html)  # adding is allowed
    assert "alice" in html  # account info
    assert reverse("password_change") in html
    assert static("js/profile.js") in html
    assert "csrftoken" in response.cookies


def test_profile_disables_adding_at_the_limit(client, user):
    for slot in range(1, settings.SPEAKERS_PER_USER + 1):
        Speaker.objects.create(
            owner=user, slot=slot, name=f"Voice {slot}", prompt_text="hi", audio=f"speakers/{slot}.wav"
        )
    client.force_login(user)
    html = page(client.get(reverse("speakers:profile")))
    assert "3 of 3" in html
    assert '<fieldset id="speaker-fieldset" disabled>' in html
    assert re.search(r'<p class="alert alert-info" id="speaker-limit-note">', html)  # not hidden


def test_profile_shows_the_saved_preferences(client, user):
    UserSettings.objects.create(user=user, input_mode="handsfree", voice_output=False)
    client.force_login(user)
    html = page(client.get(reverse("speakers:profile")))
    assert '<input type="radio" name="input_mode" value="handsfree" checked>' in html
    assert '<input type="radio" name="input_mode" value="ptt">' in html
    assert '<input type="checkbox" name="voice_output">' in html


# --- Password change -----------------------------------------------------------------------------


def test_password_change_works_and_keeps_the_session(client, user):
    client.force_login(user)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("password_change_done")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert user.password.startswith("argon2")
    done = client.get(response["Location"])
    assert done.status_code == 200
    assert "Password changed" in page(done)


def test_password_change_with_a_wrong_old_password_shows_the_error(client, user):
    client.force_login(user)
    response = client.post(
        reverse("password_change"),
        {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["old_password"]
    assert 'id="id_old_password_error"' in page(response)
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


# --- Language switch -----------------------------------------------------------------------------


def test_language_switch_to_english_and_back():
    client = Client()  # no Accept-Language: the default language, zh-hans
    login_url = reverse("login")
    chinese = page(client.get(login_url))
    assert '<html lang="zh-hans">' in chinese
    assert "用户名" in chinese  # Django's own translation of the "Username" label

    response = client.post(reverse("set_language"), {"language": "en", "next": login_url})
    assert response.status_code == 302
    assert response["Location"] == login_url
    english = page(client.get(login_url))
    assert '<html lang="en">' in english
    assert "Username" in english and "用户名" not in english
    assert re.search(r'value="en" lang="en"[^>]*aria-pressed="true"', english)
    assert re.search(r'value="zh-hans" lang="zh-hans"[^>]*aria-pressed="false"', english)

    client.post(reverse("set_language"), {"language": "zh-hans", "next": login_url})
    assert "用户名" in page(client.get(login_url))


# --- Error pages ---------------------------------------------------------------------------------


def test_404_page(client):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = page(response)
    assert "Page not found" in html
    assert static("css/app.css") in html


def test_500_page_renders_without_a_request():
    with translation.override("en"):
        html = render_to_string("500.html")
    assert "500" in html and "Something went wrong on our side" in html
    assert "{%" not in html and "static/" not in html  # self-contained: no static files needed


def test_400_page_renders(rf):
    from magicmirror.views import bad_request

    with translation.override("en"):
        response = bad_request(rf.get("/"))
    assert response.status_code == 400
    assert "Bad request" in page(response)


def test_csrf_failure_page(user):
    strict = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    response = strict.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert "This form has expired" in page(response)


# --- Static files --------------------------------------------------------------------------------

JS_IMPORT = re.compile(r'^import .* from "(\.{1,2}/[^"]+)";$', re.MULTILINE)
JS_URL = re.compile(r'new URL\("(\.{1,2}/[^"]+)", import\.meta\.url\)')  # e.g. the AudioWorklet module


def test_static_files_referenced_by_the_pages_exist_and_are_served(client, user):
    client.force_login(user)
    prefix = static("")
    static_ref = re.compile(rf'(?:src|href)="({re.escape(prefix)}[^"]+)"')
    referenced = set()
    for url in (reverse("chat:home"), reverse("speakers:profile"), reverse("login")):
        referenced.update(static_ref.findall(page(client.get(url))))
    assert {static("css/app.css"), static("js/chat.js"), static("js/profile.js")} <= referenced

    # The modules those pages load import others by relative path: follow them too.
    pending = [ref for ref in referenced if ref.endswith(".js")]
    while pending:
        module = pending.pop()[len(prefix) :]
        source = finders.find(module)
        assert source, f"a referenced module is missing: {module}"
        text = Path(source).read_text()
        for name in JS_IMPORT.findall(text) + JS_URL.findall(text):
            url = static(posixpath.normpath(posixpath.join(posixpath.dirname(module), name)))
            if url not in referenced:
                referenced.add(url)
                pending.append(url)
    assert static("js/sse.js") in referenced and static("js/api.js") in referenced
    assert static("js/voice/capture-worklet.js") in referenced and static("js/voice/recorder.js") in referenced

    for url in sorted(referenced):
        assert finders.find(url[len(prefix) :]), url
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body.strip(), url
