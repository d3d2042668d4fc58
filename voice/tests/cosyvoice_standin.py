"""A stand-in for the official CosyVoice2 class, for tests on machines without torch, a GPU or the weights.

It honours the public API of `cosyvoice.cli.cosyvoice.CosyVoice2` in FunAudioLLM/CosyVoice at commit
ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40 (2026-03-16): the constructor's signature, `sample_rate`,
`frontend.spk2info` (loaded from `{model_dir}/spk2info.pt` when present), `model.token_hop_len`,
`add_zero_shot_spk`, `save_spkinfo` and `inference_zero_shot` yielding `{'tts_speech': [1, N] float}`.
`CosyVoice2TensorPromptStandIn` is the form before upstream commit 622a3a1 (2025-12-08), where the prompt
is a 16 kHz float tensor `prompt_speech_16k` [1, T] instead of a path. `CosyVoice3StandIn` is
`cosyvoice.cli.cosyvoice.CosyVoice3` at the same commit (a subclass of CosyVoice2 there too): its
constructor has no `load_jit`, it reads `cosyvoice3.yaml`, and its LLM refuses a request whose prompt text
and text hold no `<|endofprompt|>` (upstream asserts it in `CosyVoice3LM.inference`).

What it imitates of the model's behaviour, and nothing more:
- streaming: speech comes in hops of `model.token_hop_len` tokens (25 tokens a second, 960 samples a token
  at 24 kHz), and a hop is yielded only when `pre_lookahead_len` (3) further tokens exist; the rest is
  yielded last. The first hop is padded so that prompt + hop is a multiple of the hop, as upstream does.
- the upstream bug (open PR #1849): after each streamed hop the shared `model.token_hop_len` is doubled
  (capped at 4 x 25) and never reset, so without a guard the first chunk of the next call is larger. The
  older generation (`CosyVoice2TensorPromptStandIn`) never had it: its hop stays 25.
- per-request state and the LLM thread, as `CosyVoice2Model.tts` keeps them: a request id (uuid1) keys
  `model.tts_speech_token_dict`, `model.llm_end_dict` and `model.hift_cache_dict`; a thread running
  `model.llm_job(text, prompt_text, llm_prompt_speech_token, llm_embedding, uuid)` appends the tokens of
  `model.llm.inference` (TOKENS_PER_CHAR a character, or `speech_tokens`) and sets `llm_end_dict[id]`;
  the stream waits for the tokens it needs. As upstream, only a generator that runs to its end pops the
  entries: closed early, the thread runs on to the end of the sentence and the entries stay.
- the frontend, as upstream's `CosyVoiceFrontEnd`: `add_zero_shot_spk` and `inference_zero_shot` get the
  model input from `frontend.frontend_zero_shot` (which records the prompt texts it is given, in
  `frontend.zero_shot_prompt_texts`); `text_normalize` leaves a text with `<|` and `|>` in it as it is
  (the text frontend is skipped, as upstream does for CosyVoice3's prefix); `add_zero_shot_spk` does not
  normalise its prompt text at all.
- a generator as `tts_text` (upstream's bi-streaming, since 07e4775), as upstream takes it:
  `text_normalize` returns `[generator]` untouched (no normalising); `frontend_zero_shot` gives the model
  `_extract_text_token_generator(generator)`, which takes the next string only when the LLM asks for its
  next text token and yields its tokens one by one (the stand-in's tokens are characters); `llm_job`
  asserts there is no vLLM and runs `llm.inference_bistream`, which makes MIX_RATIO[1] speech tokens for
  every MIX_RATIO[0] text tokens as they come and the rest after the text ends (the stand-in leaves out the
  prompt's speech tokens that upstream mixes in first). Each string taken is recorded in
  `calls.text_pieces` with how many chunks the model had yielded by then.
Tensors are numpy float32 arrays (torch is not installed here); `tensor_type = FakeTensor` yields objects
with torch's `.detach().cpu().numpy()` instead. spk2info.pt is written with pickle, not torch.save.

Every instance records into its class's `calls`; `CosyVoice2StandIn.fresh(**attrs)` gives a subclass with
its own empty `calls` (and any class attributes overridden), so each test counts only its own calls.
`LLMGate` holds the LLM of a request (stand-in or the real upstream one) to test what a close does to it.
"""

import math
import os
import pickle
import threading
import time
import uuid
import wave
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 24000
TOKEN_RATE = 25  # CosyVoice2 speech tokens per second
SAMPLES_PER_TOKEN = SAMPLE_RATE // TOKEN_RATE  # 960
PRE_LOOKAHEAD_LEN = 3  # flow.pre_lookahead_len
TOKENS_PER_CHAR = 4  # how much speech the stand-in makes for a text
MAX_PROMPT_SECONDS = 30  # upstream asserts this when extracting prompt speech tokens
MIN_PROMPT_RATE = 16000  # upstream load_wav refuses lower rates
ENDOFPROMPT = "<|endofprompt|>"  # token 151646, which upstream's CosyVoice3LM asserts in its input
# CosyVoice3Model.silent_tokens: after 5 in a row, llm_job drops further silent tokens (CosyVoice2: none)
COSYVOICE3_SILENT_TOKENS = (1, 2, 28, 29, 55, 248, 494, 2241, 2242, 2322, 2323)
MAX_SILENT_TOKENS = 5
MIX_RATIO = (5, 15)  # cosyvoice2.yaml llm.mix_ratio: text tokens, speech tokens (bi-streaming)


@dataclass
class Calls:
    init: list = field(default_factory=list)  # dicts of the constructor's arguments
    add_zero_shot_spk: list = field(default_factory=list)  # dicts: prompt_text, prompt, zero_shot_spk_id
    save_spkinfo: int = 0
    inference: list = field(default_factory=list)  # dicts: arguments, hop lengths, yielded arrays
    closed_early: int = 0  # inference generators closed before their end
    llm_errors: dict = field(default_factory=dict)  # request id -> what killed its LLM thread (not upstream's)
    text_pieces: list = field(default_factory=list)  # dicts: piece (a string of a generator tts_text), chunks_before
    chunks_yielded: int = 0  # chunks the model has yielded, all calls together
    active: int = 0  # requests inside the model: their generator or their LLM thread still running
    max_active: int = 0  # most requests inside the model at once
    lock: threading.Lock = field(default_factory=threading.Lock)
    _busy: dict = field(default_factory=dict)  # request id -> parts still running (generator, LLM thread)

    def enter(self, request_id, parts=2):
        with self.lock:
            self._busy[request_id] = parts
            self.active = len(self._busy)
            self.max_active = max(self.max_active, self.active)

    def leave(self, request_id):
        with self.lock:
            self._busy[request_id] -= 1
            if not self._busy[request_id]:
                del self._busy[request_id]
            self.active = len(self._busy)


class FakeTensor:
    """The little of torch.Tensor that code reading `tts_speech` uses."""

    def __init__(self, array):
        self._array = np.asarray(array)
        self.shape = self._array.shape

    def detach(self):
        return self

    def cpu(self):
        return self

    def float(self):
        return FakeTensor(self._array.astype(np.float32))

    def numpy(self):
        return self._array


class StandInLLM:
    """The speech-token LLM (`CosyVoice2Model.llm`): `inference` yields one token at a time."""

    def __init__(self, speech_tokens=None, endless_final_decode=False):
        self.speech_tokens = speech_tokens  # tokens per request; None: TOKENS_PER_CHAR a character
        # Upstream's decode after a text generator ends only at the model's end-of-speech token, which a
        # model may never write (the real-class tests' random weights never do): it then runs for ever.
        self.endless_final_decode = endless_final_decode

    def tokens_for(self, text) -> int:
        return self.speech_tokens if self.speech_tokens is not None else max(1, TOKENS_PER_CHAR * len(text))

    def inference(self, text, prompt_text="", uuid=""):
        for i in range(self.tokens_for(text)):
            time.sleep(0)  # let other threads run, as a GPU-bound LLM thread does
            yield i % 6561

    def inference_bistream(self, text, prompt_text=""):
        """Qwen2LM.inference_bistream: text tokens are read from the generator as they come."""
        made, cached = 0, 0
        for _token in text:  # blocks until the next text token exists
            cached += 1
            while cached >= MIX_RATIO[0]:  # upstream: 5 text tokens in, 15 speech tokens (then a fill token)
                cached -= MIX_RATIO[0]
                for _ in range(MIX_RATIO[1]):
                    time.sleep(0)
                    yield made % 6561
                    made += 1
        final = cached * MIX_RATIO[1] // MIX_RATIO[0] or 1  # no more text: decode to the end
        while self.endless_final_decode or final > 0:
            final -= 1
            time.sleep(0)
            yield made % 6561
            made += 1


class StandInLLM3(StandInLLM):
    """CosyVoice3LM: as Qwen2LM, but it asserts `<|endofprompt|>` in the prompt text + text first (in the
    prompt text alone for a text generator)."""

    def inference(self, text, prompt_text="", uuid=""):
        assert ENDOFPROMPT in f"{prompt_text}{text}", (
            "<|endofprompt|> not detected in CosyVoice3 text or prompt_text, check your input!"
        )
        yield from super().inference(text, prompt_text, uuid)

    def inference_bistream(self, text, prompt_text=""):
        assert ENDOFPROMPT in prompt_text, "<|endofprompt|> not detected in CosyVoice3 prompt_text, check your input!"
        yield from super().inference_bistream(text, prompt_text)


class StandInModel:
    """CosyVoice2Model (cosyvoice/cli/model.py): streaming parameters, per-request state, the LLM job."""

    llm_class = StandInLLM

    def __init__(self, calls, speech_tokens=None, grows_hop_len=True, silent_tokens=(), endless_final_decode=False):
        self.token_hop_len = 25
        self.silent_tokens = list(silent_tokens)
        if grows_hop_len:  # the current generation (since upstream f26cde5)
            self.token_max_hop_len = 4 * self.token_hop_len
            self.stream_scale_factor = 2
        self.lock = threading.Lock()
        self.llm = self.llm_class(speech_tokens, endless_final_decode=endless_final_decode)
        # dicts keyed by request id, as upstream's
        self.tts_speech_token_dict = {}
        self.llm_end_dict = {}
        self.hift_cache_dict = {}
        self.tokens_changed = threading.Condition()  # upstream polls every 0.1 s instead
        self._calls = calls

    def llm_job(self, text, prompt_text, llm_prompt_speech_token, llm_embedding, uuid):
        silent = 0
        try:
            if isinstance(text, Generator):
                assert not hasattr(self.llm, "vllm"), (
                    "streaming input text is only implemented for CosyVoice2/3 and do not support vllm!"
                )
                tokens = self.llm.inference_bistream(text=text, prompt_text=prompt_text)
            else:
                tokens = self.llm.inference(text=text, prompt_text=prompt_text, uuid=uuid)
            for token in tokens:
                if token in self.silent_tokens:
                    silent += 1
                    if silent > MAX_SILENT_TOKENS:
                        continue
                else:
                    silent = 0
                self.tts_speech_token_dict[uuid].append(token)
                with self.tokens_changed:
                    self.tokens_changed.notify_all()
            self.llm_end_dict[uuid] = True
            with self.tokens_changed:
                self.tokens_changed.notify_all()
        except Exception as exc:
            # Upstream's thread dies the same way, and its stream then polls for tokens forever; the stand-in
            # records it so that its stream raises instead of hanging the test.
            self._calls.llm_errors[uuid] = exc  # kept out of the model: its dicts are upstream's only
            with self.tokens_changed:
                self.tokens_changed.notify_all()
            raise
        finally:
            self._calls.leave(uuid)  # counting only: upstream has no such finally, and none is needed here
            with self.tokens_changed:  # however the job ended (SystemExit too): upstream's stream polls
                self.tokens_changed.notify_all()

    def wait_for_tokens(self, request_id, needed) -> None:
        """Until `needed` tokens exist for the request or its LLM has ended."""
        with self.tokens_changed:
            self.tokens_changed.wait_for(
                lambda: len(self.tts_speech_token_dict[request_id]) >= needed
                or self.llm_end_dict[request_id]
                or request_id in self._calls.llm_errors,
                timeout=60,
            )
        error = self._calls.llm_errors.get(request_id)
        if error is not None:
            raise RuntimeError(
                f"the LLM thread of request {request_id} died ({type(error).__name__}: {error}); "
                "upstream's stream would wait for its tokens forever"
            )


class StandInModel3(StandInModel):
    """CosyVoice3Model (a CosyVoice2Model subclass upstream): the same streaming, hop growth, state and LLM
    job, CosyVoice3LM's prompt check, the silent-token filter, and a vocoder cache of `mel` and
    `speech_offset`."""

    llm_class = StandInLLM3

    def __init__(self, calls, silent_tokens=COSYVOICE3_SILENT_TOKENS, **kwargs):
        super().__init__(calls, silent_tokens=silent_tokens, **kwargs)


class StandInVllm:
    """`CosyVoice2Model.llm.vllm` after `load_vllm`: only what the adapter touches (stopping.release)."""

    def __init__(self):
        self.aborted = []

    def abort_request(self, request_id):
        self.aborted.append(request_id)


class StandInFrontEnd:
    def __init__(self, spk2info_path, prompt_info=None, calls=None):
        self._prompt_info = prompt_info  # what the stand-in "extracts" from a prompt (its class's form)
        self._calls = calls
        self.zero_shot_prompt_texts = []  # the prompt texts frontend_zero_shot was given, in order
        if os.path.exists(spk2info_path):
            with open(spk2info_path, "rb") as f:
                self.spk2info = pickle.load(f)  # noqa: S301 - a file this stand-in wrote itself
        else:
            self.spk2info = {}
        self.normalized = []  # texts given to text_normalize

    def text_normalize(self, text, split=True, text_frontend=True):
        """Upstream spells out numbers, applies wetext and splits long text; the stand-in folds spaces.
        A generator is returned as it is, in a list: upstream skips its text frontend for one."""
        self.normalized.append(text)
        if isinstance(text, Generator):
            return [text]
        if "<|" in text and "|>" in text:  # upstream skips its text frontend for such text
            text_frontend = False
        text = " ".join(text.split()) if text_frontend and text else text
        return [text] if split else text

    def _extract_text_token(self, text):
        """Upstream's tokens of a text; the stand-in's are its characters. A generator is tokenised lazily."""
        if isinstance(text, Generator):
            return self._extract_text_token_generator(text), [0]  # upstream: a dummy text_token_len
        return text, [len(text)]

    def _extract_text_token_generator(self, text_generator):
        for text in text_generator:  # the next string, only when the LLM wants its next text token
            if self._calls is not None:
                self._calls.text_pieces.append({"piece": text, "chunks_before": self._calls.chunks_yielded})
            text_token, _ = self._extract_text_token(text)
            yield from text_token

    def frontend_zero_shot(self, tts_text, prompt_text, prompt_wav, resample_rate, zero_shot_spk_id):
        """The model input of a zero-shot request: the prompt's (or the registered speaker's) plus the text."""
        tts_text_token, _ = self._extract_text_token(tts_text)
        if zero_shot_spk_id == "":
            self.zero_shot_prompt_texts.append(prompt_text)
            model_input = self._prompt_info(prompt_text, prompt_wav)
        else:
            model_input = {**self.spk2info[zero_shot_spk_id]}  # KeyError for an unknown id, as upstream
        model_input["text"] = tts_text_token
        return model_input


def _as_array(value):
    if isinstance(value, np.ndarray):
        return value
    numpy = getattr(value, "numpy", None)
    if callable(numpy):
        cpu = getattr(value, "cpu", None)
        return np.asarray((cpu() if callable(cpu) else value).numpy())
    return np.asarray(value)


class CosyVoice2StandIn:
    calls: Calls = Calls()
    tensor_type = None  # None: numpy arrays; FakeTensor: torch-like objects
    amplitude = 0.5  # of the sine it "speaks"; > 1 tests clipping
    init_delay = 0.0  # seconds the constructor sleeps (races on lazy loading)
    fail_inference = False  # raise after the first streamed chunk, as a CUDA error in the flow would
    speech_tokens = None  # tokens the LLM makes per call; None: TOKENS_PER_CHAR a character
    grows_hop_len = True  # the token_hop_len bug of the current generation
    endless_final_decode = False  # the LLM never ends after a text generator (as random weights)
    yaml_name = "cosyvoice2.yaml"
    model_class = StandInModel

    @classmethod
    def fresh(cls, **attrs):
        return type(cls.__name__, (cls,), {"calls": Calls(), **attrs})

    def __init__(self, model_dir, load_jit=False, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self._setup(
            model_dir,
            load_jit=load_jit,
            load_trt=load_trt,
            load_vllm=load_vllm,
            fp16=fp16,
            trt_concurrent=trt_concurrent,
        )

    def _setup(self, model_dir, **options):
        if self.init_delay:
            time.sleep(self.init_delay)
        self.calls.init.append({"model_dir": model_dir, **options})
        self.model_dir = model_dir
        if not os.path.exists(model_dir):
            # Upstream would call modelscope's snapshot_download here: no hubs in tests.
            raise ValueError(f"{model_dir} does not exist and the stand-in downloads nothing")
        hyper_yaml_path = f"{model_dir}/{self.yaml_name}"
        if not os.path.exists(hyper_yaml_path):
            raise ValueError(f"{hyper_yaml_path} not found!")
        self.frontend = StandInFrontEnd(f"{model_dir}/spk2info.pt", prompt_info=self._prompt_info, calls=self.calls)
        self.sample_rate = SAMPLE_RATE
        self.model = self.model_class(
            self.calls,
            speech_tokens=self.speech_tokens,
            grows_hop_len=self.grows_hop_len,
            endless_final_decode=self.endless_final_decode,
        )
        if options.get("load_vllm"):  # upstream: model.load_vllm sets model.llm.vllm
            self.model.llm.vllm = StandInVllm()

    # --- the prompt -------------------------------------------------------------------------------
    def _prompt_info(self, prompt_text, prompt):
        """What upstream's frontend extracts from a prompt, reduced to what the stand-in needs."""
        path = os.fspath(prompt) if isinstance(prompt, (str, os.PathLike)) else None
        if path is None:
            raise TypeError(f"prompt_wav must be a path, not {type(prompt).__name__}")
        with wave.open(path, "rb") as w:
            rate, frames = w.getframerate(), w.getnframes()
            pcm = np.frombuffer(w.readframes(frames), dtype="<i2")
        assert rate >= MIN_PROMPT_RATE, f"wav sample rate {rate} must be greater than {MIN_PROMPT_RATE}"
        seconds = frames / rate
        assert seconds <= MAX_PROMPT_SECONDS, "do not support extract speech token for audio longer than 30s"
        return {
            "prompt_text": prompt_text,
            "speech_token_len": int(seconds * TOKEN_RATE),
            "embedding": [float(np.abs(pcm).mean()) / 32768.0] if len(pcm) else [0.0],
        }

    # --- the API ----------------------------------------------------------------------------------
    def list_available_spks(self):
        return list(self.frontend.spk2info.keys())

    def add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        assert zero_shot_spk_id != "", "do not use empty zero_shot_spk_id"
        self.calls.add_zero_shot_spk.append(
            {"prompt_text": prompt_text, "prompt": prompt_wav, "zero_shot_spk_id": zero_shot_spk_id}
        )
        model_input = self.frontend.frontend_zero_shot("", prompt_text, prompt_wav, self.sample_rate, "")
        del model_input["text"]
        self.frontend.spk2info[zero_shot_spk_id] = model_input
        return True

    def save_spkinfo(self):
        self.calls.save_spkinfo += 1
        with open(f"{self.model_dir}/spk2info.pt", "wb") as f:
            pickle.dump(self.frontend.spk2info, f)

    def inference_zero_shot(
        self, tts_text, prompt_text, prompt_wav, zero_shot_spk_id="", stream=False, speed=1.0, text_frontend=True
    ):
        # As upstream: a generator function, one model call per normalised text (a generator: itself).
        normalised_prompt = self.frontend.text_normalize(prompt_text, split=False, text_frontend=text_frontend)
        for text in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            info = self.frontend.frontend_zero_shot(text, normalised_prompt, prompt_wav, SAMPLE_RATE, zero_shot_spk_id)
            record = {
                "tts_text": tts_text,
                "prompt_text": prompt_text,
                "prompt_wav": prompt_wav,
                "zero_shot_spk_id": zero_shot_spk_id,
                "stream": stream,
                "speed": speed,
                "text_frontend": text_frontend,
                "hop_len_at_start": self.model.token_hop_len,
                "chunk_tokens": [],
                "chunks": [],
                "thread": threading.get_ident(),
            }
            self.calls.inference.append(record)
            yield from self._generate(record, info, stream, speed)

    def _generate(self, record, info, stream, speed):
        """`CosyVoice2Model.tts`: state keyed by a new request id, an LLM thread, then the hops it makes."""
        model = self.model
        request_id = str(uuid.uuid1())
        record["request_id"] = request_id
        with model.lock:
            model.tts_speech_token_dict[request_id], model.llm_end_dict[request_id] = [], False
            model.hift_cache_dict[request_id] = None
        self.calls.enter(request_id)
        llm = threading.Thread(target=model.llm_job, args=(info["text"], info["prompt_text"], None, None, request_id))
        record["llm_thread"] = llm
        llm.start()
        finished = False
        try:

            def tokens():  # looked up each time, as upstream does (the adapter may swap a request's list)
                return model.tts_speech_token_dict[request_id]

            position = 0
            if stream:
                assert speed == 1.0, "speed change only support non-stream inference mode"
                prompt_len = info["speech_token_len"]
                prompt_pad = int(math.ceil(prompt_len / model.token_hop_len) * model.token_hop_len - prompt_len)
                offset = 0
                while True:
                    hop = model.token_hop_len + prompt_pad if offset == 0 else model.token_hop_len
                    model.wait_for_tokens(request_id, offset + hop + PRE_LOOKAHEAD_LEN)
                    if len(tokens()) - offset >= hop + PRE_LOOKAHEAD_LEN:
                        chunk = self._chunk(record, position, hop)
                        model.hift_cache_dict[request_id] = self._vocoder_cache(chunk["tts_speech"], position, hop)
                        yield chunk
                        if self.fail_inference:
                            raise RuntimeError("CUDA error: out of memory (stand-in)")
                        position += hop * SAMPLES_PER_TOKEN
                        offset += hop
                        if hasattr(model, "stream_scale_factor"):
                            # The bug: the shared hop length grows and is never set back.
                            model.token_hop_len = min(
                                model.token_max_hop_len, model.token_hop_len * model.stream_scale_factor
                            )
                    if model.llm_end_dict[request_id] and len(tokens()) - offset < hop + PRE_LOOKAHEAD_LEN:
                        break
                llm.join()
                yield self._chunk(record, position, len(tokens()) - offset)
            else:
                llm.join()
                if self.fail_inference:
                    raise RuntimeError("CUDA error: out of memory (stand-in)")
                yield self._chunk(record, position, len(tokens()))
            # Only here, at the end, as upstream: a generator closed early leaves all of this behind.
            with model.lock:
                model.tts_speech_token_dict.pop(request_id)
                model.llm_end_dict.pop(request_id)
                model.hift_cache_dict.pop(request_id)
            finished = True
        finally:
            # Counting only (upstream has no finally): a generator closed early still leaves the model.
            self.calls.leave(request_id)
            if not finished:
                with self.calls.lock:
                    self.calls.closed_early += 1

    def _vocoder_cache(self, speech, position, hop):
        """What CosyVoice2Model.token2wav keeps per request between hops."""
        return {"mel": speech, "source": speech, "speech": speech}

    def _chunk(self, record, start, tokens):
        n = tokens * SAMPLES_PER_TOKEN
        t = (start + np.arange(n)) / SAMPLE_RATE
        speech = (self.amplitude * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32).reshape(1, n)
        record["chunk_tokens"].append(tokens)
        record["chunks"].append(speech.copy())
        self.calls.chunks_yielded += 1  # made to be yielded at once
        return {"tts_speech": self.tensor_type(speech) if self.tensor_type else speech}


class CosyVoice2TensorPromptStandIn(CosyVoice2StandIn):
    """The API before upstream 622a3a1 (2025-12-08): prompts are 16 kHz float tensors [1, T], and the hop
    length stays 25 (the growth came with f26cde5, 2026-01-29)."""

    grows_hop_len = False

    def _prompt_info(self, prompt_text, prompt):
        speech = _as_array(prompt)
        if speech.ndim != 2 or speech.shape[0] != 1 or not np.issubdtype(speech.dtype, np.floating):
            raise TypeError(f"prompt_speech_16k must be a float [1, T] tensor, not {speech.dtype} {speech.shape}")
        seconds = speech.shape[1] / 16000
        assert seconds <= MAX_PROMPT_SECONDS, "do not support extract speech token for audio longer than 30s"
        return {
            "prompt_text": prompt_text,
            "speech_token_len": int(seconds * TOKEN_RATE),
            "embedding": [float(np.abs(speech).mean())],
        }

    def add_zero_shot_spk(self, prompt_text, prompt_speech_16k, zero_shot_spk_id):
        return super().add_zero_shot_spk(prompt_text, prompt_speech_16k, zero_shot_spk_id)

    def inference_zero_shot(
        self, tts_text, prompt_text, prompt_speech_16k, zero_shot_spk_id="", stream=False, speed=1.0, text_frontend=True
    ):
        return super().inference_zero_shot(
            tts_text, prompt_text, prompt_speech_16k, zero_shot_spk_id, stream, speed, text_frontend
        )


class CosyVoice2NoVllmStandIn(CosyVoice2StandIn):
    """The constructor before upstream added vLLM (May 2025): no `load_vllm` argument."""

    def __init__(self, model_dir, load_jit=False, load_trt=False, fp16=False, trt_concurrent=1):
        self._setup(model_dir, load_jit=load_jit, load_trt=load_trt, fp16=fp16, trt_concurrent=trt_concurrent)


class CosyVoice3StandIn(CosyVoice2StandIn):
    """`cosyvoice.cli.cosyvoice.CosyVoice3` (upstream ace7c47; the class since bfa835a, 2025-12-08): a
    CosyVoice2 subclass whose constructor has no `load_jit` and reads `cosyvoice3.yaml`, over a
    CosyVoice3Model (StandInModel3). `add_zero_shot_spk`, `save_spkinfo` and `inference_zero_shot` are
    CosyVoice2's (upstream does not override them), with `prompt_wav` paths."""

    yaml_name = "cosyvoice3.yaml"
    model_class = StandInModel3

    def __init__(self, model_dir, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self._setup(model_dir, load_trt=load_trt, load_vllm=load_vllm, fp16=fp16, trt_concurrent=trt_concurrent)

    def _vocoder_cache(self, speech, position, hop):
        """CosyVoice3Model.token2wav keeps the mel so far and how much speech it has yielded."""
        return {"mel": speech, "speech_offset": position + hop * SAMPLES_PER_TOKEN}


# The adapter stops an LLM thread by raising SystemExit in it (voice/tts/cosyvoice2/stopping.py), which
# threading's own excepthook ignores but pytest's reports: tests that close streams early ignore just that.
IGNORE_STOPPED_LLM_JOB = (
    r"ignore:Exception in thread [^\n]*\(llm_job\)[\s\S]*CosyVoice2 stream closed"
    ":pytest.PytestUnhandledThreadExceptionWarning"
)


class LLMGate:
    """Holds the LLM of a model's first request, to see what closing its stream does to it.

    Wraps `model.llm.inference` (the stand-in's, or the real upstream Qwen2LM's: `model` is
    `CosyVoice2.model` either way) with monkeypatch. The first request's LLM makes `hold_after` tokens,
    then waits for `released` before its next token, and before each one after that for a later request
    to start its LLM: so a first request that nobody stops is still running when the next one starts,
    and `overlapped` (one entry per later request: was the first request's LLM thread alive when this
    one's LLM started?) says so. `jobs` holds one dict per LLM call: thread, tokens made, ended.
    """

    WAIT = 60.0  # seconds, a bound only: the tests release the gate themselves

    def __init__(self, model, hold_after, monkeypatch):
        self.hold_after = hold_after
        self.jobs: list[dict] = []
        self.overlapped: list[bool] = []
        self.released = threading.Event()
        self.next_request = threading.Event()
        self._lock = threading.Lock()
        original = model.llm.inference

        def gated(*args, **kwargs):
            job = {"thread": threading.current_thread(), "tokens": 0, "ended": False}
            with self._lock:
                index = len(self.jobs)
                self.jobs.append(job)
            if index > 0:
                self.overlapped.append(self.jobs[0]["thread"].is_alive())
                self.next_request.set()
            for token in original(*args, **kwargs):
                if index == 0 and job["tokens"] >= self.hold_after:
                    held = self.released if job["tokens"] == self.hold_after else self.next_request
                    held.wait(self.WAIT)
                job["tokens"] += 1
                yield token
            job["ended"] = True

        monkeypatch.setattr(model.llm, "inference", gated)

    def open(self) -> None:
        """Let the held LLM run freely to its end."""
        self.released.set()
        self.next_request.set()
