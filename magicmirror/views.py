"""Project-level views: error pages that speak JSON under /api/, the rate-limit answer."""

from django.http import JsonResponse
from django.shortcuts import render

from .api import error_body


def _wants_json(request):
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def ratelimited(request, exception=None):
    message = "Too many attempts; please wait a minute and try again."
    if _wants_json(request):
        return JsonResponse(error_body("rate_limited", message), status=429)
    return render(request, "429.html", {"message": message}, status=429)


def not_found(request, exception=None):
    if _wants_json(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return render(request, "404.html", status=404)


def server_error(request):
    if _wants_json(request):
        return JsonResponse(error_body("server_error", "Something went wrong on our side."), status=500)
    return render(request, "500.html", status=500)


def bad_request(request, exception=None):
    if _wants_json(request):
        return JsonResponse(error_body("bad_request", "Bad request."), status=400)
    return render(request, "400.html", status=400)


def csrf_failure(request, reason=""):
    if _wants_json(request):
        return JsonResponse(
            error_body("csrf_failed", "CSRF check failed: send the csrftoken cookie's value in X-CSRFToken."),
            status=403,
        )
    return render(request, "403_csrf.html", status=403)
