"""The JSON the memory and summary jobs ask the LLM for: schemas, and lenient parsing followed by
strict checking (anything that does not fit is None: the caller changes nothing and logs it)."""

import json
import re
from dataclasses import dataclass, field

MEMORY_UPDATE = "memory_update"
CONVERSATION_SUMMARY = "conversation_summary"

_IDS = {"type": "array", "items": {"type": "integer"}}
MEMORY_UPDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "add": {"type": "array", "items": {"type": "string"}},
        "update": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "text": {"type": "string"}},
                "required": ["id", "text"],
                "additionalProperties": False,
            },
        },
        "remove": _IDS,
        "confirm": _IDS,
    },
    "required": ["add", "update", "remove", "confirm"],
    "additionalProperties": False,
}
CONVERSATION_SUMMARY_SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def json_object(text: str) -> dict | None:
    """The JSON object in an LLM's answer: the whole text, else inside a code fence, else from the
    first "{" to the last "}" (prose around it). None when there is none."""
    candidates = [text]
    candidates += _FENCE.findall(text)
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


@dataclass
class MemoryChanges:
    add: list[str] = field(default_factory=list)
    update: list[tuple[int, str]] = field(default_factory=list)
    remove: list[int] = field(default_factory=list)
    confirm: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.update or self.remove or self.confirm)


def _ids(value) -> list[int] | None:
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return None
    return value


def memory_changes(text: str) -> MemoryChanges | None:
    """The changes in an answer to the memory job, or None if it is not exactly that shape (a
    missing list counts as empty; a wrong type anywhere refuses the whole answer)."""
    data = json_object(text)
    if data is None or set(data) - {"add", "update", "remove", "confirm"}:
        return None
    add, update = data.get("add", []), data.get("update", [])
    remove, confirm = _ids(data.get("remove", [])), _ids(data.get("confirm", []))
    if remove is None or confirm is None or not isinstance(add, list) or not isinstance(update, list):
        return None
    if not all(isinstance(item, str) for item in add):
        return None
    pairs = []
    for item in update:
        if (
            not isinstance(item, dict)
            or set(item) != {"id", "text"}
            or _ids([item["id"]]) is None
            or not isinstance(item["text"], str)
        ):
            return None
        pairs.append((item["id"], item["text"]))
    return MemoryChanges(add=add, update=pairs, remove=remove, confirm=confirm)


def summary_text(text: str) -> str | None:
    data = json_object(text)
    if data is None or not isinstance(data.get("summary"), str) or not data["summary"].strip():
        return None
    return data["summary"].strip()
