"""Which LLM endpoint the site talks to: the configured one (LLM_API_KEY set), else a local Ollama
server when one answers at OLLAMA_URL, else none (chat replies then say "not configured").

Ollama needs no key; its OpenAI-compatible API is at OLLAMA_URL/v1. Its model is OLLAMA_MODEL when
that is one of the models the server lists, else the first it lists (`/api/tags`, else `/v1/models`).
The answer is kept for the process; a miss is asked again after OLLAMA_RECHECK_SECONDS, so an
Ollama started after the site is found without a restart.
"""

import logging
import threading
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    source: str  # "configured", "ollama" or "none"
    base_url: str = ""
    api_key: str = ""
    model: str = ""  # replies
    title_model: str = ""  # titles and memory (with Ollama: the same model)
    detail: str = ""  # why, in a sentence (voice_status, the start-up log line)

    @property
    def usable(self) -> bool:
        return self.source != "none"

    def as_dict(self) -> dict:
        return {"source": self.source, "base_url": self.base_url, "model": self.model, "detail": self.detail}


_lock = threading.Lock()
_cached: tuple[tuple, Endpoint, float] | None = None  # (settings it was found with, endpoint, when)


def ollama_models(url: str, *, timeout: float) -> list[str]:
    """The model names an Ollama server lists: its native /api/tags, else the OpenAI-style /v1/models.
    Raises httpx.HTTPError (or ValueError for a body that is not the expected JSON)."""
    base = url.rstrip("/")
    response = httpx.get(f"{base}/api/tags", timeout=timeout)
    if response.status_code == 200:
        tags = [m for m in response.json().get("models", []) if isinstance(m, dict)]
        return [str(m.get("name") or m.get("model") or "") for m in tags]
    response = httpx.get(f"{base}/v1/models", timeout=timeout)
    response.raise_for_status()
    return [m["id"] for m in response.json().get("data", []) if isinstance(m, dict) and m.get("id")]


def _detect() -> Endpoint:
    if settings.LLM_API_KEY:
        return Endpoint(
            "configured",
            base_url=settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY,
            model=settings.LLM_MODEL,
            title_model=settings.LLM_TITLE_MODEL,
            detail=f"{settings.LLM_MODEL} at {settings.LLM_BASE_URL}",
        )
    url = settings.OLLAMA_URL
    if not url:
        return Endpoint("none", detail="LLM_API_KEY is not set (Ollama detection is off: OLLAMA_URL is empty).")
    try:
        models = [m for m in ollama_models(url, timeout=settings.OLLAMA_DETECT_TIMEOUT) if m]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Endpoint("none", detail=f"LLM_API_KEY is not set and no Ollama answers at {url} ({type(exc).__name__}).")
    if not models:
        return Endpoint(
            "none", detail=f"LLM_API_KEY is not set and the Ollama at {url} has no model (ollama pull MODEL)."
        )
    wanted = settings.OLLAMA_MODEL
    if wanted and wanted not in models:
        logger.warning("OLLAMA_MODEL %s is not on the Ollama at %s; using %s", wanted, url, models[0])
    model = wanted if wanted in models else models[0]
    return Endpoint(
        "ollama",
        base_url=f"{url.rstrip('/')}/v1",
        api_key="ollama",  # Ollama ignores the key; the OpenAI client insists on one
        model=model,
        title_model=model,
        detail=f"Ollama at {url}, model {model} (no LLM_API_KEY set)",
    )


def _key() -> tuple:
    return (
        settings.LLM_API_KEY,
        settings.LLM_BASE_URL,
        settings.LLM_MODEL,
        settings.OLLAMA_URL,
        settings.OLLAMA_MODEL,
    )


def llm_endpoint() -> Endpoint:
    """The endpoint in use (blocking for at most OLLAMA_DETECT_TIMEOUT the first time: call it from a
    thread in async code, or use `aendpoint`)."""
    global _cached
    key, now = _key(), time.monotonic()
    cached = _cached
    if cached and cached[0] == key and (cached[1].usable or now - cached[2] < settings.OLLAMA_RECHECK_SECONDS):
        return cached[1]
    with _lock:
        cached = _cached
        if cached and cached[0] == key and (cached[1].usable or now - cached[2] < settings.OLLAMA_RECHECK_SECONDS):
            return cached[1]
        endpoint = _detect()
        if endpoint.source == "ollama" and not (cached and cached[1] == endpoint):
            logger.info("LLM: %s", endpoint.detail)
        _cached = (key, endpoint, time.monotonic())
        return endpoint


def known_endpoint() -> Endpoint | None:
    """The endpoint already found, without asking anyone (None before the first `llm_endpoint()`)."""
    cached = _cached
    return cached[1] if cached and cached[0] == _key() else None


def log_at_start() -> Endpoint:
    """The start-up line: which LLM the site uses, or why none."""
    endpoint = llm_endpoint()
    if endpoint.source == "configured":
        logger.info("LLM: %s", endpoint.detail)
    elif endpoint.source == "none":
        logger.warning("LLM not configured: %s Chat replies will say so.", endpoint.detail)
    return endpoint  # "ollama" was logged as it was found


def reset() -> None:
    """Forget the endpoint found (tests)."""
    global _cached
    with _lock:
        _cached = None
