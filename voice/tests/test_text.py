import pytest

from devtools.fake_llm import tokenize
from voice.text import SentenceSplitter, join_sentences, speakable, split_sentences


def split(text, **kwargs):
    splitter = SentenceSplitter(**kwargs)
    pieces = []
    for token in tokenize(text):
        pieces += splitter.feed(token)
    return pieces, splitter.flush()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "你好！今天天气不错，我们去公园散步吧。你觉得怎么样？好的",
            ["你好！", "今天天气不错，我们去公园散步吧。", "你觉得怎么样？", "好的"],
        ),
        (
            "Hello there, my friend. The price is 3.14 dollars. Mr. Smith said hi!",
            ["Hello there,", "my friend.", "The price is 3.14 dollars.", "Mr. Smith said hi!"],
        ),
        ("“真的吗？”她问。当然！", ["“真的吗？", "她问。", "当然！"]),
        ("Wait... what?! OK.", ["Wait...", "what?!", "OK."]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("好的。😊 下一句。", ["好的。", "😊 下一句。"]),
    ],
)
def test_pieces(text, expected):
    pieces, rest = split(text, first_min_chars=8)
    assert pieces + rest == expected


def test_pieces_come_out_while_streaming_not_at_the_end():
    splitter = SentenceSplitter()
    assert splitter.feed("First sentence. Sec") == ["First sentence."]
    assert splitter.feed("ond one") == []
    assert splitter.flush() == ["Second one"]


def test_first_piece_may_end_at_a_comma_later_ones_not():
    pieces, _ = split("今天天气真不错，我们出去走走，好不好？", first_min_chars=6)
    assert pieces == ["今天天气真不错，", "我们出去走走，好不好？"]
    pieces, _ = split("好，我们走。", first_min_chars=6)
    assert pieces == ["好，我们走。"]


def test_numbers_with_commas_are_not_cut():
    pieces, _ = split("It costs 1,000 dollars now, really.", first_min_chars=4)
    assert pieces[0] == "It costs 1,000 dollars now,"


def test_long_run_on_text_is_cut_at_max_length():
    text = "这是一个没有标点的很长的句子" * 10
    pieces, rest = split(text, max_chars=40)
    assert all(len(p) <= 40 for p in pieces + rest)
    assert "".join(pieces + rest) == text
    english = "word " * 60
    pieces, rest = split(english, max_chars=50)
    assert all(len(p) <= 50 for p in pieces + rest)
    assert " ".join(pieces + rest).split() == english.split()


def test_unspeakable_text_is_not_a_piece():
    assert not speakable("😊！！")
    assert speakable("ok")
    pieces, rest = split("*** ---")
    assert pieces + rest == []


# --- split_sentences: a whole text, cut where SentenceSplitter cuts ----------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Hello there, my friend. The price is 3.14 dollars. Mr. Smith said hi!",
        "“真的吗？”她问。当然！",
        "Wait... what?! OK.",
        "Line one\nLine two",
        "你好！今天天气不错，我们去公园散步吧。你觉得怎么样？好的",
    ],
)
def test_split_sentences_breaks_where_the_streaming_splitter_does(text):
    splitter = SentenceSplitter(first_min_chars=10_000, max_chars=10_000)  # sentence ends only
    assert split_sentences(text) == splitter.feed(text) + splitter.flush()  # all at once: no closer comes late


def test_split_sentences_merges_short_pieces_and_keeps_the_text():
    assert split_sentences("Hi. Nice to see you again! Yes.", min_chars=12) == ["Hi. Nice to see you again! Yes."]
    assert split_sentences("好的。 我们走吧。", min_chars=100) == ["好的。我们走吧。"]  # no space after a full stop
    assert split_sentences("Really?!OK, fine.", min_chars=100) == ["Really?!OK, fine."]  # none where none was
    assert split_sentences("One.\n\n  Two.", min_chars=100) == ["One. Two."]
    assert split_sentences("*** ---") == ["*** ---"]  # nothing is dropped (SentenceSplitter drops it)
    assert split_sentences("  \n ") == [] and split_sentences("") == []


@pytest.mark.parametrize(
    ("sentences", "text"),
    [
        (["Hello there.", "How are you?"], "Hello there. How are you?"),
        (["你好。", "今天天气很好！"], "你好。今天天气很好！"),
        (["我们去公园吧", "OK."], "我们去公园吧OK."),
        (["See you.", "明天见。"], "See you.明天见。"),
        (["こんにちは。", "元気？"], "こんにちは。元気？"),
        (["One."], "One."),
        ([], ""),
    ],
)
def test_join_sentences_spaces_only_between_spaced_scripts(sentences, text):
    assert join_sentences(sentences) == text
