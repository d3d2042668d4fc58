"""Account pages: register, rate-limited log-in. Log-out and password change are Django's own."""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django_ratelimit.decorators import ratelimit


def login_rate(group, request):
    return settings.RATELIMIT_LOGIN


@method_decorator(ratelimit(key="ip", rate=login_rate, method="POST", block=True), name="post")
@method_decorator(ratelimit(key="post:username", rate=login_rate, method="POST", block=True), name="post")
class RateLimitedLoginView(LoginView):
    redirect_authenticated_user = True


class RegisterForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


@sensitive_post_parameters("password1", "password2")
@ratelimit(key="ip", rate=login_rate, method="POST", block=True)
def register(request):
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/register.html", {"form": form})
