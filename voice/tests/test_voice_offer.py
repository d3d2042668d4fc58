"""The chat and profile pages say, in the user's language, which recognition and voice they get here;
"I speak" defaults to the interface language of the request (page or WebSocket handshake)."""

import pytest
from channels.testing import WebsocketCommunicator

from speakers.selectors import user_settings_get
from voice.selectors import interface_language_from_scope, voice_offer

ZH_RECOGNITION = "识别：韩语测试模型 — 管理员运行 manage.py download_models --vosk zh 之后才能识别中文。"
ZH_VOICE = (
    "语音：espeak-ng 普通话（机械音）— 自然的声音：管理员运行 manage.py download_models --piper zh_CN-huayan-medium。"
)


@pytest.fixture
def cpu_host(settings, tmp_path):
    """This host as a fresh CPU install is: no downloaded model, the bundled Korean Vosk model and
    English Piper voice, espeak-ng."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.VOSK_MODELS = {"zh": str(tmp_path / "models" / "vosk-model-small-cn-0.22"), "en": str(tmp_path / "x")}
    settings.VOICE_TTS_ENGINES = ["cosyvoice2", "piper", "espeak-ng"]
    settings.COSYVOICE_MODEL_DIR = str(tmp_path / "models" / "CosyVoice2-0.5B")
    settings.PIPER_VOICES = {"zh": "zh_CN-huayan-medium", "en": "en_US-joe-medium"}


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/", "/accounts/profile/"])
def test_the_pages_say_what_a_chinese_speaker_gets(client, user, cpu_host, page):
    client.force_login(user)
    html = client.get(page, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert ZH_RECOGNITION in html and ZH_VOICE in html


@pytest.mark.django_db
def test_i_speak_follows_the_interface_language_until_set(client, user, cpu_host, settings):
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    html = client.get("/accounts/profile/").content.decode()
    assert "Recognition: Korean test model — English is not recognised until the administrator runs" in html
    assert "Voice: Piper en_US-joe-medium — natural." in html
    user_settings = user_settings_get(user=user)
    user_settings.spoken_language = "zh"  # set: it wins over the interface language
    user_settings.save()
    html = client.get("/").content.decode()
    assert "Recognition: Korean test model — Chinese is not recognised" in html
    assert "Voice: espeak-ng Mandarin (robotic) — a natural voice: the administrator runs" in html


def test_a_natural_voice_once_downloaded(cpu_host, settings, tmp_path):
    from django.utils import translation

    from voice.tts.piper import bundled_voice_path

    piper = tmp_path / "models" / "piper"
    piper.mkdir(parents=True)
    joe = bundled_voice_path()
    (piper / "zh_CN-huayan-medium.onnx").symlink_to(joe)
    (piper / "zh_CN-huayan-medium.onnx.json").write_text('{"language": {"code": "zh_CN"}}')
    with translation.override("zh-hans"):
        offer = voice_offer(spoken_language="zh")
    assert offer.voice == "语音：Piper zh_CN-huayan-medium — 自然的声音。" and offer.natural


def test_the_interface_language_of_a_handshake():
    assert interface_language_from_scope({"cookies": {"django_language": "en"}, "headers": []}) == "en"
    scope = {"cookies": {}, "headers": [(b"accept-language", b"en-US,en;q=0.9,zh;q=0.5")]}
    assert interface_language_from_scope(scope) == "en"
    assert interface_language_from_scope({"headers": [(b"accept-language", b"zh-CN,zh;q=0.9")]}) == "zh-hans"
    assert interface_language_from_scope({"headers": [(b"accept-language", b"fr-FR")]}) is None
    assert interface_language_from_scope({}) is None


@pytest.mark.django_db(transaction=True)
async def test_ready_says_the_spoken_language_of_the_interface(async_client, user, settings):
    from magicmirror.asgi import application

    await async_client.aforce_login(user)
    session = async_client.cookies["sessionid"].value
    headers = [
        (b"origin", b"http://testserver"),
        (b"host", b"testserver"),
        (b"cookie", f"sessionid={session}; {settings.LANGUAGE_COOKIE_NAME}=en".encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/voice/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    try:
        assert (await communicator.receive_json_from(10))["type"] == "hello"
        await communicator.send_json_to({"type": "start", "protocol": 1})
        ready = await communicator.receive_json_from(10)
        assert ready["type"] == "ready" and ready["spoken_language"] == "en"  # the site's language is zh
    finally:
        await communicator.disconnect()
