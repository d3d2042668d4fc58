"""Cutting a streamed reply into speakable pieces as it arrives.

A piece ends at a sentence mark (Chinese or English), or at a newline. A piece that grows past
`max_chars` is cut at the last comma or space (else hard). The first piece of a reply may end at
a comma once it has `first_min_chars`, so the first sound comes early. Decimal points ("3.5") and
abbreviations followed by no space are not sentence ends.
"""

import re

SENTENCE_END = "。！？!?；;…\n"
CLAUSE_END = "，,、：:"
_CLOSERS = "\"'”’)）】」』》"
_SPEAKABLE = re.compile(r"[\w\u3400-\u9fff]")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "vs", "etc", "e.g", "i.e", "no", "jr", "sr"}


def speakable(text: str) -> bool:
    """True if the text has something to say (not only punctuation, emoji or markdown)."""
    return bool(_SPEAKABLE.search(text))


class SentenceSplitter:
    def __init__(self, *, max_chars: int = 120, first_min_chars: int = 8):
        self.max_chars = max_chars
        self.first_min_chars = first_min_chars
        self._buffer = ""
        self._emitted = 0

    def feed(self, delta: str) -> list[str]:
        """Add streamed text; return the pieces that are complete."""
        self._buffer += delta
        pieces = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            self._emit(piece, pieces)
        return pieces

    def flush(self) -> list[str]:
        """The rest, at the end of the reply."""
        pieces = []
        piece, self._buffer = self._buffer, ""
        self._emit(piece, pieces)
        return pieces

    def _emit(self, piece, pieces):
        # A closing quote that arrived after its sentence was cut belongs to nothing speakable.
        piece = piece.strip().lstrip(_CLOSERS).strip()
        if piece and speakable(piece):
            pieces.append(piece)
            self._emitted += 1
        elif piece and pieces:
            pieces[-1] += piece  # trailing punctuation or emoji belongs to the previous piece

    def _find_cut(self) -> int | None:
        text = self._buffer
        for i, ch in enumerate(text):
            if ch in SENTENCE_END or (ch == "." and self._is_period_end(text, i)):
                end = i + 1
                # Keep closing quotes/brackets and repeated marks ("？！", "...") with the sentence.
                while end < len(text) and (text[end] in _CLOSERS or text[end] in SENTENCE_END or text[end] == "."):
                    end += 1
                if end == len(text) and ch == "." and not text[i + 1 :].strip(_CLOSERS + "."):
                    return None  # "Mr." or "3." at the end of the buffer: wait for the next character
                return end
            if self._emitted == 0 and ch in CLAUSE_END and i + 1 >= self.first_min_chars:
                if ch in ",:" and (i + 1 >= len(text) or text[i + 1].isdigit()):
                    continue  # "1,000" or an unfinished number
                return i + 1
        if len(text) > self.max_chars:
            window = text[: self.max_chars]
            for marks in (CLAUSE_END, " "):
                cut = max(window.rfind(m) for m in marks)
                if cut > self.max_chars // 3:
                    return cut + 1
            return self.max_chars
        return None

    @staticmethod
    def _is_period_end(text: str, i: int) -> bool:
        nxt = text[i + 1] if i + 1 < len(text) else ""
        prev = text[i - 1] if i else ""
        if prev.isdigit() and nxt.isdigit():
            return False  # 3.14
        word = text[:i].rsplit(None, 1)[-1].lower() if text[:i].strip() else ""
        if word in _ABBREVIATIONS:
            return False
        if nxt == "":
            return True  # decided when more text arrives (see _find_cut)
        return nxt.isspace() or nxt in _CLOSERS
