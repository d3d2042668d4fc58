from django.urls import path

from . import api

# Included under /api/ by magicmirror/urls.py.
api_urlpatterns = [
    path("recognize", api.RecognizeApi.as_view(), name="api-recognize"),
]
