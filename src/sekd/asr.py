"""Speech recognition for the L3DAS23 score, and the word error rate.

The L3DAS23 challenge transcribed both the enhanced and the clean signal with
wav2vec2-base-960h and scored the WER between the two transcripts. Two recognisers
are pluggable here, chosen by a spec string:

- a folder holding a Hugging Face wav2vec2 CTC model (``config.json``, weights,
  processor files), e.g. a local copy of ``facebook/wav2vec2-base-960h``: loaded with
  ``transformers`` (the optional extra ``sekd[asr]``; never downloaded). Only that very
  model makes scores comparable with the challenge's.
- ``pocketsphinx``: CMU PocketSphinx with the US-English model its wheel ships, offline
  everywhere. Its WER is far from wav2vec2's, so its scores are labelled as not
  comparable with the challenge's.

This module does not import torch or transformers at load time (metric workers import it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .audio import SAMPLE_RATE
from .errors import SekdError

POCKETSPHINX = "pocketsphinx"
CHALLENGE_ASR = "wav2vec2-base-960h"


class Recogniser(Protocol):
    def transcribe(self, audio: np.ndarray) -> str:
        """The transcript of 16 kHz mono float audio."""


@dataclass(frozen=True)
class AsrInfo:
    name: str
    comparable: bool  # whether WERs match those of the L3DAS23 challenge's recogniser

    def to_dict(self) -> dict:
        note = ("the L3DAS23 challenge's recogniser" if self.comparable else
                f"not comparable with the L3DAS23 challenge's scores (which used {CHALLENGE_ASR})")
        return {"name": self.name, "comparable_with_challenge": self.comparable, "note": note}


def describe_asr(spec: str) -> AsrInfo:
    """Check ``spec`` (``pocketsphinx`` or a wav2vec2 folder) without loading a model; raises SekdError."""
    if spec == POCKETSPHINX:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            raise SekdError("the pocketsphinx ASR needs the pocketsphinx package: pip install pocketsphinx") from None
        return AsrInfo("pocketsphinx (en-us)", comparable=False)
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        raise SekdError(f"--asr {spec}: neither 'pocketsphinx' nor a folder holding a wav2vec2 model (config.json)")
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise SekdError(f"--asr {spec}: the wav2vec2 ASR needs the transformers package: "
                        "pip install 'sekd[asr]'") from None
    return AsrInfo(f"wav2vec2 ({folder.name})", comparable=folder.name == CHALLENGE_ASR)


class PocketSphinx:
    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp else ""


class Wav2Vec2:
    """Greedy CTC decoding with a local wav2vec2 model, on one CPU thread (it runs in metric workers)."""

    def __init__(self, folder: str):
        import torch
        from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

        torch.set_num_threads(1)
        try:
            self.processor = Wav2Vec2Processor.from_pretrained(folder, local_files_only=True)
            self.model = Wav2Vec2ForCTC.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise SekdError(f"{folder}: cannot load a wav2vec2 model ({exc})") from None

    def transcribe(self, audio: np.ndarray) -> str:
        import torch

        inputs = self.processor(np.asarray(audio, np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            ids = self.model(inputs.input_values).logits.argmax(dim=-1)
        return self.processor.batch_decode(ids)[0]


@lru_cache(maxsize=2)
def load_asr(spec: str) -> Recogniser:
    """The recogniser ``spec`` names (see :func:`describe_asr`), loaded once per process."""
    describe_asr(spec)
    return PocketSphinx() if spec == POCKETSPHINX else Wav2Vec2(spec)


def words(text: str) -> list[str]:
    """Upper-case words of ``text``, punctuation other than apostrophes removed."""
    return re.sub(r"[^\w']+", " ", text.upper()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance over the reference's word count.

    An empty reference gives 0 when the hypothesis is empty too, else 1. May exceed 1
    (insertions); the L3DAS23 score clips it.
    """
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))  # distances from the empty reference prefix
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)
