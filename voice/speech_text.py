"""Text for the ear: what a reply says when it is spoken rather than read.

The displayed text keeps everything the LLM wrote; what goes to synthesis is the same text without
what no one reads aloud, and with the numbers an engine would misread written as words.

- `for_the_ear(text, language)` cleans one piece of text: markdown marks go (headings, emphasis,
  lists, quotes, rules, tables become their cells, links their text, images their alt text), inline
  code keeps its words, a fenced code block says nothing (the screen shows it; a lone "code" in the
  middle of speech sounds like a glitch), a bare URL or e-mail address becomes "链接"/"a link" ("详情见
  链接"), emoji and other symbols no engine reads go (by Unicode category, so ZWJ sequences, flags,
  skin tones and keycaps go whole). Then, with `numbers=True`, numbers, dates, times, percentages,
  temperatures and common units are written as words of the sentence's language (Chinese through
  cn2an, English through num2words); an engine with its own text frontend (CosyVoice2) needs only the
  cleaning (`numbers=False`).
- `EarText` does the same sentence by sentence for a reply cut while it streams (voice.text cuts at
  newlines, so a fenced block arrives as several sentences): it remembers whether it is inside a fence.
- `sentence_language(text, fallback)`: Han -> zh, kana -> ja, hangul -> ko, Latin -> en, else the
  fallback (the user's language). A Chinese sentence with a few English words stays Chinese.
"""

import re
import unicodedata
from decimal import Decimal

import cn2an  # type: ignore[import-untyped]
from num2words import num2words  # type: ignore[import-untyped]

from .text import speakable

# Symbols an engine may read (or that the number pass turns into words): kept when symbols go.
_KEEP_SYMBOLS = set("℃℉°‰")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_FENCED_BLOCK = re.compile(r"^\s{0,3}(```|~~~).*?(?:^\s{0,3}\1[^\n]*$|\Z)", re.S | re.M)
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>()\[\]\u3000-\u303f\uff01-\uff5e]+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])")
_AUTOLINK = re.compile(r"<(?:https?://|mailto:)[^>]*>", re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+|\s+#+\s*$", re.M)
_QUOTE = re.compile(r"^\s{0,3}(?:>\s?)+", re.M)
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?", re.M)
_RULE = re.compile(r"^\s{0,3}(?:[-*_]\s*){3,}$", re.M)
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$", re.M)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_EMPHASIS = (
    re.compile(r"(\*{1,3})(?=\S)(.+?)(?<=\S)\1"),
    re.compile(r"(?<![\w])(_{1,3})(?=\S)(.+?)(?<=\S)\1(?![\w])"),
    re.compile(r"(~~)(?=\S)(.+?)(?<=\S)\1"),
)
_STRAY_STARS = re.compile(r"(?<![\d\s])\*+|\*+(?![\d\s])")  # left over from unbalanced emphasis
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LATIN = re.compile(r"[A-Za-z]")

LINK_WORD = {"zh": "链接", "en": "a link"}
EMAIL_WORD = {"zh": "邮箱地址", "en": "an e-mail address"}


def sentence_language(text: str, fallback: str | None = None) -> str:
    """The language of a sentence from its script; `fallback` (the user's language) when it has none."""
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _HAN.search(text):
        return "zh"
    if _LATIN.search(text):
        return "en"
    return fallback or "zh"


def for_the_ear(text: str, language: str | None = None, *, numbers: bool = True) -> str:
    """`text` as it should be spoken: "" when nothing is left to say. `language` is the tie-breaker
    for text with no letters ("14:30"); `numbers=False` leaves numbers to the engine's own frontend."""
    text = _FENCED_BLOCK.sub("\n", text)
    return _clean(text, language, numbers)


class EarText:
    """`for_the_ear` for the sentences of one reply, in order, remembering open code fences."""

    def __init__(self, language: str | None = None, *, numbers: bool = True):
        self.language, self.numbers = language, numbers
        self._in_fence: str | None = None

    @property
    def in_fence(self) -> bool:
        """The reply is inside a code fence: what comes next is not said until the fence closes."""
        return self._in_fence is not None

    def feed(self, sentence: str) -> str:
        kept = []
        for line in sentence.split("\n"):
            fence = _FENCE.match(line)
            if self._in_fence:
                if fence and fence.group(1) == self._in_fence:
                    self._in_fence = None
                continue
            if fence:
                self._in_fence = fence.group(1)
                continue
            kept.append(line)
        return _clean("\n".join(kept), self.language, self.numbers)


def _clean(text: str, language: str | None, numbers: bool) -> str:
    lang = sentence_language(text, language)
    text = _strip_markdown(text)
    text = _AUTOLINK.sub(" ", text)
    text = _EMAIL.sub(f" {EMAIL_WORD.get(lang, '')} ", text)
    text = _URL.sub(lambda m: f" {LINK_WORD.get(lang, '')}{_trailing_stop(m.group())} ", text)
    text = _drop_symbols(text)
    if numbers:
        if lang == "zh":
            text = _numbers_zh(text)
        elif lang == "en":
            text = _numbers_en(text)
    text = re.sub(r"[ \t\u3000]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    text = re.sub(r" ?([，。！？；：、,.!?;:])(?=\s|$|[，。！？；：、])", r"\1", text)
    text = re.sub(r"\s+([，。！？；：、）」』》])", r"\1", text)
    text = re.sub(r"(?<=[\u3000-\u9fff]) (?=[\u3000-\u9fff])", "", text)
    return text if speakable(text) else ""


def _trailing_stop(url: str) -> str:
    return url[-1] if url[-1] in ".,;:!?" else ""


def _strip_markdown(text: str) -> str:
    text = _TABLE_SEPARATOR.sub("", text)
    text = _RULE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = _INLINE_CODE.sub(r"\2", text)
    text = "\n".join(_table_row(line) for line in text.split("\n"))
    previous = None
    while previous != text:  # nested emphasis: ***a*** / **a *b* c**
        previous = text
        for pattern in _EMPHASIS:
            text = pattern.sub(r"\2", text)
    return _STRAY_STARS.sub("", text)


def _table_row(line: str) -> str:
    if line.count("|") < 2:
        return line
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    joiner = "，" if _HAN.search(line) else ", "
    return joiner.join(c for c in cells if c)


def _drop_symbols(text: str) -> str:
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in _KEEP_SYMBOLS:
            out.append(ch)
        elif category in ("So", "Sk", "Co", "Cn") and ch not in "^`":
            out.append(" ")
        elif ch in "\u200d\u20e3" or 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0000 <= ord(ch) <= 0xE007F:
            continue  # ZWJ, keycap, variation selectors, tag characters (subdivision flags)
        else:
            out.append(ch)
    return "".join(out)


# -- numbers: Chinese ---------------------------------------------------------------------------

_NUM = r"-?\d+(?:\.\d+)?"
_UNITS_ZH = {
    "km/h": "千米每小时",
    "km": "千米",
    "kg": "千克",
    "cm": "厘米",
    "mm": "毫米",
    "m": "米",
    "g": "克",
    "ml": "毫升",
    "L": "升",
    "TB": "太字节",
    "GB": "吉字节",
    "MB": "兆字节",
    "KB": "千字节",
    "kb": "千字节",
}
_UNITS_EN = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "kg": ("kilogram", "kilograms"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "g": ("gram", "grams"),
    "ml": ("milliliter", "milliliters"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "TB": ("terabyte", "terabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"),
    "KB": ("kilobyte", "kilobytes"),
}


def _unit_pattern(units) -> str:
    return "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))


_DATE_YMD = re.compile(r"(?<!\d)(\d{4})\s*(?:年|[/.-])\s*(\d{1,2})\s*(?:月|[/.-])\s*(\d{1,2})(?!\d)\s*[日号]?")
_YEAR_ZH = re.compile(r"(?<!\d)(\d{4})\s*年")
_MONTH_DAY_ZH = re.compile(r"(?<!\d)(\d{1,2})\s*月\s*(\d{1,2})\s*([日号])")
_SLASH = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])")
_TIME = re.compile(r"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?(?![\d:])")
_PERCENT = re.compile(rf"({_NUM})\s*[%％]")
_TEMPERATURE = re.compile(rf"({_NUM})\s*(?:℃|°\s*C|摄氏度)")
_FAHRENHEIT = re.compile(rf"({_NUM})\s*(?:℉|°\s*F)")
_DEGREE = re.compile(rf"({_NUM})\s*°")
_UNIT_ZH = re.compile(rf"({_NUM})\s*({_unit_pattern(_UNITS_ZH)})(?![A-Za-z])")
_GROUPED = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d])")
_DIGIT_STRING = re.compile(r"(?<![\d.])(?:0\d+|\d{11,}|\d{3,4}-\d{7,8})(?![\d.])")
_ANY_NUMBER = re.compile(r"(?<![\d.])(-?)(\d+(?:\.\d+)?)(?![\d])")
_RANGE = re.compile(r"(?<=\d)\s*[-–~～]\s*(?=\d)")
_TWO_COUNTED = re.compile(r"(?<![\d.])2(?=\s*(?:个|只|位|件|本|张|条|种|次|天|岁|周|年|小时|分钟|点))")
_ZH_DIGITS = "零一二三四五六七八九"


def _zh_digits(digits: str) -> str:
    return "".join(_ZH_DIGITS[int(d)] for d in digits)


def _zh(number: str) -> str:
    """A number (integer or decimal, maybe negative) in Chinese words: 负三点五, 一万二千三百四十五."""
    return cn2an.an2cn(number, "low")


def _zh_clock(hour: str, minute: str, second: str | None) -> str:
    words = f"{_zh(str(int(hour)))}点"
    if int(minute):
        words += ("零" if minute.startswith("0") else "") + f"{_zh(str(int(minute)))}分"
    if second and int(second):
        words += f"{_zh(str(int(second)))}秒"
    return words


def _zh_temperature(number: str, unit: str) -> str:
    if number.startswith("-"):
        return f"零下{_zh(number[1:])}{unit}"
    return f"{_zh(number)}{unit}"


def _numbers_zh(text: str) -> str:
    text = _GROUPED.sub(lambda m: m.group().replace(",", ""), text)
    text = _DATE_YMD.sub(lambda m: f"{_zh_digits(m[1])}年{_zh(str(int(m[2])))}月{_zh(str(int(m[3])))}日", text)
    text = _YEAR_ZH.sub(lambda m: f"{_zh_digits(m[1])}年", text)
    text = _MONTH_DAY_ZH.sub(lambda m: f"{_zh(str(int(m[1])))}月{_zh(str(int(m[2])))}{m[3]}", text)
    text = _SLASH.sub(_zh_slash, text)
    text = _TIME.sub(lambda m: _zh_clock(m[1], m[2], m[3]), text)
    text = _PERCENT.sub(lambda m: f"百分之{_zh(m[1])}", text)
    text = _TEMPERATURE.sub(lambda m: _zh_temperature(m[1], "摄氏度"), text)
    text = _FAHRENHEIT.sub(lambda m: _zh_temperature(m[1], "华氏度"), text)
    text = _DEGREE.sub(lambda m: f"{_zh(m[1])}度", text)
    text = _UNIT_ZH.sub(lambda m: f"{_zh(m[1])}{_UNITS_ZH[m[2]]}", text)
    # Phone numbers and codes: digit by digit.
    text = _DIGIT_STRING.sub(lambda m: _zh_digits(m.group().replace("-", "")), text)
    text = _RANGE.sub("到", text)
    text = _TWO_COUNTED.sub("两", text)
    return _ANY_NUMBER.sub(lambda m: _zh_signed(m, text), text)


def _zh_slash(m: re.Match) -> str:
    """3/5: a date (三月五日) when it can be one, else a fraction (五分之十三)."""
    a, b = int(m[1]), int(m[2])
    if 1 <= a <= 12 and 1 <= b <= 31:
        return f"{_zh(str(a))}月{_zh(str(b))}日"
    return f"{_zh(str(b))}分之{_zh(str(a))}"


def _zh_signed(m: re.Match, text: str) -> str:
    sign, number = m[1], m[2]
    before = text[m.start() - 1] if m.start() else ""
    if sign and (before.isalnum() and not _HAN.match(before)):
        return f"{sign}{_zh(number)}"  # a range or a hyphen after a word ("A-3"), not a minus sign
    return _zh(sign + number)


# -- numbers: English ---------------------------------------------------------------------------

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_DATE_ISO = re.compile(r"(?<!\d)(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})(?!\d)")
_ORDINAL = re.compile(r"(?<!\d)(\d+)(?:st|nd|rd|th)\b")
_YEAR_EN = re.compile(r"\b(in|since|by|until|from|of|year)\s+(1[1-9]\d\d|20\d\d)\b", re.I)
_UNIT_EN = re.compile(rf"({_NUM})\s*({_unit_pattern(_UNITS_EN)})(?![A-Za-z])")
_AMPM = re.compile(r"(?<![\d:])(\d{1,2})(?::([0-5]\d))?\s*([ap])(?:\.m\.|m)(?![A-Za-z])", re.I)


def _en(number: str) -> str:
    value = Decimal(number)
    return num2words(int(value) if value == value.to_integral_value() and "." not in number else value, lang="en")


def _en_clock(hour: str, minute: str | None, second: str | None = None) -> str:
    words = _en(str(int(hour)))
    if minute and int(minute):
        words += (" oh " if minute.startswith("0") else " ") + _en(str(int(minute)))
    elif not second:
        words += " o'clock" if int(hour) <= 12 else " hundred"
    if second and int(second):
        words += f" and {_en(str(int(second)))} seconds"
    return words


def _en_date(year: str | None, month: str, day: str) -> str:
    m, d = int(month), int(day)
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return f"{month}/{day}" if year is None else f"{year}-{month}-{day}"
    words = f"{_MONTHS[m - 1]} {num2words(d, to='ordinal')}"
    return f"{words}, {num2words(int(year), to='year')}" if year else words


def _en_unit(number: str, unit: str) -> str:
    one, many = _UNITS_EN[unit]
    return f"{_en(number)} {one if Decimal(number) == 1 else many}"


def _en_temperature(number: str, scale: str) -> str:
    return f"{_en(number)} degree{'' if Decimal(number) == 1 else 's'} {scale}"


def _en_slash(m: re.Match) -> str:
    """3/5: a date (March fifth, as en-US writes it) when it can be one, else "three over five"."""
    a, b = int(m[1]), int(m[2])
    if 1 <= a <= 12 and 1 <= b <= 31:
        return _en_date(None, m[1], m[2])
    return f"{_en(m[1])} over {_en(m[2])}"


def _numbers_en(text: str) -> str:
    text = _GROUPED.sub(lambda m: m.group().replace(",", ""), text)
    text = _DATE_ISO.sub(lambda m: _en_date(m[1], m[2], m[3]), text)
    text = _SLASH.sub(_en_slash, text)
    text = _AMPM.sub(lambda m: f"{_en_clock(m[1], m[2])} {m[3].upper()} M", text)
    text = _TIME.sub(lambda m: _en_clock(m[1], m[2], m[3]), text)
    text = _PERCENT.sub(lambda m: f"{_en(m[1])} percent", text)
    text = _TEMPERATURE.sub(lambda m: _en_temperature(m[1], "Celsius"), text)
    text = _FAHRENHEIT.sub(lambda m: _en_temperature(m[1], "Fahrenheit"), text)
    text = _DEGREE.sub(lambda m: _en_temperature(m[1], "").rstrip(), text)
    text = _UNIT_EN.sub(lambda m: _en_unit(m[1], m[2]), text)
    text = _ORDINAL.sub(lambda m: num2words(int(m[1]), to="ordinal"), text)
    text = _YEAR_EN.sub(lambda m: f"{m[1]} {num2words(int(m[2]), to='year')}", text)
    text = _DIGIT_STRING.sub(lambda m: " ".join(_en(d) for d in m.group() if d != "-"), text)
    text = _RANGE.sub(" to ", text)
    return _ANY_NUMBER.sub(lambda m: _en_signed(m, text), text)


def _en_signed(m: re.Match, text: str) -> str:
    sign, number = m[1], m[2]
    before = text[m.start() - 1] if m.start() else ""
    if sign and before.isalnum():
        return f"-{_en(number)}"  # a hyphen after a word ("A-3"), not a minus sign
    return _en(sign + number)
