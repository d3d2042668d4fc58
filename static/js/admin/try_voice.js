// The speaker admin's "try this voice": post the sentence, play the WAV that comes back in the form's
// <audio>, and say which engine and voice spoke and whether it cloned the speaker.
import { loadStrings, t } from "../i18n.js";
import { describeVoice, voiceInfo } from "./voice_text.js";

async function errorText(response) {
  let error = { code: `http_${response.status}`, message: String(response.status) };
  try {
    const body = await response.json();
    if (body && body.error) error = body.error;
  } catch {
    // not JSON (an HTML error page): the status says it
  }
  const known = t(`error.${error.code}`);
  return known === `error.${error.code}` ? t("failed", { message: error.message }) : known;
}

async function speak(form) {
  const button = form.querySelector(".mm-try-speak");
  const audio = form.querySelector(".mm-try-audio");
  const status = form.querySelector(".mm-try-status");
  button.disabled = true;
  form.dataset.state = "working";
  status.textContent = t("working");
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "audio/wav, application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      status.textContent = await errorText(response);
      form.dataset.state = "error";
      return;
    }
    const info = voiceInfo(response.headers);
    const blob = await response.blob();
    if (audio.src) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(blob);
    audio.hidden = false;
    form.dataset.engine = info.engine;
    form.dataset.clones = String(info.clones);
    status.textContent = describeVoice(info, t);
    form.dataset.state = "done";
    audio.play().catch(() => {
      // autoplay refused: the controls are there to press play
    });
  } catch {
    status.textContent = t("network");
    form.dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

loadStrings(document.getElementById("mm-try-strings"));
for (const form of document.querySelectorAll("form.mm-try-voice")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    speak(form);
  });
}
