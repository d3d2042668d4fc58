"""voice.speech_text: what a reply says when it is spoken."""

import pytest

from voice.speech_text import EarText, for_the_ear, sentence_language

CASES = [
    # markdown
    ("## 今天的计划", "今天的计划"),
    ("**注意**：别迟到。", "注意：别迟到。"),
    ("***很*重要***", "很重要"),
    ("This is **very *really* important**.", "This is very really important."),
    ("~~old~~ new", "old new"),
    ("- 第一项", "第一项"),
    ("1. Buy milk", "Buy milk"),
    ("> a quote", "a quote"),
    ("---", ""),
    ("| 名称 | 价格 |", "名称，价格"),
    ("|---|:---:|", ""),
    ("| Name | Age |", "Name, Age"),
    ("See [the docs](https://example.com/docs).", "See the docs."),
    ("![a cat](cat.png)", "a cat"),
    ("![](cat.png)", ""),
    ("snake_case_name stays", "snake_case_name stays"),
    # code
    ("Run `pip install` first.", "Run pip install first."),
    ("看代码：\n```python\nprint(1)\n```\n运行它。", "看代码：\n运行它。"),
    ("```\nonly code\n```", ""),
    # URLs and e-mail
    ("详情见 https://example.com/a?b=1 。", "详情见链接。"),
    ("Go to www.example.com now.", "Go to a link now."),
    ("Mail bob@example.org today.", "Mail an e-mail address today."),
    ("https://example.com", "a link"),
    # emoji and symbols
    ("太好了🎉", "太好了"),
    ("👨\u200d👩\u200d👧\u200d👦 family 🇨🇳 👍🏽", "family"),
    ("🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f Go", "Go"),
    ("🚀✨", ""),
    # Chinese numbers
    ("2024年3月5日下午14:30开会。", "二零二四年三月五日下午十四点三十分开会。"),
    ("会议在2024/3/5。", "会议在二零二四年三月五日。"),
    ("3/5见。", "三月五日见。"),
    ("九点零五：9:05", "九点零五：九点零五分"),
    ("涨了50%，跌了12.5%。", "涨了百分之五十，跌了百分之十二点五。"),
    ("温度-3.5℃到25°C。", "温度零下三点五摄氏度到二十五摄氏度。"),
    ("跑了5km，重8kg，高180cm，内存16GB。", "跑了五千米，重八千克，高一百八十厘米，内存十六吉字节。"),
    ("负数-7，还剩0.25元。", "负数负七，还剩零点二五元。"),
    ("共有12,345人。", "共有一万二千三百四十五人。"),
    ("电话13800138000", "电话一三八零零一三八零零零"),
    ("买了2个苹果，等3-5天。", "买了两个苹果，等三到五天。"),
    ("我用Python写了3个程序。", "我用Python写了三个程序。"),
    # English numbers
    ("On 2024-03-05 at 14:30.", "On March fifth, twenty twenty-four at fourteen thirty."),
    ("It rose 50% to 3.5 km.", "It rose fifty percent to three point five kilometers."),
    ("It is -7 degrees, 25°C.", "It is minus seven degrees, twenty-five degrees Celsius."),
    ("Meet at 9:05 am.", "Meet at nine oh five A M."),
    ("The 1st of 12,345 people.", "The first of twelve thousand, three hundred and forty-five people."),
    ("In 1999 we had 1 kg and 2 GB.", "In nineteen ninety-nine we had one kilogram and two gigabytes."),
    ("Call 3-5 times on 3/5.", "Call three to five times on March fifth."),
]


@pytest.mark.parametrize("shown, heard", CASES)
def test_for_the_ear(shown, heard):
    assert for_the_ear(shown) == heard


def test_without_numbers_only_the_marks_go():
    assert for_the_ear("**50%** of 2024 🎉", numbers=False) == "50% of 2024"
    assert for_the_ear("气温25℃ https://x.cn", numbers=False) == "气温25℃ 链接"


def test_a_text_without_letters_is_read_in_the_users_language():
    assert for_the_ear("14:30", "en") == "fourteen thirty"
    assert for_the_ear("14:30", "zh") == "十四点三十分"


@pytest.mark.parametrize(
    "text, fallback, language",
    [
        ("你好 world", "en", "zh"),
        ("Hello there", "zh", "en"),
        ("こんにちは", None, "ja"),
        ("안녕하세요", None, "ko"),
        ("14:30", "en", "en"),
        ("14:30", None, "zh"),
    ],
)
def test_sentence_language(text, fallback, language):
    assert sentence_language(text, fallback) == language


def test_ear_text_follows_a_fence_across_sentences():
    ear = EarText()
    pieces = ["Here:\n", "```python\n", "print(1)\n", "~~~ not a close\n", "```\n", "Run it at 9:00."]
    assert [ear.feed(p) for p in pieces] == ["Here:", "", "", "", "", "Run it at nine o'clock."]
