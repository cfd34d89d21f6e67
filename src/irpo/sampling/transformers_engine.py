"""The transformers engine: batched sampling on the model's own forward, on CPU or GPU.

How it is fast (measured in bench/bench_sampling.py, docs/BENCHMARKS.md):
- every prompt is computed once (a left-padded prefill over several prompts) and its keys and
  values are kept once for all its samples, whose attention reads them together;
- sequences of many questions decode together, up to `batch_size` at a time, in a preallocated
  slot cache (`irpo.sampling.slots`): a step appends one column instead of concatenating;
- a finished sequence leaves the batch at once and a waiting one takes its row (continuous
  batching), so short answers never wait for long ones;
- grouped-query attention reads the cache in place, without repeating keys per head;
- on a CPU, a bfloat16 model's linear layers run on weights reordered once per `generate` into
  oneDNN's blocked layout (`pack_weights`), not reordered again in every product.

Randomness: sample j of a request draws its t-th token with the t-th number of its own uniform
stream (`irpo.sampling.draw`), so its text depends on its seed alone, not on the batch.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from irpo.errors import IrpoError
from irpo.models import eos_token_ids
from irpo.records import FinishReason
from irpo.sampling.draw import draw_tokens, uniform_stream
from irpo.sampling.engine import (
    Completion,
    DecodeParams,
    Progress,
    ProgressCallback,
    PromptRequest,
    TokenizerSide,
)
from irpo.sampling.slots import (
    PrefillCache,
    SlotCache,
    StepPlan,
    check_supported,
    slot_attention_enabled,
)
from irpo.sampling.stopping import final_answer_end

log = logging.getLogger(__name__)


class TransformersEngine(TokenizerSide):
    """Samples from a loaded `transformers` causal LM (see the module docstring).

    batch_size: sequences decoded together. prefill_tokens: padded prompt tokens per prefill
    forward. max_prompts: prompts held in the cache at once (default: enough for the rows;
    a new question waits for a free place). full_width: let a decoding step's attention read
    the whole generated part of the cache (masked) once the running rows use a third of it,
    instead of the window of columns they use (default: for models in 16-bit formats on CPU,
    where a window, a strided view, is copied before every bfloat16 matrix product: `_step`).
    pack_weights: run the decoder's linear layers on oneDNN-reordered copies of their weights
    during `generate` (default: bfloat16 models on CPUs where oneDNN packs them). The copies
    take the decoder's weight memory once more while sampling: they are made only when that
    is at most a quarter of the memory available at the time (`PACK_MEMORY_SHARE`).
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        chat_template: str = "auto",
        batch_size: int = 64,
        prefill_tokens: int = 2048,
        max_prompts: int | None = None,
        full_width: bool | None = None,
        pack_weights: bool | None = None,
    ) -> None:
        self.model = model.eval()
        self.max_prompts = max_prompts
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.batch_size = batch_size
        self.prefill_tokens = prefill_tokens
        self.eos_ids = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
        params = inspect.signature(model.forward).parameters
        # transformers 5 renamed `past_key_values` to `cache`.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._logits: torch.Tensor | None = None
        self._float_logits: torch.Tensor | None = None
        if full_width is None:
            full_width = model.dtype != torch.float32 and self.device.type == "cpu"
        self.full_width = full_width
        if pack_weights is None:
            pack_weights = (
                model.dtype == torch.bfloat16 and self.device.type == "cpu" and _can_pack()
            )
        if pack_weights and not _can_pack():
            raise IrpoError(
                "pack_weights=True: this CPU (or torch build) has no oneDNN bfloat16 linear "
                "packing (it needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT); leave pack_weights unset"
            )
        self.pack_weights = pack_weights
        self._packed: dict[torch.nn.Linear, torch.Tensor] = {}
        config = getattr(model, "config", None)
        # Models whose logits are exactly lm_head(last hidden state): their decoding steps write
        # the logits into one reused buffer. A fresh (batch x vocabulary) tensor per step costs
        # page faults (above glibc's 32 MiB mmap threshold) that were 10 % of a step here.
        self._plain_head = (
            getattr(config, "model_type", None) in PLAIN_HEAD_MODELS
            and hasattr(model, "base_model")
            and getattr(model.get_output_embeddings(), "bias", None) is None
        )

    @property
    def device(self) -> torch.device:
        device: torch.device = next(self.model.parameters()).device
        return device

    def generate(
        self,
        requests: Sequence[PromptRequest],
        params: DecodeParams,
        progress: Progress | None = None,
        on_step: ProgressCallback | None = None,
    ) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        if not requests:
            return
        max_prompt = max(len(r.prompt_ids) for r in requests)
        check_supported(self.model.config, max_prompt + params.max_new_tokens)
        # packed here, not once: the caller may change the weights between two calls
        self._packed = _pack_linears(self.model, self.batch_size) if self.pack_weights else {}
        try:
            yield from _Decoder(self, list(requests), params, progress, on_step).run()
        finally:
            self._packed = {}

    def forward(self, cache: Any, **inputs: Any) -> torch.Tensor:
        """Logits of the last position, (B, V), with `cache` collecting keys and values.

        The slot attention is switched on for this call only: between two steps (while the
        caller holds a yielded result) the model is the caller's model, unchanged. Decoding
        steps of plain-head models return a view of a buffer that the next step overwrites.
        """
        with (
            torch.inference_mode(),
            slot_attention_enabled(self.model),
            _packed_forward(self._packed),
        ):
            if not self._plain_head or "logits_to_keep" in inputs:
                out = self.model(**inputs, **{self._cache_arg: cache}, use_cache=True)
                logits: torch.Tensor = out.logits[:, -1]
                return logits
            hidden = self.model.base_model(**inputs, **{self._cache_arg: cache}, use_cache=True)
            last = hidden.last_hidden_state[:, -1]  # (B, hidden)
            weight = self.model.get_output_embeddings().weight  # (V, hidden)
            rows = last.shape[0]
            if self._logits is None or self._logits.shape[0] < rows:
                self._logits = last.new_empty(max(rows, self.batch_size), weight.shape[0])
            return torch.matmul(last, weight.t(), out=self._logits[:rows])

    def float_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """16-bit logits (rows, V) as float32, in a buffer reused from step to step (a fresh
        copy of a batch of logits costs page faults: 22 ms against 1.4 ms for SmolLM2's at 256
        rows here); float32 logits are returned as they are."""
        if logits.dtype == torch.float32:
            return logits
        rows, vocab = logits.shape
        buffer = self._float_logits
        if buffer is None or buffer.shape[0] < rows or buffer.shape[1] != vocab:
            buffer = torch.empty(
                max(rows, self.batch_size), vocab, dtype=torch.float32, device=logits.device
            )
            self._float_logits = buffer
        return buffer[:rows].copy_(logits)


def cache_columns(max_new_tokens: int) -> int:
    """Generated columns of the decoder's cache: the longest generation and some slack (the
    cache is compacted every `slack` steps or less)."""
    return max_new_tokens + max(16, max_new_tokens // 4)


def _can_pack() -> bool:
    """Whether this torch and this CPU run oneDNN's packed bfloat16 linears (they need AVX-512
    BW/VL/DQ or AVX-NE-CONVERT: on an AVX2-only CPU the reorder raises)."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


PACK_MEMORY_SHARE = 0.25
"""Packed weights are made only when they take at most this share of the available memory."""


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that tells
        return None


def _pack_linears(model: Any, rows: int) -> dict[torch.nn.Linear, torch.Tensor]:
    """The decoder's bfloat16 linear weights in oneDNN's layout for products of about `rows`
    rows (the LM head is left out: the engine computes it into a reused buffer); none when
    the copies would not fit in `PACK_MEMORY_SHARE` of the available memory."""
    linears = [
        m
        for m in model.base_model.modules()
        if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.bfloat16
    ]
    needed = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    available = _available_memory()
    if available is not None and needed > PACK_MEMORY_SHARE * available:
        log.info(
            "linear weights not packed: %.0f MiB of copies, %.0f MiB available",
            needed / 2**20,
            available / 2**20,
        )
        return {}
    with torch.inference_mode():
        return {
            m: torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), rows) for m in linears
        }


def _linear_packed(
    weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor
) -> torch.Tensor:
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
    return y.view(*x.shape[:-1], y.shape[-1])


@contextmanager
def _packed_forward(packed: dict[torch.nn.Linear, torch.Tensor]) -> Iterator[None]:
    """Run the linear layers of `packed` on their packed weights for the duration of the block."""
    own = {m: m.__dict__["forward"] for m in packed if "forward" in m.__dict__}  # e.g. hooks
    for module, weight in packed.items():
        module.forward = functools.partial(_linear_packed, weight, module.bias)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module in packed:
            del module.forward
            if module in own:
                module.forward = own[module]  # type: ignore[method-assign]


PLAIN_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2"})
"""Causal LMs whose forward is `lm_head(base_model(...))`, with no logit scaling or capping."""


@dataclass
class _Row:
    """A running sequence: sample `index` of request `req`, in one row of the cache."""

    req: int
    index: int
    prompt_len: int
    start: int
    """Cache column of its first generated token."""
    uniforms: list[float]
    """Its random stream: the t-th token is drawn with uniforms[t] (empty when greedy)."""
    tokens: list[int] = field(default_factory=list)


class _Decoder:
    """The state of one `generate` call: waiting samples, running rows, finished requests.

    `rows[i]` runs in row i of the cache; the prompts of running requests fill pool slots
    [0, len(pool)) (`pool[s]` is a request, `slot_of` the reverse). A request's prompt stays in
    the pool until its last sample finishes. Results are handed out in request order.
    """

    def __init__(
        self,
        engine: TransformersEngine,
        requests: list[PromptRequest],
        params: DecodeParams,
        progress: Progress | None,
        on_step: ProgressCallback | None,
    ) -> None:
        self.engine = engine
        self.requests = requests
        self.params = params
        self.progress = progress or Progress(questions_total=len(requests))
        self.on_step = on_step
        self.device = engine.device
        self.dtype = engine.model.dtype
        rows = engine.batch_size
        most = max(r.num_samples for r in requests)
        # Room for the prompts of the running rows: one per row at worst, fewer when questions
        # have several samples (admission waits for a free prompt slot).
        prompts = engine.max_prompts or min(rows, 2 * -(-rows // most) + 2)
        longest = max(len(r.prompt_ids) for r in requests)
        self.cache = SlotCache(rows, prompts, longest, cache_columns(params.max_new_tokens))
        # waiting samples, in order: (request, sample index)
        self.queue = [(r, j) for r, req in enumerate(requests) for j in range(req.num_samples)]
        self.queued = 0
        self.pool: list[int] = []
        self.slot_of: dict[int, int] = {}
        self.prompt_logits: dict[int, torch.Tensor] = {}
        self.to_admit = [req.num_samples for req in requests]
        self.results: list[list[Completion | None]] = [[None] * r.num_samples for r in requests]
        self.missing = [req.num_samples for req in requests]
        self.next_out = 0
        self.rows: list[_Row] = []

    # ------------------------------------------------------------------ main loop

    def run(self) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        size = self.cache.num_rows
        while self.queued < len(self.queue) or self.rows:
            free = size - len(self.rows)
            # Refill once an eighth of the rows is free: one prefill serves several sequences.
            if self.queued < len(self.queue) and (not self.rows or free >= max(1, size // 8)):
                self._admit(free)
            if self.rows:
                self._step()
            if self.on_step is not None:
                self.on_step(self.progress)
            yield from self._finished_in_order()

    def _finished_in_order(self) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        while self.next_out < len(self.requests) and self.missing[self.next_out] == 0:
            done = [c for c in self.results[self.next_out] if c is not None]
            self.results[self.next_out] = []
            yield self.requests[self.next_out], done
            self.next_out += 1

    # ------------------------------------------------------------------ admission

    def _admit(self, free: int) -> None:
        """Move up to `free` waiting samples into rows, prefilling prompts not yet pooled."""
        if not self.rows:
            self.cache.cur = 0  # nothing running: restart at the left edge
        batch: list[tuple[int, int]] = []
        new: list[int] = []
        while len(batch) < free and self.queued < len(self.queue):
            r, j = self.queue[self.queued]
            if r not in self.slot_of and r not in new:
                if len(self.pool) + len(new) >= self.cache.num_prompts:
                    break  # no room for another prompt until a question finishes
                new.append(r)
            batch.append((r, j))
            self.queued += 1
        self._prefill(new)
        first_row = len(self.rows)
        logits = []
        for r, j in batch:
            req = self.requests[r]
            seed = req.sample_seeds[j]
            stream = (
                uniform_stream(seed, self.params.max_new_tokens).tolist()
                if self.params.temperature
                else []
            )
            self.rows.append(_Row(r, j, len(req.prompt_ids), self.cache.cur, stream))
            logits.append(self.prompt_logits[r])
            self.to_admit[r] -= 1
            if self.to_admit[r] == 0:
                del self.prompt_logits[r]
        if batch:
            self._extend(torch.stack(logits), first_row)

    def _prefill(self, reqs: list[int]) -> None:
        """Pool each prompt's keys/values and keep its next-token logits; several per forward."""
        chunk: list[int] = []
        for r in sorted(reqs, key=lambda r: len(self.requests[r].prompt_ids)):
            longest = len(self.requests[r].prompt_ids)  # sorted: the last added is the longest
            if chunk and (len(chunk) + 1) * longest > self.engine.prefill_tokens:
                self._prefill_chunk(chunk)
                chunk = []
            chunk.append(r)
        if chunk:
            self._prefill_chunk(chunk)

    def _prefill_chunk(self, reqs: list[int]) -> None:
        """One left-padded forward over the prompts of `reqs`."""
        prompts = [self.requests[r].prompt_ids for r in reqs]
        width = max(len(p) for p in prompts)
        pad = self.engine.tokenizer.pad_token_id or 0
        dev = self.device
        ids = torch.tensor([(pad,) * (width - len(p)) + p for p in prompts], device=dev)
        valid = torch.tensor(
            [[False] * (width - len(p)) + [True] * len(p) for p in prompts], device=dev
        )
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
        # Padding queries may see themselves, so no softmax row is empty (an empty row is NaN,
        # and NaN keys would poison real rows even with zero weight).
        allowed = (causal & valid[:, None, :]) | torch.eye(width, dtype=torch.bool, device=dev)
        prefill = PrefillCache()
        logits = self.engine.forward(
            prefill,
            input_ids=ids,
            attention_mask=_additive(allowed[:, None], self.dtype),
            position_ids=positions,
            logits_to_keep=1,
        )
        layers = prefill.layers()
        if not self.cache.allocated:
            self.cache.allocate([(k[:1], v[:1]) for k, v in layers])
            log.info(
                "slot cache: %d rows x %d columns, %d prompts x %d columns, %.0f MiB",
                self.cache.num_rows,
                self.cache.capacity,
                self.cache.num_prompts,
                self.cache.prompt_capacity,
                self.cache.nbytes() / 2**20,
            )
        for i, r in enumerate(reqs):
            p = len(prompts[i])
            slot = len(self.pool)
            self.cache.write_prompt(
                slot,
                [(k[i : i + 1, :, width - p :], v[i : i + 1, :, width - p :]) for k, v in layers],
            )
            self.pool.append(r)
            self.slot_of[r] = slot
            self.prompt_logits[r] = logits[i]

    # ------------------------------------------------------------------ decoding

    def _step(self) -> None:
        """Feed every running row its last token; draw and append the next one."""
        cache = self.cache
        if cache.cur >= cache.capacity:
            self._compact()
        rows = self.rows
        dev = self.device
        cache.n = len(rows)
        lo, hi = min(row.start for row in rows), cache.cur + 1
        if self.engine.full_width and 3 * (hi - lo) >= cache.capacity:
            # The whole buffer is a contiguous view, which a bfloat16 product reads as it is;
            # the window [lo, hi) is copied first (3.7x the product's time at 100 columns
            # here). Reading at most 3x the columns costs less than that copy.
            lo, hi = 0, cache.capacity
        cache.lo, cache.hi = lo, hi
        index, rank, counts = [], [], [0] * len(self.pool)
        for row in rows:
            slot = self.slot_of[row.req]
            index.append(slot)
            rank.append(counts[slot])
            counts[slot] += 1
        width = max(row.prompt_len for row in rows)
        lengths = torch.tensor([row.prompt_len for row in rows], device=dev)
        starts = torch.tensor([row.start for row in rows], device=dev)
        own = torch.arange(lo, hi, device=dev)
        allowed = torch.cat(
            [
                torch.arange(width, device=dev)[None, :] < lengths[:, None],
                (own[None, :] >= starts[:, None]) & (own[None, :] <= cache.cur),
            ],
            dim=1,
        )[:, None, None, :]
        mask = _additive(allowed, self.dtype)
        cache.plan = StepPlan(
            prompts=len(self.pool),
            group=max(counts),
            prompt_width=width,
            prompt_index=torch.tensor(index, device=dev),
            rank=torch.tensor(rank, device=dev),
            mask=mask,
        )
        ids = torch.tensor([[row.tokens[-1]] for row in rows], device=dev)
        positions = torch.tensor(
            [[row.prompt_len + len(row.tokens) - 1] for row in rows], device=dev
        )
        logits = self.engine.forward(
            cache, input_ids=ids, attention_mask=mask, position_ids=positions, slot_cache=cache
        )
        cache.plan = None
        cache.cur += 1
        self._extend(logits, 0)

    def _extend(self, logits: torch.Tensor, first_row: int) -> None:
        """Append one drawn token to rows first_row.. (logits: (rows, V), used as scratch);
        retire finished rows."""
        rows = self.rows[first_row:]
        params = self.params
        eos = sorted(self.engine.eos_ids)
        uniforms = torch.tensor(
            [row.uniforms[len(row.tokens)] if row.uniforms else 0.0 for row in rows],
            dtype=torch.float64,
        )
        with torch.inference_mode():  # the logits are an inference tensor, updated in place
            logits = self.engine.float_logits(logits)
            short = [i for i, row in enumerate(rows) if len(row.tokens) < params.min_new_tokens]
            if short and eos:
                logits[torch.tensor(short)[:, None], torch.tensor(eos)] = -float("inf")
            drawn = draw_tokens(
                logits, uniforms, params.temperature, params.top_p, overwrite=True
            ).tolist()
        finished = []
        for i, (row, tok) in enumerate(zip(rows, drawn, strict=True)):
            row.tokens.append(tok)
            reason = self._finish_reason(row.tokens)
            if reason is not None:
                finished.append((first_row + i, reason))
        self.progress.tokens += len(drawn)
        for i, reason in sorted(finished, reverse=True):
            self._retire(i, reason)

    def _finish_reason(self, tokens: list[int]) -> FinishReason | None:
        params = self.params
        if len(tokens) >= params.min_new_tokens:
            if tokens[-1] in self.engine.eos_ids:
                return "eos"
            if (
                params.stop_at_final_answer
                and tokens[-1] in self.engine.newline_ids
                and final_answer_end(self.engine.decode(tokens)) is not None
            ):
                return "stop"
        if len(tokens) >= params.max_new_tokens:
            return "length"
        return None

    def _retire(self, i: int, reason: FinishReason) -> None:
        """Record row i's completion; move the last running row (and, when this was its
        question's last sample, the last pooled prompt) into the freed place."""
        row = self.rows[i]
        text_ids = row.tokens[:-1] if reason == "eos" else row.tokens
        text = self.engine.decode(text_ids)
        self.results[row.req][row.index] = Completion(row.index, row.tokens, text, reason)
        self.missing[row.req] -= 1
        self.progress.sequences_done += 1
        if self.missing[row.req] == 0:
            self.progress.questions_done += 1
            self._release_prompt(row.req)
        last = len(self.rows) - 1
        if i != last:
            self.cache.move(last, i, min(r.start for r in self.rows))
            self.rows[i] = self.rows[last]
        self.rows.pop()

    def _release_prompt(self, r: int) -> None:
        slot = self.slot_of.pop(r)
        last = len(self.pool) - 1
        if slot != last:
            moved = self.pool[last]
            self.cache.move_prompt(last, slot, len(self.requests[moved].prompt_ids))
            self.pool[slot] = moved
            self.slot_of[moved] = slot
        self.pool.pop()

    def _compact(self) -> None:
        """Shift the running rows' generated columns to the left edge of the cache."""
        lo = min(row.start for row in self.rows)
        self.cache.n = len(self.rows)
        self.cache.shift_left(lo, lo)
        for row in self.rows:
            row.start -= lo


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> additive mask in the model dtype (0 where allowed, very negative elsewhere)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)
