"""live.protocol on its own: client message parsing, start/configure validation, frames, limits."""

import json
import struct

import pytest

from live.protocol import (
    AUDIO_HEADER,
    FRAME_HEADER_DESCRIPTION,
    PROTOCOL_VERSION,
    Limits,
    SessionError,
    audio_frame,
    parse_config,
    parse_message,
)
from magicmirror.errors import ApplicationError


def config_error(message: dict, *, start: bool = False) -> SessionError:
    with pytest.raises(SessionError) as caught:
        parse_config(message, start=start)
    return caught.value


# -- parse_message ----------------------------------------------------------------------------------
def test_a_message_is_parsed_into_its_dict():
    assert parse_message('{"type": "ping", "id": 7}', max_bytes=100) == {"type": "ping", "id": 7}
    text = json.dumps({"type": "text", "text": "你好"})
    assert parse_message(text, max_bytes=100) == {"type": "text", "text": "你好"}


def test_an_oversized_message_is_refused_before_it_is_parsed():
    text = json.dumps({"type": "text", "text": "x" * 100})
    assert parse_message(text, max_bytes=len(text))["text"] == "x" * 100  # exactly at the limit: fine
    with pytest.raises(SessionError) as caught:
        parse_message(text, max_bytes=len(text) - 1)
    assert caught.value.code == "frame_too_large"
    assert str(len(text) - 1) in caught.value.message
    # Not even parsed: an oversized frame that is not JSON is still "too large", not "bad JSON".
    with pytest.raises(SessionError) as caught:
        parse_message("{" * 50, max_bytes=10)
    assert caught.value.code == "frame_too_large"


def test_the_size_limit_counts_bytes_not_characters():
    text = json.dumps({"type": "text", "text": "你" * 40}, ensure_ascii=False)
    assert len(text) < 100 < len(text.encode())
    with pytest.raises(SessionError) as caught:
        parse_message(text, max_bytes=100)
    assert caught.value.code == "frame_too_large"


@pytest.mark.parametrize("text", ["{not json", "", '{"type": "ping"', "NaN-ish", "\x00"])
def test_bad_json(text):
    with pytest.raises(SessionError) as caught:
        parse_message(text, max_bytes=1000)
    assert caught.value.code == "bad_json"
    assert caught.value.message == "That message is not valid JSON."


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", '"ping"', "42", "null", "{}", '{"type": 5}', '{"type": null}', '{"type": ["ping"]}', '{"kind": "ping"}'],
)
def test_not_an_object_with_a_string_type(text):
    with pytest.raises(SessionError) as caught:
        parse_message(text, max_bytes=1000)
    assert caught.value.code == "bad_message"
    assert '"type"' in caught.value.message


def test_session_errors_are_application_errors():
    # The consumer answers every ApplicationError with an `error` event and keeps the socket.
    with pytest.raises(ApplicationError):
        parse_message("[]", max_bytes=10)


# -- parse_config: valid values ---------------------------------------------------------------------
def test_only_the_keys_sent_are_returned():
    assert parse_config({"type": "configure"}, start=False) == {}
    assert parse_config({"type": "start", "protocol": 1}, start=True) == {}
    assert parse_config({"type": "configure", "mode": "handsfree"}, start=False) == {"mode": "handsfree"}
    # Unknown keys (and type/protocol themselves) never come back.
    assert parse_config({"type": "configure", "volume": 11, "voice_output": False}, start=False) == {
        "voice_output": False
    }


def test_every_field_at_once():
    message = {
        "type": "start",
        "protocol": 1,
        "conversation_id": 12,
        "speaker_id": 3,
        "mode": "ptt",
        "sample_rate": 48000,
        "voice_output": True,
        "phrases": ["你好", "再见"],
    }
    assert parse_config(message, start=True) == {
        "conversation_id": 12,
        "speaker_id": 3,
        "mode": "ptt",
        "sample_rate": 48000,
        "voice_output": True,
        "phrases": ["你好", "再见"],
    }


@pytest.mark.parametrize("value", [None, 12, "12", "abc", 0])
@pytest.mark.parametrize("name", ["conversation_id", "speaker_id"])
def test_ids_are_passed_through_as_sent(name, value):
    # The selectors decide (an unknown or another user's id is "not found"), not the protocol.
    assert parse_config({"type": "configure", name: value}, start=False) == {name: value}


@pytest.mark.parametrize("mode", ["ptt", "handsfree"])
def test_modes(mode):
    assert parse_config({"type": "configure", "mode": mode}, start=False) == {"mode": mode}


@pytest.mark.parametrize("value", [True, False])
def test_voice_output_booleans(value):
    assert parse_config({"type": "configure", "voice_output": value}, start=False) == {"voice_output": value}


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_sample_rates_in_range(rate):
    result = parse_config({"type": "configure", "sample_rate": rate}, start=False)
    assert result == {"sample_rate": rate} and type(result["sample_rate"]) is int


def test_phrases():
    assert parse_config({"type": "configure", "phrases": ["안녕하세요", "오늘"]}, start=False) == {
        "phrases": ["안녕하세요", "오늘"]
    }
    # Words are kept as sent (no trimming), blank ones allowed.
    assert parse_config({"type": "configure", "phrases": [" hi ", ""]}, start=False) == {"phrases": [" hi ", ""]}
    # No phrases: the recogniser's full vocabulary, said as None.
    assert parse_config({"type": "configure", "phrases": []}, start=False) == {"phrases": None}
    assert parse_config({"type": "configure", "phrases": None}, start=False) == {"phrases": None}


# -- parse_config: invalid values -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("mode", "walkie-talkie", "mode must be one of ptt, handsfree."),
        ("mode", "", "mode must be one of ptt, handsfree."),
        ("mode", 5, "mode must be one of ptt, handsfree."),
        ("mode", "PTT", "mode must be one of ptt, handsfree."),
        ("voice_output", "true", "voice_output must be true or false."),
        ("voice_output", 1, "voice_output must be true or false."),
        ("voice_output", 0, "voice_output must be true or false."),
        ("voice_output", "false", "voice_output must be true or false."),
        ("voice_output", [], "voice_output must be true or false."),
        ("sample_rate", "16000", "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", True, "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", False, "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", 16000.0, "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", 7999, "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", 48001, "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", -16000, "sample_rate must be an integer between 8000 and 48000."),
        ("sample_rate", [16000], "sample_rate must be an integer between 8000 and 48000."),
        ("phrases", "你好", "phrases must be a list of words."),
        ("phrases", {"a": "b"}, "phrases must be a list of words."),
        ("phrases", 3, "phrases must be a list of words."),
        ("phrases", [1, 2], "phrases must be a list of words."),
        ("phrases", ["ok", None], "phrases must be a list of words."),
        ("phrases", ["ok", ["nested"]], "phrases must be a list of words."),
    ],
)
@pytest.mark.parametrize("start", [True, False])
def test_invalid_fields(name, value, expected, start):
    error = config_error({"type": "start" if start else "configure", name: value}, start=start)
    assert error.code == "invalid_config"
    assert error.message == expected


def test_one_bad_field_refuses_the_whole_message():
    error = config_error({"type": "configure", "mode": "handsfree", "sample_rate": "48000"})
    assert error.code == "invalid_config" and error.message.startswith("sample_rate ")


@pytest.mark.parametrize("name", ["mode", "voice_output", "sample_rate"])
def test_null_for_a_non_nullable_field_has_the_fields_own_message(name):
    error = config_error({"type": "configure", name: None})
    assert error.code == "invalid_config"
    assert error.message.startswith(f"{name} must ")


@pytest.mark.parametrize("name", ["mode", "voice_output", "sample_rate"])
def test_null_for_a_non_nullable_field_is_refused(name):
    error = config_error({"type": "configure", name: None})
    assert error.code == "invalid_config" and error.message.startswith(f"{name} ")


# -- parse_config: protocol version ----------------------------------------------------------------
@pytest.mark.parametrize("version", [2, 0, "1", None, [1]])
def test_unsupported_protocol(version):
    error = config_error({"type": "start", "protocol": version, "mode": "ptt"}, start=True)
    assert error.code == "unsupported_protocol"
    assert repr(version) in error.message and str(PROTOCOL_VERSION) in error.message


def test_protocol_is_checked_before_the_fields():
    error = config_error({"type": "start", "protocol": 2, "sample_rate": "bad"}, start=True)
    assert error.code == "unsupported_protocol"


def test_protocol_defaults_to_one_and_configure_does_not_check_it():
    assert PROTOCOL_VERSION == 1
    assert parse_config({"type": "start", "mode": "ptt"}, start=True) == {"mode": "ptt"}
    assert parse_config({"type": "configure", "protocol": 2, "mode": "ptt"}, start=False) == {"mode": "ptt"}


@pytest.mark.parametrize("version", [True, 1.0])
def test_protocol_must_be_the_integer_one(version):
    error = config_error({"type": "start", "protocol": version}, start=True)
    assert error.code == "unsupported_protocol"


# -- frames and limits ------------------------------------------------------------------------------
def test_audio_frame_layout():
    assert AUDIO_HEADER.size == 12
    frame = audio_frame(1, 2, 3, b"\x10\x20\x30\x40")
    assert frame == b"\x01\0\0\0" + b"\x02\0\0\0" + b"\x03\0\0\0" + b"\x10\x20\x30\x40"
    assert AUDIO_HEADER.unpack(frame[:12]) == (1, 2, 3)
    big = audio_frame(2**32 - 1, 258, 65536, b"")
    assert big == b"\xff\xff\xff\xff" + b"\x02\x01\0\0" + b"\0\0\x01\0"
    assert struct.unpack("<III", big) == (2**32 - 1, 258, 65536)
    assert FRAME_HEADER_DESCRIPTION == "turn_id:uint32le, sentence_id:uint32le, seq:uint32le"


def test_audio_frame_ids_out_of_range_are_refused():
    with pytest.raises(struct.error):
        audio_frame(2**32, 0, 0, b"")
    with pytest.raises(struct.error):
        audio_frame(1, -1, 0, b"")


def test_limits_from_settings(settings):
    settings.VOICE_WS_MAX_FRAME_BYTES = 1234
    settings.VOICE_MAX_UTTERANCE_SECONDS = 9.5
    settings.VOICE_MAX_AUDIO_RATE = 3.0
    settings.CHAT_MESSAGE_MAX_CHARS = 77
    settings.VOICE_AUDIO_LEAD_SECONDS = 0.5
    limits = Limits()
    assert limits.audio_lead_s == 0.5
    assert limits.as_dict() == {
        "max_frame_bytes": 1234,
        "max_utterance_seconds": 9.5,
        "max_audio_rate": 3.0,
        "max_message_chars": 77,
        "concurrent_turns": 1,
    }
    json.dumps(limits.as_dict())  # goes to the client in `ready`


def test_limits_are_read_when_made(settings):
    before = Limits()
    settings.VOICE_WS_MAX_FRAME_BYTES = before.max_frame_bytes + 1
    assert Limits().max_frame_bytes == before.max_frame_bytes + 1
    assert before.as_dict()["max_frame_bytes"] == before.max_frame_bytes
    assert Limits(max_utterance_s=2.0).as_dict()["max_utterance_seconds"] == 2.0
