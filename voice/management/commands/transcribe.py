"""manage.py transcribe FILE: speech to text through the same job path as the site."""

import contextlib
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from voice import jobs
from voice.asr.base import SAMPLE_RATE
from voice.audio import AudioError, decode_audio


class Command(BaseCommand):
    help = (
        "Transcribe an audio file (any format FFmpeg decodes) with the configured ASR engine, through a "
        "voice job: in a Celery worker when Redis is configured, else in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The audio file (wav, webm, ogg, mp3, m4a...).")
        parser.add_argument(
            "--phrases", nargs="+", metavar="WORD", help="Restrict recognition to these words or phrases."
        )
        parser.add_argument(
            "--in-process", action="store_true", help="Load the engine here instead of asking a worker."
        )

    def handle(self, *args, file, phrases=None, in_process=False, **options):
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        try:
            audio = decode_audio(data, sample_rate=SAMPLE_RATE, max_seconds=max(settings.ASR_MAX_SECONDS, 3600))
        except AudioError as exc:
            raise CommandError(f"{file}: {exc}") from None
        # --in-process: for this command only (a command may run inside a longer-lived process).
        with override_settings(VOICE_JOBS_IN_PROCESS=True) if in_process else contextlib.nullcontext():
            result = async_to_sync(jobs.recognize)(pcm=audio.pcm, phrases=phrases)
        if result["type"] != "voice.asr.final":
            raise CommandError(f"Recognition failed ({result.get('code')}): {result.get('message')}")
        self.stdout.write(result["text"])
