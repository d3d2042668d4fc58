"""manage.py download_models: fetch the model files the voice engines need into MODELS_DIR."""

import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from voice.management.modelfiles import cosyvoice_files, vosk_missing

VOSK_URL = "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip"
COSYVOICE_MODEL_ID = "iic/CosyVoice2-0.5B"
CHUNK = 1 << 16


class Command(BaseCommand):
    help = (
        "Download model files into MODELS_DIR: --vosk fetches the Vosk model zip (resumable), verifies and "
        "extracts it; --cosyvoice fetches CosyVoice2-0.5B from ModelScope into COSYVOICE_MODEL_DIR."
    )

    def add_arguments(self, parser):
        parser.add_argument("--vosk", action="store_true", help="Download and install the Vosk model.")
        parser.add_argument("--vosk-url", default=VOSK_URL, help=f"The Vosk model zip (default {VOSK_URL}).")
        parser.add_argument("--vosk-zip", metavar="FILE", help="Install from a zip already on disk (offline hosts).")
        parser.add_argument("--sha256", help="Expected SHA-256 of the zip; checked when given.")
        parser.add_argument("--size", type=int, help="Expected size of the zip in bytes; checked when given.")
        parser.add_argument("--cosyvoice", action="store_true", help="Download CosyVoice2-0.5B from ModelScope.")
        parser.add_argument("--dest", help="Where models go (default MODELS_DIR).")
        parser.add_argument("--timeout", type=float, default=30.0, help="Network timeout in seconds (default 30).")

    def handle(self, *args, **options):
        if not (options["vosk"] or options["vosk_zip"] or options["cosyvoice"]):
            raise CommandError("Say what to download: --vosk (or --vosk-zip FILE) and/or --cosyvoice.")
        dest = Path(options["dest"] or settings.MODELS_DIR)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"Cannot create {dest}: {exc.strerror or exc}.") from None
        if options["vosk"] or options["vosk_zip"]:
            if options["vosk_zip"]:
                archive = Path(options["vosk_zip"])
                if not archive.is_file():
                    raise CommandError(f"There is no file {archive}.")
            else:
                archive = self.download(options["vosk_url"], dest, timeout=options["timeout"])
            self.verify_archive(archive, size=options["size"], sha256=options["sha256"])
            model = self.extract_vosk(archive, dest)
            self.stdout.write(self.style.SUCCESS(f"Vosk model ready: {model}"))
            if Path(settings.VOSK_MODEL_PATH).resolve() != model.resolve():
                self.stdout.write(f"Set VOSK_MODEL_PATH={model} to use it.")
            if not options["vosk_zip"]:
                archive.unlink()
        if options["cosyvoice"]:
            self.download_cosyvoice(Path(settings.COSYVOICE_MODEL_DIR))

    # -- Vosk ------------------------------------------------------------------------------------
    def download(self, url: str, dest: Path, *, timeout: float) -> Path:
        """Download `url` into dest; a partial file from an earlier attempt is resumed (HTTP Range)."""
        name = PurePosixPath(urlsplit(url).path).name or "download.zip"
        final, part = dest / name, dest / f"{name}.part"
        host = urlsplit(url).netloc or url
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
                if response.status_code == 416 and have:
                    if _total_size(response, 0) == have:  # the partial file is already whole
                        part.replace(final)
                        return final
                    part.unlink()  # longer than the file now on the server: start again
                    return self.download(url, dest, timeout=timeout)
                if response.status_code not in (200, 206):
                    raise CommandError(f"Downloading {url} failed: HTTP {response.status_code}.")
                resume = response.status_code == 206 and have > 0
                total = _total_size(response, have if resume else 0)
                self.stdout.write(
                    f"Downloading {url}"
                    + (f" (resuming at {have} bytes)" if resume else "")
                    + (f", {total} bytes" if total else "")
                )
                with part.open("ab" if resume else "wb") as out:
                    for block in response.iter_bytes(CHUNK):
                        out.write(block)
        except httpx.TimeoutException:
            raise CommandError(
                f"{host} did not answer within {timeout:g} s. Run the command again to resume, or download "
                f"{url} elsewhere and use --vosk-zip FILE."
            ) from None
        except (httpx.ConnectError, httpx.NetworkError, httpx.ProtocolError) as exc:
            raise CommandError(
                f"{host} cannot be reached ({exc}). Check the network or proxy, run the command again to resume, or "
                f"download {url} elsewhere and use --vosk-zip FILE."
            ) from None
        except httpx.HTTPError as exc:
            raise CommandError(f"Downloading {url} failed: {exc}.") from None
        if total and part.stat().st_size != total:
            raise CommandError(
                f"The download stopped at {part.stat().st_size} of {total} bytes; run the command again to resume."
            )
        part.replace(final)
        return final

    def verify_archive(self, archive: Path, *, size: int | None, sha256: str | None) -> None:
        if size is not None and archive.stat().st_size != size:
            raise CommandError(f"{archive.name} has {archive.stat().st_size} bytes, expected {size}.")
        if sha256:
            digest = hashlib.sha256()
            with archive.open("rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    digest.update(block)
            if digest.hexdigest() != sha256.lower():
                raise CommandError(
                    f"{archive.name} is corrupt: its SHA-256 is {digest.hexdigest()}, expected {sha256}."
                )
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CommandError(
                f"{archive.name} is not a valid zip file ({exc}); delete it and download again."
            ) from None
        if bad is not None:
            raise CommandError(f"{archive.name} is corrupt (first bad entry: {bad}); delete it and download again.")

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

    # -- CosyVoice2 ------------------------------------------------------------------------------
    def download_cosyvoice(self, model_dir: Path) -> None:
        try:
            from modelscope import snapshot_download
        except ImportError:
            raise CommandError(
                "modelscope is not installed (pip install modelscope); or download "
                f"{COSYVOICE_MODEL_ID} elsewhere into {model_dir}."
            ) from None
        self.stdout.write(f"Downloading {COSYVOICE_MODEL_ID} from ModelScope into {model_dir}")
        try:
            snapshot_download(COSYVOICE_MODEL_ID, local_dir=str(model_dir))
        except Exception as exc:  # modelscope raises requests' and its own errors
            raise CommandError(
                f"ModelScope cannot be reached or refused the download ({type(exc).__name__}: {exc}). "
                "Run the command again to resume."
            ) from None
        files = cosyvoice_files(model_dir)
        if files["missing"]:
            raise CommandError(f"The download is incomplete: {', '.join(files['missing'])} missing in {model_dir}.")
        self.stdout.write(self.style.SUCCESS(f"CosyVoice2 model ready: {model_dir}"))


def _total_size(response: httpx.Response, offset: int) -> int | None:
    """The whole file's size from Content-Range (206) or Content-Length (200), if given."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        try:
            return int(content_range.rsplit("/", 1)[1])
        except ValueError:
            return None
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None
