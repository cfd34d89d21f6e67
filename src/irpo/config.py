"""One typed, validated run configuration: YAML files plus dotted command-line overrides.

Unknown keys and wrong types are errors whose message names the key (`sampling.temprature: extra
inputs are not permitted`). Every choice the paper leaves open is a field here, so it is logged
with the resolved config in the run directory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from irpo.errors import IrpoError

if TYPE_CHECKING:
    from irpo.sampling.engine import SamplingParams


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )


class TaskConfig(_Section):
    """What to train and evaluate on."""

    name: str = "arith"
    """Built-in task (gsm8k, arc_challenge, math, arith) or `custom`."""
    train_source: str | None = None
    """Local file (JSONL/JSON/Parquet) or Hugging Face dataset id; None for generated tasks."""
    train_split: str = "train"
    """Split of `train_source` to read: a folder's file(s) named for it or a Hub dataset's split."""
    eval_source: str | None = None
    """Source of the held-out questions, like `train_source`; None: `train_source` (its
    `eval_split`)."""
    eval_split: str = "test"
    """Split of the held-out source that every model is evaluated on."""
    train_limit: int | None = Field(default=None, ge=1)
    """Use only the first N training questions of the source (for arith: of its generated
    sequence)."""
    eval_limit: int | None = Field(default=None, ge=1)
    """Use only the first N held-out questions of the source."""
    skip_bad_rows: bool = False
    """Skip (and count) rows without a question or answer instead of failing."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Task options: `answer_mode` for every task (`flexible`, default: the "Final answer:" marker,
    then the documented fall-backs; `strict`: the marker only; it labels samples for training and
    pairing and heads the eval metrics, which report both), arith difficulty knobs, custom task
    answer type and field names (docs/TASKS.md)."""


class ModelConfig(_Section):
    name_or_path: str = "smollm2-135m"
    """Hugging Face id, local folder, or an embedded model name (`smollm2-135m`)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype for sampling and evaluation; `auto`: bfloat16 on GPUs that support it; on
    a CPU, the format its linear layers measure faster in on this machine (irpo.precision,
    cached; IRPO_CPU_DTYPE=float32|bfloat16 fixes it). Reference log-probs use it on GPUs and
    float32 on CPUs; training keeps float32 weights unless a dtype is named."""
    device: str = "auto"
    """Device for sampling and reference log-probs (`cuda:0`, `cpu`, ...); `auto`: CUDA when
    available. Training is placed by accelerate."""
    chat_template: Literal["auto", "always", "never"] = "auto"
    """`auto` applies the tokenizer's chat template when it has one."""
    trust_remote_code: bool = False
    """Let transformers run the code of a model repository (custom architectures)."""


class SamplingConfig(_Section):
    engine: Literal["transformers", "vllm"] = "transformers"
    """Generation backend: irpo's batched transformers decoder, or vLLM (the `vllm` extra, GPU)."""
    num_samples: int = Field(default=30, ge=1)
    """N: solutions sampled per training question (paper: 30 GSM8K/ARC, 20 MATH)."""
    temperature: float = Field(default=0.8, ge=0.0)
    """Sampling temperature of every iteration when `temperatures` is unset (paper: 0.8)."""
    temperatures: list[float] | None = None
    """Per-iteration temperatures; iteration t uses temperatures[min(t, len-1)] (paper: 0.8, 0.8,
    1.3, 1.3)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling: draw from the most likely tokens holding this much probability (1: all)."""
    max_new_tokens: int = Field(default=512, ge=1)
    """Most tokens generated per solution; also the held-out evaluation's default."""
    stop_at_final_answer: bool = True
    """Stop right after the line carrying "Final answer: ..." (run-on text causes wrong
    verdicts)."""
    batch_size: int = Field(default=64, ge=1)
    """Sequences decoded together by the transformers engine."""
    prefill_tokens: int = Field(default=2048, ge=1)
    """Prompt tokens (padded) per prefill forward of the transformers engine."""
    vllm: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for `vllm.LLM` (gpu_memory_utilization, tensor_parallel_size,
    ...)."""

    def temperature_for(self, iteration: int) -> float:
        if self.temperatures:
            return self.temperatures[min(iteration, len(self.temperatures) - 1)]
        return self.temperature

    def params_for(self, iteration: int, *, seed: int) -> SamplingParams:
        """What iteration t samples from M_t: its temperature, and random streams named by
        (seed, t); the one place the loop, `irpo sample` and the benchmarks get them."""
        from irpo.sampling.engine import SamplingParams

        return SamplingParams(
            num_samples=self.num_samples,
            temperature=self.temperature_for(iteration),
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            seed=seed,
            iteration=iteration,
            stop_at_final_answer=self.stop_at_final_answer,
        )


class PairsConfig(_Section):
    pairs_per_question: int = Field(default=10, ge=1)
    """K (paper: 10 GSM8K, 20 ARC, 15 MATH); at most lcm(|W|, |L|) distinct zip pairs exist."""
    gold_as_winner: Literal["never", "if_no_correct", "always"] = "if_no_correct"
    """Use the gold solution as a winner (only for tasks that have one)."""
    order: Literal["sample", "shortest", "random"] = "sample"
    """Order inside the winner and loser lists before the wrap-around zip."""
    dedupe: bool = True
    """Skip zip pairs whose (chosen, rejected) texts repeat an earlier pair of the same question."""
    max_pairs: int | None = Field(default=None, ge=1)
    """Keep a seeded random subset above this many pairs per iteration (paper: ~60k)."""
    max_length: int | None = Field(default=None, ge=1)
    """Skip pairs whose prompt + longer response exceeds this many tokens (the model context)."""


class TrainConfig(_Section):
    beta: float = Field(default=0.1, gt=0.0)
    """DPO's beta: scale of the log-ratio margin in IRPO Eq. 1 (paper: 0.1, tried 0.05-1)."""
    alpha: float = Field(default=1.0, ge=0.0)
    """Weight of the winner's length-normalised NLL (IRPO Eq. 1); 0 gives plain DPO."""
    nll_normalization: Literal["sequence", "batch_token"] = "sequence"
    """`sequence`: the paper's per-sequence mean; `batch_token`: TRL's batch token mean."""
    learning_rate: float = Field(default=7e-7, gt=0.0)
    """Peak AdamW learning rate, reached after warmup (paper: 7e-7)."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    """AdamW weight decay, on weight matrices only (not norms or biases)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW's (beta1, beta2) moment decay rates."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning rate after warmup: constant, or a cosine or linear decay to 0 at the last step."""
    warmup_steps: int = Field(default=0, ge=0)
    """Optimizer steps of linear learning-rate warmup from 0."""
    batch_size: int = Field(default=16, ge=1)
    """Global batch size in pairs (or sequences for SFT), across processes and accumulation."""
    micro_batch_size: int = Field(default=4, ge=1)
    """Pairs per forward pass on each process; accumulation makes up the rest."""
    epochs: float = Field(default=1.0, gt=0.0)
    """Passes over the pairs (fractions allowed): ceil(epochs * pairs / batch_size) optimizer
    steps, unless `max_steps` is set."""
    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps to train, instead of `epochs` (paper: at most 5000; ARC 4000)."""
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    """Clip the gradient's global L2 norm to this; None: no clipping (the norm is still logged)."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """accelerate's mixed precision; `auto`: bf16 where the GPU supports it; on a CPU, bf16
    autocast (float32 master weights) where its bf16 matmuls measure faster (irpo.precision),
    else `no`."""
    gradient_checkpointing: bool = True
    """Recompute each decoder layer's activations in the backward pass: about a third more
    compute for a much smaller peak (docs/BENCHMARKS.md). TRL's default too; tiny models, whose
    activations are small, train faster without it."""
    lora: dict[str, Any] | None = None
    """peft LoraConfig arguments; the adapter is merged into the saved checkpoint."""
    log_every: int = Field(default=1, ge=1)
    """Log training metrics, averaged over the window, every N optimizer steps (and the last)."""
    save_every: int | None = Field(default=None, ge=1)
    """Save a resumable training state every N optimizer steps."""
    ref_batch_size: int = Field(default=8, ge=1)
    """Pairs per no-grad forward when computing reference log-probs."""
    response_only_logits: bool = True
    """Compute logits only at response positions (False: the full [B, T, V] logits)."""

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `no` as false: `mixed_precision: no` means "no".
        return "no" if value is False else value


class EvalConfig(_Section):
    greedy: bool = True
    """Score one greedy (temperature 0) answer per held-out question: the paper's main metric."""
    maj_k: int = Field(default=0, ge=0)
    """K for maj@K and pass@K (0: greedy only; paper: 32)."""
    temperature: float = Field(default=0.8, ge=0.0)
    """Temperature of the maj@K / pass@K samples (paper: 0.8 for maj@32)."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Defaults to sampling.max_new_tokens."""
    on_train_iterations: bool = True
    """Evaluate every iteration's model; false: only M_0 and the last model (faster; needs
    loop.min_gain unset, which compares consecutive iterations)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling for the maj@K / pass@K samples."""


class LoopConfig(_Section):
    iterations: int = Field(default=3, ge=1)
    """Iterations t = 0, 1, ... each training M_{t+1} from M_t (paper: 4 GSM8K, 3 ARC and MATH)."""
    method: str = "irpo"
    """What each iteration trains on and with which loss: irpo, dpo, star or sft_gold
    (`irpo.methods`)."""
    reference: Literal["current", "initial"] = "current"
    """DPO reference: M_t (the paper) or M_0 (an ablation)."""
    min_gain: float | None = None
    """Stop early when greedy held-out accuracy improves by less than this (in points)."""

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from irpo.methods import METHODS

        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}: expected one of {', '.join(METHODS)}")
        return value


class SeedModelConfig(_Section):
    """Train the seed model M_0 from scratch: a character-level Llama, SFT on gold solutions.

    Used when `model.name_or_path` is `scratch` (the embedded demo). The model is cached under
    IRPO_CACHE, keyed by this section and the task, so a second run reuses it.
    """

    hidden_size: int = Field(default=128, ge=8)
    """Model width (the MLP is 4x wider)."""
    num_layers: int = Field(default=4, ge=1)
    """Decoder layers."""
    num_heads: int = Field(default=4, ge=1)
    """Attention heads (as many key/value heads: no grouped-query attention)."""
    max_position_embeddings: int = Field(default=256, ge=16)
    """Context length in tokens (one token per character)."""
    train_problems: int = Field(default=5000, ge=1)
    """Training questions read from `task.train_split`; those with a gold solution are the
    SFT examples."""
    steps: int = Field(default=1000, ge=1)
    """Optimizer steps of SFT."""
    batch_size: int = Field(default=64, ge=1)
    """Examples (sequences) per optimizer step."""
    learning_rate: float = Field(default=1e-3, gt=0.0)
    """Peak AdamW learning rate, reached after warmup."""
    warmup_steps: int = Field(default=50, ge=0)
    """Optimizer steps of linear learning-rate warmup from 0."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """The learning rate after warmup: a cosine decay to zero (an annealed seed) or constant (a
    seed stopped mid-training, like a checkpoint taken before the end of pretraining)."""


class LaunchConfig(_Section):
    """How the stages of `irpo run` are started (`irpo.launch`); results do not depend on it,
    so a run may change it between invocations."""

    mode: Literal["inline", "processes", "ray"] = "inline"
    """`inline`: every stage in the `irpo run` process (CPU, the demo); `processes`: each stage
    in processes of its own (data-parallel sampling workers, `accelerate launch` training);
    `ray`: sampling and evaluation on a Ray cluster through Ray Data (the `ray` extra), the
    reference pass and training as in `processes`."""
    sampling_workers: int | None = Field(default=None, ge=1)
    """Data-parallel sampling and evaluation workers (processes mode); default: one per
    sampling.vllm.tensor_parallel_size GPUs, or 1 without GPUs."""
    train_processes: int | None = Field(default=None, ge=1)
    """Training processes for `accelerate launch` (processes mode); default: one per GPU, or 1
    without GPUs."""
    accelerate_config: str | None = None
    """accelerate config file for training (configs/accelerate/ddp.yaml, fsdp.yaml, zero3.yaml);
    default: accelerate's (DDP across the processes)."""
    machines: int = Field(default=1, ge=1)
    """Machines that train together (accelerate's `--num_machines`); `train_processes` then
    counts the processes of each machine. More than 1 needs `node_launcher`."""
    node_launcher: list[str] | None = None
    """The command that starts one training launcher on every machine (e.g. `[srun,
    --nodes=2, --ntasks-per-node=1]` inside a SLURM allocation); each reads its machine rank
    from the variable `machine_rank_env`."""
    machine_rank_env: str = "SLURM_NODEID"
    """Environment variable holding a machine's rank (0 .. machines-1) where `node_launcher`
    starts it."""
    main_process_ip: str | None = None
    """Address of machine 0's training process, reachable from every machine; default: the
    host name of the machine running `irpo run` (which must then be one of the machines)."""
    main_process_port: int = Field(default=29500, ge=1, le=65535)
    """Port of machine 0's training process (accelerate's `--main_process_port`)."""
    ray_address: str | None = None
    """Ray cluster to join (`auto`, `HOST:6379`, `ray://HOST:10001`); None: the one in
    RAY_ADDRESS or started on this machine by `ray start`, else a local one for the run."""
    ray_replicas: int | None = Field(default=None, ge=1)
    """Model replicas that sample at the same time (Ray Data's actor pool); default: the
    cluster's GPUs / `ray_tensor_parallel_size`, or 1 on a cluster without GPUs."""
    ray_tensor_parallel_size: int | None = Field(default=None, ge=1)
    """GPUs of each replica: vLLM's tensor parallelism inside it; default:
    sampling.vllm.tensor_parallel_size, else 1. The transformers engine uses 1 GPU."""
    ray_cpus_per_replica: float = Field(default=1.0, gt=0.0)
    """CPU cores Ray reserves for each replica (on CPUs, the transformers engine's threads)."""
    ray_batch_questions: int = Field(default=16, ge=1)
    """Questions per Ray Data batch: what a replica gets at a time, and redoes when lost."""
    ray_max_restarts: int = Field(default=3, ge=-1)
    """Times a lost replica is restarted (its batch redone) before the stage fails with the
    replica's error; -1: without limit."""

    @model_validator(mode="after")
    def _machines(self) -> LaunchConfig:
        if self.machines > 1 and self.node_launcher is None:
            raise ValueError(
                f"launch.machines ({self.machines}) needs launch.node_launcher, the command "
                "that starts the training launcher on every machine (e.g. [srun, "
                f"--nodes={self.machines}, --ntasks-per-node=1])"
            )
        if self.machines > 1 and self.mode == "inline":
            raise ValueError("launch.machines > 1 needs launch.mode: processes or ray")
        return self


Tracker = Literal["jsonl", "wandb", "tensorboard", "mlflow"]

SCRATCH = "scratch"
"""`model.name_or_path` value meaning: train M_0 from scratch as `seed_model` says."""


class RunConfig(_Section):
    seed: int = 0
    """Run seed: names the sampling and evaluation random streams; iteration t pairs and
    trains with seed + t; also initialises a scratch seed model."""
    task: TaskConfig = Field(default_factory=TaskConfig)
    """What to train and evaluate on: the task, its data sources and splits."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """The seed model M_0 and how models are loaded."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """Generating N solutions per training question from M_t."""
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    """Building K (winner, loser) pairs per question from the scored samples."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training M_{t+1} on the pairs (or, for SFT methods, on the winners)."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Held-out evaluation of M_0 and every iteration's model."""
    loop: LoopConfig = Field(default_factory=LoopConfig)
    """The iterations and the method each one runs."""
    seed_model: SeedModelConfig | None = None
    """Train M_0 from scratch (only with `model.name_or_path: scratch`); absent by default."""
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    """How the stages are started: in the `irpo run` process, or in processes of their own."""
    trackers: list[Tracker] = Field(default_factory=lambda: list[Tracker](["jsonl"]))
    """Metrics always go to RUN/metrics.jsonl; wandb, tensorboard, mlflow add accelerate's
    trackers."""

    def iteration_seed(self, iteration: int) -> int:
        """The seed of iteration t's pairing and training (`seed + t`)."""
        return self.seed + iteration

    @property
    def eval_max_new_tokens(self) -> int:
        """eval.max_new_tokens, or sampling.max_new_tokens when it is not set."""
        return self.eval.max_new_tokens or self.sampling.max_new_tokens

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if (self.model.name_or_path == SCRATCH) != (self.seed_model is not None):
            raise ValueError(
                f"model.name_or_path: {SCRATCH!r} and a seed_model section go together "
                "(the seed model is trained from scratch only when both are given)"
            )
        if self.train.batch_size % self.train.micro_batch_size:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of "
                f"train.micro_batch_size ({self.train.micro_batch_size})"
            )
        if self.loop.min_gain is not None and not self.eval.on_train_iterations:
            raise ValueError(
                "loop.min_gain compares every iteration's evaluation: it needs "
                "eval.on_train_iterations: true"
            )
        return self


# --------------------------------------------------------------------------- loading


def _format_error(err: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`sampling.temperature=1.3` -> (["sampling", "temperature"], 1.3); values are YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise IrpoError(f"--set {item!r}: expected KEY=VALUE, e.g. sampling.temperature=1.3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()  # yes/no/on/off stay words; boolean fields still accept them
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise IrpoError(f"--set {item!r}: {k} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def config_from_dict(data: dict[str, Any], where: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise IrpoError(_format_error(e, where)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IrpoError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            raise IrpoError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise IrpoError(f"{path}: expected a mapping of sections at the top level")
        data = loaded or {}
    if overrides:
        data = apply_overrides(data, overrides)
        where += " (with --set overrides)"
    return config_from_dict(data, where)


def demo_config_path() -> Path:
    """The embedded default that `irpo demo` runs (the package's copy of configs/demo.yaml)."""
    from importlib import resources

    return Path(str(resources.files("irpo") / "configs" / "demo.yaml"))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- reference

_REFERENCE_INTRO = """\
# Configuration reference

Every key of a run configuration (a YAML file, or `--set section.key=value` on the command line),
with its type, default and meaning. This file is generated from `src/irpo/config.py` by
`python -m irpo.config`; a test (`tests/test_config_docs.py`) fails when it is out of step with
the code, or when a field has no description.
"""


def _type_name(tp: Any) -> str:
    """A readable spelling of a field's type: `int | None`, `"sequence" | "batch_token"`."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    return getattr(tp, "__name__", str(tp))


def _default_text(field: FieldInfo) -> str:
    """The default as it would be written in YAML (`null`, `true`, `[0.9, 0.999]`, `irpo`)."""
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return "(required)"
    plain = to_jsonable_python(default)
    text = yaml.safe_dump(plain, default_flow_style=True, width=1_000_000, sort_keys=False)
    lines = text.strip().splitlines()
    if len(lines) > 1 and lines[-1] == "...":  # the end-of-document marker after a scalar
        lines = lines[:-1]
    return " ".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    """The section model of a RunConfig field (`SeedModelConfig | None` included), or None."""
    for tp in (field.annotation, *get_args(field.annotation)):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
    return None


def _table(model: type[BaseModel], fields: list[str], prefix: str) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name in fields:
        field = model.model_fields[name]
        rows.append(
            f"| {_code(prefix + name)} | {_code(_type_name(field.annotation))} "
            f"| {_code(_default_text(field))} | {_cell(field.description or '')} |"
        )
    return rows


def config_reference() -> str:
    """The Markdown reference of every config key (docs/CONFIG.md): `python -m irpo.config`."""
    fields = RunConfig.model_fields
    sections = {name: _section_model(field) for name, field in fields.items()}
    top = [name for name, model in sections.items() if model is None]
    out = [_REFERENCE_INTRO, "## Top level", "", *_table(RunConfig, top, ""), ""]
    for name, model in sections.items():
        if model is None:
            continue
        out += [f"## `{name}`", "", _cell(fields[name].description or ""), ""]
        out += [*_table(model, list(model.model_fields), f"{name}."), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(config_reference())
