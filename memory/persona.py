"""The companion's persona and the memory part of the system message, in the user's language.

Blank persona fields take the defaults of the language the user writes in (Chinese text: the
Chinese defaults; other text: the English ones; no text: LANGUAGE_CODE). The sections are
delimited by tags, so the model can tell what the user said from what it remembers.
"""

import re
from dataclasses import dataclass

from django.conf import settings

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")

DEFAULTS = {
    "zh": {
        "name": "魔镜",
        "personality": "温暖、耐心、真诚，说话简洁，偶尔幽默",
        "address": "用用户告诉你的名字或称呼；不知道时就说“你”",
    },
    "en": {
        "name": "MagicMirror",
        "personality": "warm, patient and sincere; brief, with a light sense of humour",
        "address": "by the name they told you, else simply “you”",
    },
}

TEXTS = {
    "zh": {
        "persona": "你的名字：{name}。你的性格：{personality}。称呼用户：{address}。",
        "memories": "以下是你记得的关于用户的事（来自以前的对话，可能已过时；以用户现在说的为准，不要逐条复述）：",
        "summary": "本次对话较早部分的摘要（之后的消息照原样附上）：",
    },
    "en": {
        "persona": "Your name: {name}. Your personality: {personality}. Address the user {address}.",
        "memories": "What you remember about the user (from earlier conversations, possibly out of date; what "
        "the user says now wins; do not recite it):",
        "summary": "A summary of the earlier part of this conversation (the later messages follow as they are):",
    },
}


def language_of(text: str | None) -> str:
    """'zh' or 'en': the defaults' language for a user who writes `text`."""
    if text and _HAN.search(text):
        return "zh"
    if text and _LATIN.search(text):
        return "en"
    return "zh" if settings.LANGUAGE_CODE.lower().startswith("zh") else "en"


def language_of_code(code: str | None) -> str:
    """'zh' or 'en' for a Django language code (the interface language)."""
    return "zh" if (code or settings.LANGUAGE_CODE).lower().startswith("zh") else "en"


@dataclass(frozen=True)
class Persona:
    name: str = ""
    personality: str = ""
    address: str = ""

    def over(self, base: "Persona") -> "Persona":
        """This persona's fields, each blank one taken from `base` (a speaker's persona over the user's)."""
        return Persona(
            name=self.name or base.name,
            personality=self.personality or base.personality,
            address=self.address or base.address,
        )

    def filled(self, language: str) -> "Persona":
        return self.over(Persona(**DEFAULTS[language]))


def system_message(*, base: str, persona: Persona, language: str, memories: list[str], summary: str = "") -> str:
    texts = TEXTS[language]
    filled = persona.filled(language)
    parts = [
        base.strip(),
        texts["persona"].format(name=filled.name, personality=filled.personality, address=filled.address),
    ]
    if memories:
        lines = "\n".join(f"- {text}" for text in memories)
        parts.append(f"<memories>\n{texts['memories']}\n{lines}\n</memories>")
    if summary:
        parts.append(f"<conversation_summary>\n{texts['summary']}\n{summary}\n</conversation_summary>")
    return "\n\n".join(part for part in parts if part)
