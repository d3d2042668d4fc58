"""manage.py synthesize TEXT --out FILE.wav: text to speech through the same job path as the site."""

import contextlib
import wave
from pathlib import Path

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from speakers.models import Speaker
from voice import jobs


async def _synthesize(**kwargs) -> tuple[list[bytes], dict | None]:
    """(PCM chunks, the terminal message)."""
    chunks, last = [], None
    async for message in jobs.synthesize(**kwargs):
        last = message
        if message["type"] == "voice.tts.chunk":
            chunks.append(message["pcm"])
    return chunks, last


class Command(BaseCommand):
    help = (
        "Speak TEXT into a WAV file with the configured TTS engine (or --engine), through a voice job: in a "
        "Celery worker when Redis is configured, else in this process. Prints the engine, voice and duration."
    )

    def add_arguments(self, parser):
        parser.add_argument("text", help="What to say.")
        parser.add_argument("--out", required=True, metavar="FILE.wav", help="Where to write the WAV file.")
        parser.add_argument(
            "--speaker", type=int, metavar="ID", help="A speaker's id (its voice, if the engine clones)."
        )
        parser.add_argument("--engine", metavar="NAME", help="cosyvoice2, piper or espeak-ng (default: the chain).")
        parser.add_argument(
            "--in-process", action="store_true", help="Load the engine here instead of asking a worker."
        )

    def handle(self, *args, text, out, speaker=None, engine=None, in_process=False, **options):
        if speaker is not None and not Speaker.objects.filter(pk=speaker).exists():
            raise CommandError(f"There is no speaker with id {speaker}.")
        out_path = Path(out)
        if not out_path.parent.is_dir():
            raise CommandError(f"The folder {out_path.parent} does not exist.")
        # --in-process: for this command only (a command may run inside a longer-lived process).
        with override_settings(VOICE_JOBS_IN_PROCESS=True) if in_process else contextlib.nullcontext():
            chunks, last = async_to_sync(_synthesize)(text=text, speaker_id=speaker, engine_name=engine)
        if last is None or last["type"] != "voice.tts.done":
            last = last or {}
            raise CommandError(f"Synthesis failed ({last.get('code')}): {last.get('message')}")
        rate = last["sample_rate"]
        pcm = b"".join(chunks)
        try:
            with wave.open(str(out_path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(pcm)
        except OSError as exc:
            raise CommandError(f"Cannot write {out}: {exc.strerror or exc}.") from None
        duration = len(pcm) / 2 / rate
        for part in last.get("spoken") or [last]:
            self.stdout.write(f"engine: {part['engine'] or 'none'}")
            self.stdout.write(f"voice: {part['voice'] or 'none'}{' (cloned)' if part.get('clones') else ''}")
            self.stdout.write(f"language: {part.get('language') or '-'}")
        for sentence in last.get("unspoken") or []:
            self.stderr.write(f"not spoken (no voice speaks {sentence['language']}): {sentence['text']}")
        self.stdout.write(f"duration: {duration:.2f} s ({rate} Hz, {last['chunks']} chunks)")
        self.stdout.write(f"written: {out_path}")
