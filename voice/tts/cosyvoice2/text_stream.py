"""The text of one sentence as it is written, handed to upstream as the generator its bi-streaming takes.

Upstream (since 07e4775, 2025-01-23; every copy the adapter accepts) speaks a `tts_text` that is a
generator: `frontend.text_normalize` returns `[generator]` untouched, `_extract_text_token_generator`
tokenises each string it yields only when the LLM asks for the next text token, and `llm_job` runs
`llm.inference_bistream`, which reads text tokens as they come (5 text tokens for every 15 speech tokens)
and decodes to the end once the generator is exhausted. Not with vLLM (llm_job asserts it).

What this module adds, and why:
- Normalising. Upstream skips its text frontend for a generator, so the numbers, dates and units that
  `stream()` has read by upstream's text_normalize (the engine `reads_numbers`: the project's own number
  pass is left out for it) would reach the LLM as digits. So each chunk is normalised here by the
  model's own `frontend.text_normalize(chunk, split=False)` — but only whole chunks: a chunk ends after
  a space (a word, a number complete) or, in Chinese text, between two Chinese characters, and always
  holds a Chinese character in a Chinese sentence, so that it takes the Chinese path of the frontend as
  the whole sentence would (a lone "2024" would be read in English) and never ends in a comma (the
  Chinese path turns a final comma into a full stop). text_normalize strips a chunk: the space between
  two chunks is put back, or the tokenizer would join their words.
- Never raising in upstream's LLM thread except to stop it: upstream's stream waits for the LLM's end
  flag forever when that thread dies. A closed stream makes the generator raise SystemExit (as
  stopping.StoppedTokens does, the one exception threading's excepthook drops); a failing normaliser
  falls back to the raw chunk; a failing source of pieces ends the text, and the engine raises its error.
- A thread of its own takes the pieces from the caller (they may block while an LLM writes), so closing
  the stream wakes upstream's LLM thread at once, whatever the caller's iterator is doing.
- Telling when the text has ended (`on_end`, called with the text handed to upstream, in upstream's
  LLM thread, just before upstream's final decode): that decode runs until the model writes its
  end-of-speech token, with no length limit (unlike upstream's whole-text `inference`, which stops at
  20 speech tokens per text token); the engine caps it there (stopping.cap_final_decode).
"""

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from voice.text import is_chinese, word_cut_point

logger = logging.getLogger(__package__)

_END = object()  # the pieces have ended
_CLOSED = object()  # the stream was closed: upstream's LLM thread stops


class TextFeed:
    """The pieces of one sentence, taken by a thread of their own, for `text()` to hand to upstream."""

    def __init__(
        self,
        pieces: Iterable[str],
        normalise: Callable[[str], str],
        chinese: bool = False,
        on_end: Callable[[str], object] | None = None,
    ):
        self._normalise = normalise
        self._on_end = on_end
        self._chinese = chinese
        self._queue: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._has_text = threading.Event()  # a non-blank piece came, or the pieces ended
        self._blank = True
        self.error: BaseException | None = None  # what the pieces raised
        self.taken: list[str] = []  # the pieces taken from the caller, in order
        self._thread = threading.Thread(target=self._take, args=(iter(pieces),), name="cosyvoice2-text", daemon=True)
        self._thread.start()

    def _take(self, pieces: Iterator[str]) -> None:
        try:
            for piece in pieces:
                if self._closed.is_set():
                    return  # the rest of the caller's pieces are not taken
                piece = str(piece)
                self.taken.append(piece)
                self._queue.put(piece)
                if piece.strip():
                    self._blank = False
                    self._has_text.set()
        except Exception as exc:  # raised to the caller by the engine's stream
            self.error = exc
        finally:
            self._queue.put(_END)
            self._has_text.set()

    def wait_for_text(self) -> bool:
        """Until the first non-blank piece (True) or the end of blank pieces (False)."""
        self._has_text.wait()
        return not self._blank

    def raise_failure(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop: upstream's LLM thread leaves `text()` at once; the pieces thread takes no further piece."""
        self._closed.set()
        self._queue.put(_CLOSED)

    def text(self) -> Iterator[str]:
        """The generator for upstream's `tts_text`: normalised chunks of whole words, as they come."""
        buffer, spoken, space_before = "", False, False
        chinese = self._chinese
        handed: list[str] = []  # what upstream was given, for on_end
        while True:
            item = self._queue.get()
            if item is _CLOSED or self._closed.is_set():
                # Exactly SystemExit: upstream's llm_job ends quietly (threading's excepthook drops it).
                raise SystemExit("CosyVoice2 stream closed: its text ends here")
            if item is _END:
                break
            buffer += item
            chinese = chinese or any(is_chinese(char) for char in item)
            cut = word_cut_point(buffer, chinese)
            if cut:
                chunk, buffer = buffer[:cut], buffer[cut:]
                normalised = self._normalised(chunk)
                if normalised:
                    text = f" {normalised}" if spoken and (space_before or chunk[0].isspace()) else normalised
                    handed.append(text)
                    yield text
                    spoken = True
                space_before = chunk[-1].isspace()
        normalised = self._normalised(buffer)
        if normalised:
            text = f" {normalised}" if spoken and (space_before or buffer[0].isspace()) else normalised
            handed.append(text)
            yield text
        if self._on_end is not None and not self._closed.is_set():
            try:
                self._on_end("".join(handed))
            except Exception:  # the decode goes on uncapped rather than leave upstream's stream waiting
                logger.warning("CosyVoice2: the end-of-text hook failed", exc_info=True)

    def _normalised(self, chunk: str) -> str:
        if not chunk.strip():
            return ""
        try:
            return self._normalise(chunk).strip()
        except Exception:  # raising here would leave upstream's stream waiting forever
            logger.warning("CosyVoice2: normalising %r failed; it is spoken as written", chunk, exc_info=True)
            return chunk.strip()
