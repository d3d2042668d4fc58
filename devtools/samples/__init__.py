"""Speech clips shared by the tests and the benchmark (espeak-ng Korean; made by `python -m devtools.samples.make`).

hello.wav, thanks.wav  16 kHz mono PCM16 speech (the benchmark's transcript figures use both)
hello_padded.wav       hello.wav and 1.5 s of silence (end of utterance)
hello.webm, hello.ogg  hello.wav's speech as Opus, as browsers record it
"""

from pathlib import Path

DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The sample `name` (e.g. "hello.wav"); FileNotFoundError if there is none."""
    found = DIR / name
    if found.suffix == ".py" or not found.is_file():
        raise FileNotFoundError(f"No sample {name!r} in {DIR} (python -m devtools.samples.make writes them).")
    return found
