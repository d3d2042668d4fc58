"""manage.py download_models: fetch the model files the voice engines need into MODELS_DIR."""

import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from voice.management import model_sources
from voice.management.downloads import DownloadError, download, verify
from voice.management.modelfiles import cosyvoice_files, vosk_missing
from voice.tts.cosyvoice2.model_dir import COSYVOICE2, COSYVOICE3, ModelKind

COSYVOICE_MODEL_ID = COSYVOICE2.model_id  # iic/CosyVoice2-0.5B
COSYVOICE3_MODEL_ID = COSYVOICE3.model_id  # FunAudioLLM/Fun-CosyVoice3-0.5B-2512


class Command(BaseCommand):
    help = (
        "Download model files into MODELS_DIR, resumable and verified: --vosk [LANG] the Vosk model of a "
        "language of VOSK_MODELS (zh by default), --piper VOICE a Piper voice, --defaults every model of "
        "VOSK_MODELS and PIPER_VOICES not on disk yet (--if-reachable: one line and success when offline, "
        "as ./dev up runs it); --cosyvoice fetches CosyVoice2-0.5B from ModelScope into COSYVOICE_MODEL_DIR, "
        "--cosyvoice3 Fun-CosyVoice3-0.5B-2512 into COSYVOICE3_MODEL_DIR."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--vosk", nargs="?", const="zh", metavar="LANG", help="Download and install the Vosk model of LANG (zh)."
        )
        parser.add_argument("--vosk-url", help="The Vosk model zip (default: VOSK_MODELS_URL/<model name>.zip).")
        parser.add_argument("--vosk-zip", metavar="FILE", help="Install from a zip already on disk (offline hosts).")
        parser.add_argument("--sha256", help="Expected SHA-256 of the zip; checked when given.")
        parser.add_argument("--size", type=int, help="Expected size of the zip in bytes; checked when given.")
        parser.add_argument(
            "--piper", nargs="+", metavar="VOICE", help="Download Piper voices (e.g. zh_CN-huayan-medium)."
        )
        parser.add_argument(
            "--defaults", action="store_true", help="Download the models of VOSK_MODELS and PIPER_VOICES not on disk."
        )
        parser.add_argument(
            "--if-reachable",
            action="store_true",
            help="With --defaults: when a host cannot be reached, say in one line what is missing and succeed.",
        )
        parser.add_argument("--cosyvoice", action="store_true", help="Download CosyVoice2-0.5B from ModelScope.")
        parser.add_argument(
            "--cosyvoice3",
            action="store_true",
            help="Download Fun-CosyVoice3-0.5B-2512 from ModelScope into COSYVOICE3_MODEL_DIR.",
        )
        parser.add_argument("--dest", help="Where models go (default MODELS_DIR; Piper voices in its piper/).")
        parser.add_argument("--timeout", type=float, default=30.0, help="Network timeout in seconds (default 30).")

    def handle(self, *args, **options):
        wanted = ("vosk", "vosk_zip", "piper", "defaults", "cosyvoice", "cosyvoice3")
        if not any(options[name] for name in wanted):
            raise CommandError(
                "Say what to download: --vosk [LANG] (or --vosk-zip FILE), --piper VOICE, --defaults, --cosyvoice "
                "or --cosyvoice3."
            )
        timeout = options["timeout"]
        if options["defaults"]:
            self.download_defaults(timeout=timeout, quiet_offline=options["if_reachable"])
        if options["vosk"] or options["vosk_zip"]:
            language = options["vosk"] or "zh"
            if language not in settings.VOSK_MODELS and not (options["vosk_url"] or options["vosk_zip"]):
                raise CommandError(
                    f"No Vosk model is configured for {language!r}: VOSK_MODELS has {', '.join(settings.VOSK_MODELS)}."
                )
            dest = self.folder(options["dest"] or settings.MODELS_DIR)
            self.install_vosk(
                language,
                dest,
                url=options["vosk_url"],
                archive=Path(options["vosk_zip"]) if options["vosk_zip"] else None,
                size=options["size"],
                sha256=options["sha256"],
                timeout=timeout,
            )
        for voice in options["piper"] or []:
            dest = self.folder(Path(options["dest"]) if options["dest"] else Path(settings.MODELS_DIR) / "piper")
            self.install_piper(voice, dest, timeout=timeout)
        if options["cosyvoice"]:
            self.download_cosyvoice(Path(settings.COSYVOICE_MODEL_DIR))
        if options["cosyvoice3"]:
            self.download_cosyvoice(Path(settings.COSYVOICE3_MODEL_DIR), COSYVOICE3)

    def folder(self, path) -> Path:
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"Cannot create {path}: {exc.strerror or exc}.") from None
        return path

    # -- the defaults (./dev up) -------------------------------------------------------------------
    def download_defaults(self, *, timeout: float, quiet_offline: bool) -> None:
        missing = model_sources.missing_defaults()
        if not missing:
            if not quiet_offline:
                self.stdout.write(self.style.SUCCESS("Every default model is on disk."))
            return
        failed: list[tuple[model_sources.Missing, str]] = []
        unreachable: dict[str, str] = {}  # host -> why; its other models are not tried
        for item in missing:
            if item.host in unreachable:
                failed.append((item, unreachable[item.host]))
                continue
            try:
                if item.kind == "vosk":
                    dest = self.folder(Path(settings.VOSK_MODELS[item.language]).parent)
                    self.install_vosk(item.language, dest, timeout=timeout)
                else:
                    self.install_piper(item.name, self.folder(Path(settings.MODELS_DIR) / "piper"), timeout=timeout)
            except CommandError as exc:  # a failed download, or a zip that is no Vosk model
                if getattr(exc, "unreachable", False):
                    unreachable[item.host] = f"{item.host} cannot be reached"
                failed.append((item, unreachable.get(item.host) or str(exc)))
        if not failed:
            return
        whys = "; ".join(dict.fromkeys(why for _item, why in failed))
        what = ", ".join(str(item) for item, _why in failed)
        line = (
            f"Models not downloaded ({whys}): {what}. Starting with what is here; "
            "get them later with: manage.py download_models --defaults"
        )
        if not quiet_offline:
            raise CommandError(line)
        self.stdout.write(self.style.WARNING(line.replace("\n", " ")))

    # -- Vosk ------------------------------------------------------------------------------------
    def install_vosk(self, language, dest: Path, *, url=None, archive=None, size=None, sha256=None, timeout=30.0):
        md5 = None
        downloaded = archive is None
        try:
            if archive is not None:
                if not archive.is_file():
                    raise CommandError(f"There is no file {archive}.")
            else:
                if url is None:
                    name = model_sources.vosk_model_name(language)
                    url = model_sources.vosk_model_url(name)
                    if size is None and sha256 is None:  # the host's own list says what the zip must be
                        try:
                            entry = model_sources.vosk_list_entry(name, timeout=timeout) or {}
                        except DownloadError as exc:
                            if exc.unreachable:
                                raise
                            entry = {}  # no list there: the zip's own checksums still verify it
                        size, md5 = entry.get("size"), entry.get("md5")
                        size = int(size) if isinstance(size, int | str) and str(size).isdigit() else None
                name = PurePosixPath(urlsplit(url).path).name or "download.zip"
                archive = download(url, dest / name, timeout=timeout, stream=self.stdout, size=size)
            verify(archive, size=size, sha256=sha256, md5=md5)
        except DownloadError as exc:
            if downloaded and archive is not None and archive.is_file():
                archive.unlink()  # whole but not what was expected: fetched afresh next time, never resumed
            hint = f" Or download {url} elsewhere and use --vosk-zip FILE." if url else ""
            raise _Failed(f"{exc}{hint}", unreachable=exc.unreachable) from None
        try:
            self.verify_archive(archive)
            model = self.extract_vosk(archive, dest)
        except CommandError:
            if downloaded:
                archive.unlink()  # corrupt: the next attempt downloads it afresh rather than resuming it
            raise
        self.stdout.write(self.style.SUCCESS(f"Vosk model ready: {model}"))
        configured = settings.VOSK_MODELS.get(language)
        if configured and Path(configured).resolve() != model.resolve():
            setting = "VOSK_MODEL_PATH" if language == "zh" else "VOSK_MODELS"
            self.stdout.write(f"Set {setting} ({language}) to {model} to use it.")
        if downloaded:
            archive.unlink()

    def verify_archive(self, archive: Path) -> None:
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CommandError(
                f"{archive.name} is not a valid zip file ({exc}); delete it and download again."
            ) from None
        if bad is not None:
            raise CommandError(f"{archive.name} is corrupt (first bad entry: {bad}); delete it and download again.")

    # -- Piper -----------------------------------------------------------------------------------
    def install_piper(self, voice: str, dest: Path, *, timeout: float) -> None:
        try:
            model = model_sources.install_piper_voice(voice, dest, timeout=timeout, stream=self.stdout)
        except DownloadError as exc:
            raise _Failed(str(exc), unreachable=exc.unreachable) from None
        self.stdout.write(self.style.SUCCESS(f"Piper voice ready: {model}"))
        if voice not in settings.PIPER_VOICES.values():
            language = voice.split("_", 1)[0]
            self.stdout.write(f"Add {language}={voice} to PIPER_VOICES to use it.")

    def extract_vosk(self, archive: Path, dest: Path) -> Path:
        """Extract into a temporary folder beside dest, check the model's files, then move it in place."""
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n and not n.endswith("/")]
            for n in zf.namelist():
                p = PurePosixPath(n)
                if p.is_absolute() or ".." in p.parts:
                    raise CommandError(f"{archive.name} holds an unsafe path: {n}.")
            tops = {PurePosixPath(n).parts[0] for n in names}
            folder = tops.pop() if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names) else None
            model_name = folder or archive.stem
            with tempfile.TemporaryDirectory(dir=dest, prefix=".extract-") as tmp:
                unpacked = Path(tmp) / "unpacked"
                zf.extractall(unpacked)  # member paths checked above
                root = unpacked / folder if folder else unpacked
                missing = vosk_missing(root)
                if missing:
                    raise CommandError(f"{archive.name} is not a Vosk model: it lacks {', '.join(missing)}.")
                target = dest / model_name
                if target.exists():
                    shutil.rmtree(target)
                root.replace(target)
        return target

    # -- CosyVoice2 and CosyVoice3 --------------------------------------------------------------
    def download_cosyvoice(self, model_dir: Path, kind: ModelKind = COSYVOICE2) -> None:
        """The model's ModelScope snapshot into model_dir (resumable: modelscope skips whole files), checked
        against the files the adapter needs for that model."""
        try:
            from modelscope import snapshot_download
        except ImportError:
            raise CommandError(
                "modelscope is not installed (pip install modelscope); or download "
                f"{kind.model_id} elsewhere into {model_dir}."
            ) from None
        self.stdout.write(f"Downloading {kind.model_id} from ModelScope into {model_dir}")
        try:
            snapshot_download(kind.model_id, local_dir=str(model_dir))
        except Exception as exc:  # modelscope raises requests' and its own errors
            raise CommandError(
                f"ModelScope cannot be reached or refused the download ({type(exc).__name__}: {exc}). "
                "Run the command again to resume."
            ) from None
        files = cosyvoice_files(model_dir, kind)
        if files["missing"]:
            raise CommandError(f"The download is incomplete: {', '.join(files['missing'])} missing in {model_dir}.")
        self.stdout.write(self.style.SUCCESS(f"{kind.name} model ready: {model_dir}"))
        configured = Path(settings.COSYVOICE_MODEL_DIR).expanduser().resolve()
        if configured != model_dir.expanduser().resolve():
            self.stdout.write(f"Set COSYVOICE_MODEL_DIR to {model_dir} to use it.")


class _Failed(CommandError):
    """A download that failed, with whether its host was unreachable (--defaults skips the host's others)."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable
