from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html

from magicmirror.errors import ApplicationError

from .models import Speaker, UserSettings
from .selectors import speaker_name_taken
from .services import reference_audio_prepare, speaker_create, speaker_update


class SpeakerAdminForm(forms.ModelForm):
    upload = forms.FileField(
        label="Reference audio",
        required=False,
        help_text="wav, webm, ogg, mp3 or m4a; 1-30 seconds; 16 kHz or more.",
    )

    class Meta:
        model = Speaker
        fields = ["owner", "name", "prompt_text"]

    def clean_upload(self):
        upload = self.cleaned_data.get("upload")
        if upload is None:
            if self.instance.pk is None:
                raise forms.ValidationError("A reference clip is required.")
            return None
        try:
            data = upload.read() if upload.size <= settings.SPEAKER_MAX_UPLOAD_BYTES else b""
            reference_audio_prepare(data=data, size=upload.size)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc
        return data

    def clean(self):
        cleaned = super().clean()
        owner = cleaned.get("owner") or getattr(self.instance, "owner", None)
        if owner is None:
            return cleaned
        if self.instance.pk is None and Speaker.objects.filter(owner=owner).count() >= settings.SPEAKERS_PER_USER:
            raise forms.ValidationError(f"{owner} already has {settings.SPEAKERS_PER_USER} speakers; delete one first.")
        # Checked here, not only in the service: an error raised from save_model would be a 500.
        name = (cleaned.get("name") or "").strip()
        if name and speaker_name_taken(user=owner, name=name, exclude_pk=self.instance.pk):
            self.add_error("name", f"{owner} already has a speaker with this name.")
        return cleaned


@admin.register(Speaker)
class SpeakerAdmin(admin.ModelAdmin):
    form = SpeakerAdminForm
    list_display = ["name", "owner", "is_current", "audio_player", "audio_duration", "created_at"]
    list_filter = ["created_at", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "prompt_text", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    readonly_fields = ["slot", "audio_player", "audio_duration", "audio_sample_rate", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "owner"] if obj else fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner__mm_settings")

    @admin.display(boolean=True, description="Current")
    def is_current(self, obj):
        user_settings = getattr(obj.owner, "mm_settings", None)
        return bool(user_settings and user_settings.current_speaker_id == obj.pk)

    @admin.display(description="Reference audio")
    def audio_player(self, obj):
        if not obj.pk or not obj.audio:
            return "-"
        url = reverse("admin:speakers_speaker_audio", args=[obj.pk])
        return format_html('<audio controls preload="none" src="{}"></audio>', url)

    def get_urls(self):
        return [
            path(
                "<int:speaker_id>/audio/",
                self.admin_site.admin_view(self.audio_view),
                name="speakers_speaker_audio",
            ),
            *super().get_urls(),
        ]

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
