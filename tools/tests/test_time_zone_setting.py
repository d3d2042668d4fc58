"""The time zone setting: PATCH /api/settings and the profile page."""

import pytest
from django.urls import reverse

from speakers.models import UserSettings

pytestmark = pytest.mark.django_db


def test_time_zone_is_set_checked_and_cleared(api, user):
    assert api.get("/api/settings").json()["time_zone"] == ""
    response = api.patch("/api/settings", {"time_zone": "Europe/Paris"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["time_zone"] == "Europe/Paris"
    refused = api.patch("/api/settings", {"time_zone": "Mars/Olympus"}, content_type="application/json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_time_zone"
    assert UserSettings.objects.get(user=user).time_zone == "Europe/Paris"
    cleared = api.patch("/api/settings", {"time_zone": ""}, content_type="application/json")
    assert cleared.json()["time_zone"] == ""


def test_the_profile_page_shows_and_edits_it(api, user, settings):
    settings.TIME_ZONE = "UTC"
    UserSettings.objects.create(user=user, time_zone="Asia/Tokyo")
    page = api.get(reverse("speakers:profile")).content.decode()
    assert 'name="time_zone"' in page and 'value="Asia/Tokyo"' in page and 'placeholder="UTC"' in page
