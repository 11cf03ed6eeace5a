"""Token counts of a model response, split into the kinds that are priced differently (pure).

The realtime model reports usage per response (``response.done``): input text and audio, how much
of it was cached, output text and audio. The kinds here are disjoint, so they add up:
``input_text`` is uncached text input and ``input_cached_text`` the cached part (likewise for
audio). When the model does not say how cached input splits into text and audio, cached tokens are
counted as text first (the cached prefix is mostly instructions and tools), the rest as audio.
"""

from __future__ import annotations

from typing import Any

TOKEN_KINDS = (
    "input_text",
    "input_cached_text",
    "input_audio",
    "input_cached_audio",
    "output_text",
    "output_audio",
)


def usage_tokens(usage: Any) -> tuple[int, ...]:
    """Token counts of a ``response.done`` usage object (any struct with the GA field names), in
    :data:`TOKEN_KINDS` order."""
    if usage is None:
        return (0,) * len(TOKEN_KINDS)
    given = usage.input_token_details
    out = usage.output_token_details
    if given is None:
        text, audio, cached, cached_text, cached_audio = usage.input_tokens or 0, 0, 0, 0, 0
    else:
        text, audio, cached = given.text_tokens or 0, given.audio_tokens or 0, given.cached_tokens or 0
        split = given.cached_tokens_details
        if split is not None:
            cached_text, cached_audio = split.text_tokens or 0, split.audio_tokens or 0
        else:
            cached_text = min(cached, text)
            cached_audio = min(cached - cached_text, audio)
    out_text = (out.text_tokens or 0) if out is not None else (usage.output_tokens or 0)
    out_audio = (out.audio_tokens or 0) if out is not None else 0
    return (
        max(0, text - cached_text),
        cached_text,
        max(0, audio - cached_audio),
        cached_audio,
        out_text,
        out_audio,
    )
