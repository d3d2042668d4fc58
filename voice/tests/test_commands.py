"""Management commands: transcribe, synthesize, voice_status, download_models, build_trt_engine."""

import hashlib
import http.server
import io
import json
import socket
import subprocess
import threading
import wave
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from voice.tts import registry

from .test_jobs import KOREAN, espeak_korean_16k, vosk_direct
from .test_tts import rms


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# -- transcribe -----------------------------------------------------------------------------------
def test_transcribe_equals_direct_vosk_decoding(tmp_path):
    audio = tmp_path / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(audio), KOREAN], check=True)
    expected = vosk_direct(espeak_korean_16k())
    assert expected  # the model hears words in it
    assert run("transcribe", str(audio), "--in-process").strip() == expected
    grammar = ["안녕하세요", "오늘", "날씨", "좋네요"]
    out = run("transcribe", str(audio), "--in-process", "--phrases", *grammar).strip()
    assert out == vosk_direct(espeak_korean_16k(), grammar)
    assert set(out.split()) <= set(grammar)


def test_transcribe_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run("transcribe", str(tmp_path / "missing.wav"))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(CommandError, match="not audio"):
        run("transcribe", str(junk))


# -- synthesize -----------------------------------------------------------------------------------
def test_synthesize_writes_a_wav(tmp_path, piper_default):
    target = tmp_path / "out.wav"
    out = run("synthesize", "Hello there. This is a test.", "--out", str(target), "--in-process")
    with wave.open(str(target)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        frames = w.readframes(w.getnframes())
        duration = w.getnframes() / 22050
    assert 1.0 < duration < 6 and rms(frames) > 1000
    assert "engine: piper" in out and "voice: en_US-joe-medium" in out
    assert f"duration: {duration:.2f} s" in out


def test_synthesize_with_another_engine(tmp_path):
    target = tmp_path / "out.wav"
    out = run("synthesize", "你好，世界。", "--engine", "espeak-ng", "--out", str(target), "--in-process")
    assert "engine: espeak-ng" in out
    with wave.open(str(target)) as w:
        assert w.getframerate() == 22050 and w.getnframes() > 22050 // 2


@pytest.mark.django_db
def test_synthesize_errors_are_sentences(tmp_path):
    target = tmp_path / "out.wav"
    with pytest.raises(CommandError, match="no speaker with id 987654"):
        run("synthesize", "Hello.", "--speaker", "987654", "--out", str(target))
    with pytest.raises(CommandError, match="tts_engine_unknown"):
        run("synthesize", "Hello.", "--engine", "nope", "--out", str(target), "--in-process")
    with pytest.raises(CommandError, match="tts_empty_text"):
        run("synthesize", "  ", "--out", str(target), "--in-process")
    with pytest.raises(CommandError, match="does not exist"):
        run("synthesize", "Hello.", "--out", str(tmp_path / "no" / "such" / "dir.wav"))
    assert not target.exists()


def test_tts_latency_reports_medians(settings):
    settings.VOICE_JOBS_IN_PROCESS = True
    out = run("tts_latency", "--runs", "2", "--warmup", "0", "--engine", "espeak-ng", "--text", "Hello there.")
    assert "Jobs run in this process (embedded); 2 runs per text" in out
    assert "text 1: espeak-ng" in out and "first chunk" in out and "until the job started" in out


# -- voice_status ---------------------------------------------------------------------------------
def test_voice_status_text(settings):
    settings.VOICE_TTS_ENGINES = ["cosyvoice2", "piper", "espeak-ng"]
    out = run("voice_status", "--timeout", "0.5")
    assert "TTS engines (fallback order):" in out
    for name in ("cosyvoice2", "piper", "espeak-ng"):
        assert f"  {name}" in out
    assert "ASR engine: vosk" in out and "Vosk model:" in out and "Piper voice:" in out
    assert "GPU:" in out and "TensorRT:" in out and "Workers:" in out and "MCP servers:" in out


def test_voice_status_json_with_load(settings):
    settings.VOICE_TTS_ENGINES = ["no-such-engine", "piper"]
    report = json.loads(run("voice_status", "--json", "--load", "--timeout", "0.5"))
    assert set(report) == {"services", "llm", "engines", "models", "gpu", "tensorrt", "workers", "mcp", "ready"}
    chain = {e["name"]: e for e in report["engines"]["tts_chain"]}
    assert chain["piper"]["loaded"] is True and chain["piper"]["sample_rate"] == 22050
    assert chain["no-such-engine"]["loaded"] is False and chain["no-such-engine"]["code"] == "tts_engine_unknown"
    assert report["engines"]["asr"]["loaded"] is True
    assert report["models"]["vosk"]["in_use"]
    assert report["models"]["piper"]["present"] is True
    assert report["models"]["cosyvoice2"]["missing"]  # no CosyVoice2 weights on this machine
    assert isinstance(report["gpu"]["cuda"], bool)


@pytest.mark.django_db
def test_voice_status_lists_the_mcp_servers():
    from tools.models import McpServer
    from tools.tests.mcp_server import HttpServer

    assert "MCP servers: none configured" in run("voice_status", "--timeout", "0.5")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    server = HttpServer(token="status-token")
    try:
        McpServer.objects.create(
            name="remote",
            transport="http",
            url=server.url,
            headers={"Authorization": "Bearer status-token"},
            allowed_tools=["add", "nosuch"],
            available_to_regular_users=True,
        )
        McpServer.objects.create(name="refused", transport="http", url=refused, allowed_tools=["add"])
        McpServer.objects.create(name="off", transport="stdio", command="/usr/bin/false", enabled=False)
        out = run("voice_status", "--timeout", "10")
        report = json.loads(run("voice_status", "--json", "--timeout", "10"))["mcp"]
    finally:
        server.stop()
    assert "MCP server off (stdio /usr/bin/false, disabled, staff only): allowed none; not asked" in out
    assert (
        f"MCP server remote (http {server.url}, enabled, everyone): allowed add, nosuch; offers add; "
        "allowed but not listed: nosuch"
    ) in out
    assert f"MCP server refused (http {refused}, enabled, staff only): allowed add; DOWN (" in out
    servers = {s["name"]: s for s in report["servers"]}
    assert list(servers) == ["off", "refused", "remote"]
    assert servers["remote"]["listed"] == ["add", "echo", "environment", "secret", "block"]
    assert (servers["remote"]["offered"], servers["remote"]["error"]) == (["add"], None)
    assert servers["refused"]["listed"] is None and servers["refused"]["error"]
    assert (servers["off"]["listed"], servers["off"]["error"], servers["off"]["for"]) == (None, None, "staff")
    assert "status-token" not in out  # headers are not shown


@pytest.mark.services_only
def test_voice_status_lists_the_worker(settings, celery_worker_process):
    settings.VOICE_JOBS_IN_PROCESS = False
    report = json.loads(run("voice_status", "--json", "--timeout", "2"))
    worker = report["workers"]["workers"][celery_worker_process]
    queues = [settings.VOICE_ASR_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE, settings.VOICE_TTS_QUEUE]
    assert worker["queues"] == sorted(queues)
    assert worker["engines"]["engines"]["tts"]["engine"] == "piper"
    assert worker["engines"]["engines"]["asr"]["engine"] == "vosk"
    assert report["workers"]["unserved_queues"] == []


# -- download_models -------------------------------------------------------------------------------
def vosk_zip(path: Path, top="vosk-model-test-0.1", *, complete=True) -> bytes:
    files = {"am/final.mdl": b"\0" * 5000, "conf/model.conf": b"--min-active=200\n", "graph/Gr.fst": b"g" * 3000}
    if complete:
        files["graph/HCLr.fst"] = b"h" * 3000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # stored: ~11 kB, so a resume is mid-file
        for name, data in files.items():
            zf.writestr(f"{top}/{name}", data)
    return path.read_bytes()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one folder, with HTTP Range support (which SimpleHTTPRequestHandler lacks)."""

    ranges: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        target = Path(self.directory) / self.path.lstrip("/")
        if not target.is_file():
            self.send_error(404)
            return
        data = target.read_bytes()
        wanted = self.headers.get("Range")
        self.ranges.append(wanted)
        if wanted and wanted.startswith("bytes="):
            start = int(wanted[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def file_server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (RangeHandler,), {"ranges": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: handler(*a, directory=str(folder), **kw)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", handler.ranges
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_resumes_verifies_and_extracts(file_server, tmp_path):
    folder, base, ranges = file_server
    data = vosk_zip(folder / "vosk-model-test-0.1.zip")
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "vosk-model-test-0.1.zip.part").write_bytes(data[:1000])  # an interrupted earlier attempt
    digest = hashlib.sha256(data).hexdigest()
    out = run(
        "download_models", "--vosk", "--vosk-url", f"{base}/vosk-model-test-0.1.zip",
        "--dest", str(dest), "--sha256", digest, "--size", str(len(data)),
    )  # fmt: skip
    assert ranges == ["bytes=1000-"]
    model = dest / "vosk-model-test-0.1"
    assert (model / "am" / "final.mdl").read_bytes() == b"\0" * 5000
    assert (model / "graph" / "HCLr.fst").is_file()
    assert f"Vosk model ready: {model}" in out
    assert sorted(p.name for p in dest.iterdir()) == ["vosk-model-test-0.1"]  # no archive or temp folder left


def test_download_refuses_a_wrong_checksum(file_server, tmp_path):
    folder, base, _ = file_server
    vosk_zip(folder / "m.zip")
    with pytest.raises(CommandError, match="SHA-256"):
        run("download_models", "--vosk", "--vosk-url", f"{base}/m.zip", "--dest", str(tmp_path), "--sha256", "0" * 64)
    assert not (tmp_path / "vosk-model-test-0.1").exists()


def test_install_refuses_broken_or_incomplete_archives(tmp_path):
    dest = tmp_path / "models"
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(vosk_zip(tmp_path / "whole.zip")[:-200])
    with pytest.raises(CommandError, match="not a valid zip"):
        run("download_models", "--vosk-zip", str(truncated), "--dest", str(dest))
    incomplete = tmp_path / "incomplete.zip"
    vosk_zip(incomplete, complete=False)
    with pytest.raises(CommandError, match=r"is not a Vosk model: it lacks graph/HCLG\.fst"):
        run("download_models", "--vosk-zip", str(incomplete), "--dest", str(dest))
    assert not (dest / "vosk-model-test-0.1").exists()
    out = run("download_models", "--vosk-zip", str(tmp_path / "whole.zip"), "--dest", str(dest))
    assert "Vosk model ready" in out and (dest / "vosk-model-test-0.1" / "conf" / "model.conf").is_file()


def test_download_offline_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CommandError, match=r"127\.0\.0\.1:\d+ cannot be reached") as info:
        run("download_models", "--vosk", "--vosk-url", f"http://127.0.0.1:{port}/m.zip", "--dest", str(tmp_path))
    assert "--vosk-zip" in str(info.value)


def test_download_needs_a_choice_and_modelscope():
    with pytest.raises(CommandError, match="Say what to download"):
        run("download_models")
    try:
        import modelscope  # noqa: F401
    except ImportError:
        with pytest.raises(CommandError, match="modelscope is not installed"):
            run("download_models", "--cosyvoice")


# -- build_trt_engine -------------------------------------------------------------------------------
def test_build_trt_engine_needs_a_gpu_host():
    try:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA host: this test is about hosts without one")
    except ImportError:
        pass
    with pytest.raises(CommandError, match="CUDA"):
        run("build_trt_engine")


def test_synthesize_speaks_the_text_for_the_ear(tmp_path, monkeypatch):
    from .test_tts import FakeEngine

    heard = []

    class Recording(FakeEngine):
        def stream(self, text, voice=None, language=None):
            heard.append(text)
            yield from super().stream(text, voice)

    monkeypatch.setitem(registry._engines, "default", Recording([b"\1\0" * 2205]))
    run(
        "synthesize",
        "**Hi** there 🎉, see https://example.com at 9:30 am.",
        "--out",
        str(tmp_path / "o.wav"),
        "--in-process",
    )
    assert heard == ["Hi there, see a link at nine thirty A M."]
