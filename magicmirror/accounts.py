"""Account pages: register, rate-limited log-in. Log-out and password change are Django's own."""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django_ratelimit.decorators import ratelimit
from django_ratelimit.exceptions import Ratelimited

from .views import ratelimited


def login_rate(group, request):
    return settings.RATELIMIT_LOGIN


def too_many_attempts_page(view):
    """Answer a Ratelimited refusal with the 429 page (Ratelimited is a PermissionDenied: without
    this, or django_ratelimit's middleware, it would be a bare 403)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except Ratelimited as exc:
            return ratelimited(request, exc)

    return wrapped


def submitted_username(group, request):
    """The username a log-in attempt names: a form field, or a field of the JSON body on the API's
    token route (a DRF request, whose `data` parses either)."""
    data = request.data if hasattr(request, "data") else request.POST
    value = data.get("username", "") if hasattr(data, "get") else ""
    return value if isinstance(value, str) else ""


def login_throttle(view):
    """RATELIMIT_LOGIN on a log-in's POSTs, per client IP and per submitted username, with the 429
    page (JSON under /api/) when over. The site's form, the admin's and POST /api/auth/token
    (magicmirror/urls.py) share the counters (named groups), so switching doors gives no extra guesses."""
    view = ratelimit(group="login:username", key=submitted_username, rate=login_rate, method="POST", block=True)(view)
    view = ratelimit(group="login:ip", key="ip", rate=login_rate, method="POST", block=True)(view)
    return too_many_attempts_page(view)


@method_decorator(login_throttle, name="dispatch")
class RateLimitedLoginView(LoginView):
    redirect_authenticated_user = True


class RegisterForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


@too_many_attempts_page
@sensitive_post_parameters("password1", "password2")
@ratelimit(key="ip", rate=login_rate, method="POST", block=True)
def register(request):
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome, %(name)s! Say hello to MagicMirror.") % {"name": user.get_username()})
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/register.html", {"form": form})
