"""Caption preprocessing shared by every method, identical to the references (BLIP's `pre_caption`).

Applied at embedding time, not at load time, so datasets keep their raw captions for display.
"""

from __future__ import annotations

import re

_PUNCT = re.compile(r"([.!\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def pre_caption(text: str, max_words: int = 30) -> str:
    """Lower-case, blank out . ! " ( ) * # : ; ~, collapse whitespace runs, strip, keep 30 words.

    Kept byte-for-byte with the references (including splitting on single spaces) so cached text
    embeddings match theirs.
    """
    text = _PUNCT.sub(" ", text.lower())
    text = _SPACES.sub(" ", text)
    text = text.rstrip("\n").strip(" ")
    words = text.split(" ")
    if len(words) > max_words:
        text = " ".join(words[:max_words])
    return text
