"""What the caller hears when the realtime model cannot be reached: a short, pre-rendered apology.

Without it, a wrong key or an outage gives the caller seconds of silence and a dead line. The
apology is audio, not text — there is no model to speak it — sent as Twilio ``media`` in 20 ms
frames' worth of chunks, followed by a mark; the call ends when the mark is echoed (the caller
heard it), or a little after its length if no echo comes.

The bundled one (``assets/apology.ulaw``, 8 kHz μ-law, ~5 s: "Sorry, our assistant can't take your
call right now. Please call back in a few minutes.") was rendered with espeak-ng. Operators may
give their own WAV (8 kHz mono, μ-law or 16-bit PCM) or turn it off (``CALLBRIDGE_APOLOGY``).
"""

from __future__ import annotations

import base64
import wave
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from callbridge.adapters.mulaw import pcm16_to_ulaw

BYTES_PER_MS = 8
CHUNK_BYTES = 1600
"""200 ms per ``media`` message: few messages, each well under Twilio's frame size limits."""


class ApologyError(ValueError):
    """An apology file that cannot be used; the message says why and what would work."""


@dataclass(frozen=True)
class Apology:
    chunks: tuple[str, ...] = ()
    """Base64 μ-law payloads, in order."""
    duration_ms: int = 0

    @classmethod
    def none(cls) -> Apology:
        return cls()

    @classmethod
    def from_ulaw(cls, data: bytes) -> Apology:
        chunks = tuple(
            base64.b64encode(data[offset : offset + CHUNK_BYTES]).decode()
            for offset in range(0, len(data), CHUNK_BYTES)
        )
        return cls(chunks=chunks, duration_ms=len(data) // BYTES_PER_MS)

    @classmethod
    def bundled(cls) -> Apology:
        return cls.from_ulaw(resources.files("callbridge.engine").joinpath("assets/apology.ulaw").read_bytes())

    @classmethod
    def from_setting(cls, value: str | None) -> Apology:
        """``None``/empty: the bundled apology; ``none``: silence; anything else: a WAV file's path."""
        if not value:
            return cls.bundled()
        if value.strip().lower() == "none":
            return cls.none()
        return cls.from_wav(Path(value))

    @classmethod
    def from_wav(cls, path: Path) -> Apology:
        try:
            with path.open("rb") as file:
                header = file.read(64)
                file.seek(0)
                if b"WAVE" not in header[:12]:
                    raise ApologyError(f"{path} is not a WAV file (give an 8 kHz mono WAV, μ-law or 16-bit PCM)")
                fmt = int.from_bytes(header[20:22], "little")
                if fmt == 7:  # μ-law: the wave module reads PCM only, so take the data chunk by hand
                    return cls.from_ulaw(_data_chunk(file.read(), path))
                with wave.open(file) as wav:
                    if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (8000, 1, 2):
                        raise ApologyError(
                            f"{path} is {wav.getframerate()} Hz, {wav.getnchannels()} channel(s), "
                            f"{8 * wav.getsampwidth()}-bit: give 8 kHz mono, μ-law or 16-bit PCM"
                        )
                    pcm = wav.readframes(wav.getnframes())
        except OSError as error:
            raise ApologyError(f"cannot read the apology {path}: {error}") from None
        except (wave.Error, EOFError) as error:
            raise ApologyError(f"{path} is not a readable WAV file: {error}") from None
        return cls.from_ulaw(pcm16_to_ulaw(pcm))


def _data_chunk(data: bytes, path: Path) -> bytes:
    offset = 12
    while offset + 8 <= len(data):
        name, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        if name == b"data":
            return data[offset + 8 : offset + 8 + size]
        offset += 8 + size + (size & 1)
    raise ApologyError(f"{path} has no data chunk")
