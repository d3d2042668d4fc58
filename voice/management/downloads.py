"""Resumable, verified downloads of model files (Vosk zips, Piper voices), with a progress bar.

A download goes to `NAME.part` beside its final name and is renamed only once it is whole and its
size and checksums match, so an interrupted or corrupt file is never taken for a model. A `.part`
left by an earlier attempt is resumed with an HTTP Range request.
"""

import hashlib
import sys
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

CHUNK = 1 << 16


class DownloadError(Exception):
    """A download that failed; `unreachable` when the host could not be reached at all."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


class Progress:
    """A one-line progress bar, redrawn in place on a terminal; elsewhere (logs, tests) only the
    final line is written, so a log gets no hundreds of carriage-return updates."""

    WIDTH = 30

    def __init__(self, stream: IO[str] | None, label: str, total: int | None, *, interactive: bool | None = None):
        self.stream, self.label, self.total = stream, label, total
        isatty = getattr(stream, "isatty", None)
        self.interactive = interactive if interactive is not None else bool(isatty and isatty())
        self._drawn_at = 0.0

    def line(self, done: int) -> str:
        mb = done / 1e6
        if not self.total:
            return f"  {self.label}: {mb:.1f} MB"
        share = min(done / self.total, 1.0)
        bar = "#" * int(share * self.WIDTH)
        return f"  {self.label} [{bar:<{self.WIDTH}}] {share:4.0%} {mb:.1f}/{self.total / 1e6:.1f} MB"

    def update(self, done: int) -> None:
        if not self.interactive or self.stream is None:
            return
        now = time.monotonic()
        if now - self._drawn_at >= 0.1:  # ten redraws a second at most
            self._drawn_at = now
            self.stream.write("\r" + self.line(done))
            self.stream.flush()

    def finish(self, done: int) -> None:
        if self.stream is not None:
            self.stream.write(("\r" if self.interactive else "") + self.line(done) + "\n")
            self.stream.flush()


def _total_size(response: httpx.Response, offset: int) -> int | None:
    """The whole file's size from Content-Range (206) or Content-Length (200), if given."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        try:
            return int(content_range.rsplit("/", 1)[1])
        except ValueError:
            return None
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _timeout(timeout: float) -> httpx.Timeout:
    # A host that drops packets should not hold a first run for long; a slow transfer may take its time.
    return httpx.Timeout(timeout, connect=min(timeout, 10.0))


def download(
    url: str, final: Path, *, timeout: float = 30.0, stream: IO[str] | None = sys.stdout, size: int | None = None
) -> Path:
    """Download `url` to the file `final`, resuming `final.part` if an earlier attempt left one.

    `size`, when known (from a model list), is checked; the caller verifies checksums.
    """
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()  # longer than the file should be: start again
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with httpx.stream("GET", url, headers=headers, timeout=_timeout(timeout), follow_redirects=True) as response:
            if response.status_code == 416 and have:
                if _total_size(response, 0) == have:  # the partial file is already whole
                    part.replace(final)
                    return final
                part.unlink()  # longer than the file now on the server: start again
                return download(url, final, timeout=timeout, stream=stream, size=size)
            if response.status_code not in (200, 206):
                raise DownloadError(f"Downloading {url} failed: HTTP {response.status_code}.")
            resume = response.status_code == 206 and have > 0
            total = _total_size(response, have if resume else 0) or size
            if stream is not None:
                stream.write(
                    f"Downloading {url}"
                    + (f" (resuming at {have} bytes)" if resume else "")
                    + (f", {total} bytes" if total else "")
                    + "\n"
                )
            progress = Progress(stream, final.name, total)
            done = have if resume else 0
            with part.open("ab" if resume else "wb") as out:
                for block in response.iter_bytes(CHUNK):
                    out.write(block)
                    done += len(block)
                    progress.update(done)
            progress.finish(done)
    except httpx.TimeoutException:
        raise DownloadError(
            f"{host_of(url)} did not answer within {timeout:g} s. Run the command again to resume.", unreachable=True
        ) from None
    except (httpx.ConnectError, httpx.NetworkError, httpx.ProtocolError) as exc:
        raise DownloadError(
            f"{host_of(url)} cannot be reached ({exc}). Check the network or proxy, and run the command again "
            "to resume.",
            unreachable=True,
        ) from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"Downloading {url} failed: {exc}.") from None
    got = part.stat().st_size
    if total and got != total:
        raise DownloadError(f"The download stopped at {got} of {total} bytes; run the command again to resume.")
    part.replace(final)
    return final


def verify(path: Path, *, size: int | None = None, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise DownloadError unless `path` has the given size and digests (each checked when given)."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{path.name} has {actual} bytes, expected {size}.")
    if not (sha256 or md5):
        return
    digests = {"SHA-256": (hashlib.sha256(), sha256), "MD5": (hashlib.md5(usedforsecurity=False), md5)}
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for digest, expected in digests.values():
                if expected:
                    digest.update(block)
    for label, (digest, expected) in digests.items():
        if expected and digest.hexdigest() != expected.lower():
            raise DownloadError(f"{path.name} is corrupt: its {label} is {digest.hexdigest()}, expected {expected}.")


def get_json(url: str, *, timeout: float = 30.0):
    """A small JSON document (a model list); DownloadError when it cannot be had."""
    try:
        response = httpx.get(url, timeout=_timeout(timeout), follow_redirects=True)
    except httpx.TimeoutException:
        raise DownloadError(f"{host_of(url)} did not answer within {timeout:g} s.", unreachable=True) from None
    except (httpx.ConnectError, httpx.NetworkError, httpx.ProtocolError) as exc:
        raise DownloadError(f"{host_of(url)} cannot be reached ({exc}).", unreachable=True) from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"Fetching {url} failed: {exc}.") from None
    if response.status_code != 200:
        raise DownloadError(f"Fetching {url} failed: HTTP {response.status_code}.")
    try:
        return response.json()
    except ValueError:
        raise DownloadError(f"{url} is not JSON.") from None
