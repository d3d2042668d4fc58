from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django_ratelimit.core import is_ratelimited
from django_ratelimit.exceptions import Ratelimited

from magicmirror.api import error_body
from magicmirror.errors import ApplicationError
from voice.jobs.runners import tts_text_clean
from voice.tts import TTSError
from voice.tts_api import PendingSynthesis, synthesis_view, tts_rate

from .models import Speaker, UserSettings
from .selectors import speaker_name_taken
from .services import (
    _format_size,
    reference_audio_prepare,
    speaker_create,
    speaker_is_registered,
    speaker_language,
    speaker_try_sentence,
    speaker_update,
    speakers_reregister,
)

ENGINE_NAMES = {"cosyvoice2": "CosyVoice2", "piper": "Piper", "espeak-ng": "eSpeak NG"}
LANGUAGE_NAMES = {
    "zh": gettext_lazy("Chinese"),
    "en": gettext_lazy("English"),
    "ja": gettext_lazy("Japanese"),
    "ko": gettext_lazy("Korean"),
}


def error_text(exc: ApplicationError) -> str:
    """The service's error in the staff member's language (the services answer the API in English)."""
    messages = {
        "audio_too_large": _("The audio file is too large (limit %(size)s).")
        % {"size": _format_size(settings.SPEAKER_MAX_UPLOAD_BYTES)},
        "empty_audio": _("The audio file is empty."),
        "undecodable_audio": _("This file is not audio that can be decoded."),
        "audio_too_long": _("The reference audio is longer than %(seconds)s seconds.")
        % {"seconds": f"{settings.SPEAKER_MAX_SECONDS:g}"},
        "audio_rate_too_low": _("The reference audio must be sampled at 16000 Hz or more."),
        "audio_too_short": _("The reference audio must last at least %(seconds)s seconds.")
        % {"seconds": f"{settings.SPEAKER_MIN_SECONDS:g}"},
        "audio_silent": _("The reference audio is silent."),
    }
    return messages.get(exc.code, exc.message)


class ReferenceAudioInput(forms.FileInput):
    """The upload, with the player of the current recording beside it (one field, not two)."""

    audio_url = ""

    def render(self, name, value, attrs=None, renderer=None):
        upload = super().render(name, value, attrs, renderer)
        if not self.audio_url:
            return upload
        return format_html(
            '<div class="mm-reference-audio"><audio controls preload="none" src="{}"></audio>'
            '<div class="help">{}</div>{}</div>',
            self.audio_url,
            _("Choose a file to replace the current recording."),
            upload,
        )


class SpeakerAdminForm(forms.ModelForm):
    upload = forms.FileField(label=gettext_lazy("Reference audio"), required=False, widget=ReferenceAudioInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        upload = self.fields["upload"]
        upload.help_text = _(
            "WAV, WebM, OGG, MP3 or M4A; %(min)s to %(max)s seconds; 16 kHz or more. "
            "One clear speaker; 3 to 10 seconds clone best."
        ) % {"min": f"{settings.SPEAKER_MIN_SECONDS:g}", "max": f"{settings.SPEAKER_MAX_SECONDS:g}"}
        if self.instance.pk and self.instance.audio:
            upload.widget.audio_url = reverse("admin:speakers_speaker_audio", args=[self.instance.pk])

    class Meta:
        model = Speaker
        fields = ["owner", "name", "prompt_text"]

    def clean_upload(self):
        upload = self.cleaned_data.get("upload")
        if upload is None:
            if self.instance.pk is None:
                raise forms.ValidationError(_("A reference clip is required."))
            return None
        try:
            data = upload.read() if upload.size <= settings.SPEAKER_MAX_UPLOAD_BYTES else b""
            reference_audio_prepare(data=data, size=upload.size)
        except ApplicationError as exc:
            raise forms.ValidationError(error_text(exc)) from exc
        return data

    def clean(self):
        cleaned = super().clean()
        owner = cleaned.get("owner") or getattr(self.instance, "owner", None)
        if owner is None:
            return cleaned
        if self.instance.pk is None and Speaker.objects.filter(owner=owner).count() >= settings.SPEAKERS_PER_USER:
            raise forms.ValidationError(
                _("%(owner)s already has %(limit)s speakers; delete one first.")
                % {"owner": owner, "limit": settings.SPEAKERS_PER_USER}
            )
        # Checked here, not only in the service: an error raised from save_model would be a 500.
        name = (cleaned.get("name") or "").strip()
        if name and speaker_name_taken(user=owner, name=name, exclude_pk=self.instance.pk):
            self.add_error("name", _("%(owner)s already has a speaker with this name.") % {"owner": owner})
        return cleaned


def try_voice_strings() -> dict[str, str]:
    """What the try-a-voice script (static/js/admin/try_voice.js) shows, in the staff member's language;
    {engine} and {voice} are filled in the page from the answer's X-TTS-* headers."""
    return {
        "working": _("Synthesising through the voice job path…"),
        "cloned": _("Spoken by {engine} (voice: {voice}), cloned from this speaker's recording."),
        "notCloned": _(
            "Spoken by {engine} (voice: {voice}). Not a clone: this is the engine's own voice; only an engine "
            "that clones (CosyVoice2, on a GPU host) speaks in this speaker's voice."
        ),
        "silent": _("Nothing was spoken: no engine here speaks the language of this sentence."),
        "failed": _("The synthesis failed: {message}"),
        "network": _("The server could not be reached; try again."),
        "error.rate_limited": _("Too many tries; wait a minute and try again."),
        "error.voice_unavailable": _("No voice worker answered; try again later."),
        "error.voice_worker_timeout": _("No voice worker answered; try again later."),
        **{f"engine.{code}": name for code, name in ENGINE_NAMES.items()},
    }


def try_voice_labels() -> dict[str, str]:
    return {
        "sentence": _("Sentence to say"),
        "speak": _("Speak"),
        "reregister": _("Re-register with the engine"),
        "back": _("Back to the speakers"),
    }


class ProblemsFilter(admin.SimpleListFilter):
    title = gettext_lazy("problems")
    parameter_name = "problems"

    def lookups(self, request, model_admin):
        return [("yes", _("Has problems")), ("no", _("No problems")), ("unchecked", _("Not checked"))]

    def queryset(self, request, queryset):
        # A recording is checked when it is stored (source_sample_rate set); older ones never were.
        checked = queryset.filter(source_sample_rate__gt=0)
        if self.value() == "yes":
            return checked.exclude(audio_problems=[])
        if self.value() == "no":
            return checked.filter(audio_problems=[])
        if self.value() == "unchecked":
            return queryset.filter(source_sample_rate=0)
        return queryset


class CloneStatusFilter(admin.SimpleListFilter):
    title = gettext_lazy("clone status")
    parameter_name = "registered"

    def lookups(self, request, model_admin):
        return [("yes", _("Registered")), ("no", _("Not registered"))]

    def queryset(self, request, queryset):
        # speaker_update and a re-registration clear the status: a set cloned_at is the current version's.
        if self.value() == "yes":
            return queryset.filter(cloned_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(cloned_at__isnull=True)
        return queryset


@admin.register(Speaker)
class SpeakerAdmin(admin.ModelAdmin):
    form = SpeakerAdminForm
    list_display = [
        "name",
        "owner",
        "slot",
        "language",
        "audio_player",
        "audio_details",
        "problems",
        "clone_status",
        "is_current",
        "created_at",
    ]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter), CloneStatusFilter, ProblemsFilter, "created_at"]
    search_fields = ["name", "prompt_text", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    actions = ["reregister", "try_voice"]
    readonly_fields = ["slot", "language", "audio_details", "problems", "clone_status", "created_at", "updated_at"]

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ["owner", "name", "prompt_text", "upload"]})
        if obj is None:
            return [main]
        details = ["slot", "language", "audio_details", "problems", "clone_status", "created_at", "updated_at"]
        return [main, (_("Recording and cloning"), {"fields": details})]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "owner"] if obj else fields

    @admin.display(description=gettext_lazy("language"))
    def language(self, obj):
        return LANGUAGE_NAMES.get(speaker_language(obj), speaker_language(obj))

    @admin.display(description=gettext_lazy("duration and sample rate"))
    def audio_details(self, obj):
        text = _("%(seconds)s s, %(rate)s Hz") % {"seconds": f"{obj.audio_duration:.1f}", "rate": obj.audio_sample_rate}
        if obj.source_sample_rate:
            text += " " + _("(recorded at %(rate)s Hz)") % {"rate": obj.source_sample_rate}
        return text

    @admin.display(description=gettext_lazy("problems"))
    def problems(self, obj):
        if not obj.source_sample_rate:
            return _("not checked (added before the checks existed)")
        labels = {
            "short": _("short: %(seconds)s s (3 to 10 seconds clone best)") % {"seconds": f"{obj.audio_duration:.1f}"},
            "clipped": _("clipped"),
            "silence": _("mostly silence"),
            "low_sample_rate": _("recorded at %(rate)s Hz (24 kHz or more is best)") % {"rate": obj.source_sample_rate},
        }
        found = [str(labels.get(code, code)) for code in obj.audio_problems or []]
        return "; ".join(found) if found else _("none")

    @admin.display(description=gettext_lazy("clone status"))
    def clone_status(self, obj):
        if speaker_is_registered(obj):
            return _("Registered with %(engine)s on %(when)s") % {
                "engine": ENGINE_NAMES.get(obj.clone_engine, obj.clone_engine),
                "when": formats.date_format(timezone.localtime(obj.cloned_at), "DATETIME_FORMAT"),
            }
        return _(
            "Not registered: an engine that clones (CosyVoice2) registers it the first time it speaks in this voice."
        )

    @admin.action(description=gettext_lazy("Re-register with the engine"), permissions=["change"])
    def reregister(self, request, queryset):
        self._reregistered(request, speakers_reregister(speaker_ids=list(queryset.values_list("pk", flat=True))))

    def _reregistered(self, request, count: int) -> None:
        self.message_user(
            request,
            ngettext(
                "%(count)d speaker is registered afresh the next time a cloning engine speaks in its voice.",
                "%(count)d speakers are registered afresh the next time a cloning engine speaks in their voice.",
                count,
            )
            % {"count": count},
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner__mm_settings")

    @admin.display(boolean=True, description=gettext_lazy("current"))
    def is_current(self, obj):
        user_settings = getattr(obj.owner, "mm_settings", None)
        return bool(user_settings and user_settings.current_speaker_id == obj.pk)

    @admin.display(description=gettext_lazy("reference audio"))
    def audio_player(self, obj):
        if not obj.pk or not obj.audio:
            return "-"
        url = reverse("admin:speakers_speaker_audio", args=[obj.pk])
        return format_html('<audio controls preload="none" src="{}"></audio>', url)

    @admin.action(description=gettext_lazy("Try this voice"), permissions=["change"])
    def try_voice(self, request, queryset):
        """A page with a try-a-voice form for each selected speaker."""
        context = {
            **self.admin_site.each_context(request),
            "title": _("Try this voice"),
            "opts": self.opts,
            "tries": [self._try_voice_context(speaker) for speaker in queryset.select_related("owner")],
            "try_strings": try_voice_strings(),
            "labels": try_voice_labels(),
        }
        return TemplateResponse(request, "admin/speakers/speaker/try_voice.html", context)

    def _try_voice_context(self, speaker: Speaker) -> dict:
        return {
            "speaker": speaker,
            "title": _("Try this voice: %(name)s") % {"name": speaker.name},
            "url": reverse("admin:speakers_speaker_try", args=[speaker.pk]),
            "sentence": speaker_try_sentence(speaker),
            "max_chars": settings.TTS_MAX_CHARS,
        }

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk and self.has_change_permission(request, obj):
            context.update(
                try_voice=self._try_voice_context(obj),
                try_strings=try_voice_strings(),
                labels=try_voice_labels(),
                reregister_url=reverse("admin:speakers_speaker_reregister", args=[obj.pk]),
            )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_urls(self):
        return [
            path(
                "<int:speaker_id>/audio/",
                self.admin_site.admin_view(self.audio_view),
                name="speakers_speaker_audio",
            ),
            # The check in Django's sync thread, the synthesis in the event loop (as POST /api/tts).
            path(
                "<int:speaker_id>/try/",
                synthesis_view(self.admin_site.admin_view(self.try_voice_view)),
                name="speakers_speaker_try",
            ),
            path(
                "<int:speaker_id>/reregister/",
                self.admin_site.admin_view(self.reregister_view),
                name="speakers_speaker_reregister",
            ),
            *super().get_urls(),
        ]

    def _speaker_to_change(self, request, speaker_id) -> Speaker:
        """The speaker, for staff who may change speakers (403 otherwise, before any 404: no probing)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        speaker = Speaker.objects.filter(pk=speaker_id).first()
        if speaker is None:
            raise Http404
        return speaker

    def try_voice_view(self, request, speaker_id):
        """POST text: the sentence synthesised in the speaker's voice through the site's job path, as one
        WAV (engine, voice and whether it cloned in the X-TTS-* headers of POST /api/tts)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        speaker = self._speaker_to_change(request, speaker_id)
        # The TTS routes' counter: trying voices in the admin is no way around RATELIMIT_TTS.
        if is_ratelimited(request, group="voice.tts", key="user", rate=tts_rate, method="POST", increment=True):
            raise Ratelimited
        try:
            text = tts_text_clean(request.POST.get("text"))
        except TTSError as exc:
            messages = {
                "tts_empty_text": _("Write a sentence to say."),
                "tts_text_too_long": _("The sentence is longer than %(limit)s characters.")
                % {"limit": settings.TTS_MAX_CHARS},
            }
            return JsonResponse(error_body(exc.code, messages.get(exc.code, str(exc))), status=400)
        return PendingSynthesis(text=text, speaker_id=speaker.pk, audio_format="wav", stream=False)

    def reregister_view(self, request, speaker_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        speaker = self._speaker_to_change(request, speaker_id)
        self._reregistered(request, speakers_reregister(speaker_ids=[speaker.pk]))
        return HttpResponseRedirect(reverse("admin:speakers_speaker_change", args=[speaker.pk]))

    def audio_view(self, request, speaker_id):
        if not self.has_view_permission(request):
            raise Http404
        speaker = Speaker.objects.filter(pk=speaker_id).first()
        if speaker is None or not speaker.audio:
            raise Http404
        try:
            audio = speaker.audio.open("rb")
        except FileNotFoundError:
            raise Http404 from None
        return FileResponse(audio, content_type="audio/wav")

    def save_model(self, request, obj, form, change):
        # Same services as the API: same validation, same three-per-user rule.
        data = form.cleaned_data
        if change:
            saved = speaker_update(
                user=obj.owner,
                speaker_id=obj.pk,
                name=data["name"],
                prompt_text=data["prompt_text"],
                audio_data=data.get("upload"),
            )
        else:
            saved = speaker_create(
                user=data["owner"], name=data["name"], prompt_text=data["prompt_text"], audio_data=data["upload"]
            )
        obj.pk = saved.pk
        obj.refresh_from_db()


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    list_display = ["user", "current_speaker", "input_mode", "voice_output", "updated_at"]
    list_filter = ["input_mode", "voice_output"]
    search_fields = ["user__username"]
    list_select_related = ["user", "current_speaker"]
    autocomplete_fields = ["user"]

    def get_readonly_fields(self, request, obj=None):
        # The current-speaker choices are the row's user's speakers: the user cannot change under them.
        return ["user", "updated_at"] if obj else ["updated_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "current_speaker":
            object_id = request.resolver_match.kwargs.get("object_id")
            owner_settings = UserSettings.objects.filter(pk=object_id).first() if object_id else None
            # Only the user's own speakers can be their current one.
            kwargs["queryset"] = Speaker.objects.filter(owner_id=owner_settings.user_id if owner_settings else None)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
