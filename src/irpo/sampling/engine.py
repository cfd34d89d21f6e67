"""The sampler interface every generation engine implements, and the values it exchanges.

An engine turns prompts (token ids) into completions (token ids + text + why it stopped). It knows
nothing about tasks, verdicts or files: `irpo.sampling.stage` wires engines to tasks and records.
Every random choice comes from the per-sequence seeds carried by the requests, so an engine's
output for a sequence does not depend on which other sequences share its batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from irpo.models import encode_prompt
from irpo.records import FinishReason
from irpo.sampling.stopping import newline_token_ids


@dataclass(frozen=True)
class SamplingParams:
    """What to sample for each question (the loop builds one per iteration).

    `seed` and `iteration` name the random streams: sample j of question q draws from a stream
    derived from (seed, iteration, q, j) alone (see `irpo.sampling.seeding`). Temperature 0 is
    greedy decoding (no randomness).
    """

    num_samples: int = 30
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    iteration: int = 0
    stop_at_final_answer: bool = True

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def decode_params(self) -> DecodeParams:
        return DecodeParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            stop_at_final_answer=self.stop_at_final_answer,
        )


@dataclass(frozen=True)
class DecodeParams:
    """How every sequence of one `Engine.generate` call is decoded."""

    temperature: float
    top_p: float
    max_new_tokens: int
    stop_at_final_answer: bool = True
    min_new_tokens: int = 0
    """Ignore EOS and the final-answer stop before this many tokens (benchmarks force lengths)."""


@dataclass(frozen=True)
class PromptRequest:
    """One prompt and the seeds of the samples to draw for it (one seed per sample)."""

    key: str
    """The problem id; completions come back under the same key."""
    prompt_ids: tuple[int, ...]
    sample_seeds: tuple[int, ...]

    @property
    def num_samples(self) -> int:
        return len(self.sample_seeds)


@dataclass(frozen=True)
class Completion:
    """One finished sequence. `token_ids` are exactly the generated tokens (EOS included when
    generation ended on it); `text` is their decoding without that EOS."""

    index: int
    token_ids: list[int]
    text: str
    finish_reason: FinishReason


@dataclass
class Progress:
    """Running totals handed to a progress callback after every decoding step."""

    questions_total: int
    questions_done: int = 0
    sequences_done: int = 0
    tokens: int = 0
    """Generated tokens so far (prompt tokens are not counted)."""
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def tokens_per_s(self) -> float:
        elapsed = self.elapsed_s
        return self.tokens / elapsed if elapsed > 0 else 0.0


ProgressCallback = Callable[[Progress], None]


class Engine(Protocol):
    """A generation engine: the transformers one (CPU and GPU) or vLLM (GPU)."""

    name: str

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a task prompt as the model sees it (chat template applied when used)."""
        ...

    def generate(
        self,
        requests: Sequence[PromptRequest],
        params: DecodeParams,
        progress: Progress | None = None,
        on_step: ProgressCallback | None = None,
    ) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        """Yield each request with its completions (ordered by sample index), in request order.

        `progress`, when given, is updated in place (tokens, finished questions) and passed to
        `on_step` after each decoding step.
        """
        ...


class TokenizerSide:
    """What every engine does with its tokenizer: prompts in, completion text out.

    Engines set `tokenizer` and `chat_template`; this keeps the prompt encoding (the one
    `irpo.models.encode_prompt`) and the decoding identical across engines.
    """

    tokenizer: Any
    chat_template: str
    _newline_ids: frozenset[int] | None = None

    @property
    def newline_ids(self) -> frozenset[int]:
        if self._newline_ids is None:
            self._newline_ids = newline_token_ids(self.tokenizer)
        return self._newline_ids

    def encode_prompt(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt, self.chat_template)[1]

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=False))
