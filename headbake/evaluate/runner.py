"""Run evaluation arms over rows: the model's own prompt, greedy answers or forced-choice scores, resumable.

Every arm sees identical inputs and settings: one prompt builder (the model's
chat template through ``headbake.prompts``, shared with calibration), one
fixed partition of the rows into left-padded batches, greedy decoding. The
partition is fixed by the row order and the batch size alone, so a run
resumed from the cache recomputes exactly the batches an uninterrupted run
would have, and gets the same numbers.

Two modes:

* ``generate``: greedy decoding up to ``max_new_tokens``; the raw text per row
  (scoring is ``headbake.evaluate.scoring``'s job).
* ``forced``: for multiple-choice and yes/no rows, close the reasoning block
  if the model writes one, append ``answer_prefix`` ("Answer:") and pick the
  option whose first tokens ("A", " A"; "Yes", " Yes", "yes", " yes") carry
  the most next-token probability: one forward pass per row instead of
  thousands of decoding steps.

Only one model is in memory at a time: arms on the same checkpoint share one
load, one after another.
"""

from __future__ import annotations

import gc
import importlib.util
import inspect
import math
import os
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from headbake.data.prompts import chat_text
from headbake.devices import input_device
from headbake.errors import EnvironmentProblem, HeadbakeError, first_line
from headbake.evaluate.arms import Arm, check_arms
from headbake.evaluate.cache import ResultCache, digest, image_digest, model_fingerprint
from headbake.evaluate import rows as eval_rows
from headbake.model.info import load_model_info
from headbake.model.loading import load_model as load
from headbake.model.loading import load_processor
from headbake.progress import bar as progress_bar
from headbake.progress import progress_enabled as enabled

MODES = ("generate", "forced")
ENGINES = ("transformers", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")
FORCED_TYPES = ("multiple_choice", "yes_no")
THINK_CLOSE = "<think>\n\n</think>\n\n"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
YES_NO_FORMS = {"yes": ("Yes", "yes"), "no": ("No", "no")}
# Bump when prompt construction or scoring of forced choices changes: older cache entries stop matching.
RUNNER_VERSION = 1


@dataclass(frozen=True)
class EvalSettings:
    mode: str = "generate"
    max_new_tokens: int = 2048  # reasoning models write thousands of tokens before answering
    batch_size: int = 8
    think_close: str | None = "auto"  # forced mode: "auto", a literal string to append, or None/"" for none
    answer_prefix: str = "Answer:"  # forced mode
    dtype: str = "auto"
    device: str | None = None  # None/"auto": cuda when available
    device_map: str | None = None  # "auto": accelerate spreads the model
    engine: str = "transformers"  # or "vllm" (generate mode, plain arms)
    template: object | None = None  # a headbake.prompts.PromptTemplate; None: the bare question
    trust_remote_code: bool = False  # permission to run the checkpoint's own code (does not change outputs)

    def cache_dict(self) -> dict:
        """What changes a row's output (the device does not, by intent; the batch size does, through padding)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("device", "device_map", "template",
                                                                  "trust_remote_code")}
        if self.mode == "generate":
            d.pop("think_close"), d.pop("answer_prefix")
        else:
            d.pop("max_new_tokens")
        tpl = self.template
        d["template"] = tpl.as_dict()["sha256"] if tpl is not None and hasattr(tpl, "as_dict") else None
        d["runner_version"] = RUNNER_VERSION
        return d


@dataclass
class RowResult:
    id: str
    arm: str
    mode: str
    output: str | None = None  # generate: the raw text; forced: the chosen option ("A", "yes")
    choice: str | None = None  # forced: the chosen option
    scores: dict | None = None  # forced: option -> log-probability mass of its first tokens
    new_tokens: int | None = None  # generate: tokens before the end token
    truncated: bool = False  # generate: stopped by max_new_tokens, not by the model
    skipped: str | None = None  # why the row has no result in this mode

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RowResult":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


@dataclass
class EvalRun:
    results: dict  # arm name -> [RowResult] in row order
    arms: dict  # arm name -> {"model": fingerprint, "identity", "computed": rows run now, "seconds", "cpu_seconds"}
    settings: dict

    def outputs(self, arm: str) -> dict:
        return {r.id: r.output for r in self.results[arm]}

    def graded(self, rows, score) -> dict:
        """``{arm: {row id: {"raw", "extracted", "correct", "method", ...}}}``, the report's input.

        ``score(row, output)`` grades one output and returns an object with
        ``as_dict()`` (``headbake.evaluate.scoring.score_row``); skipped rows are left out.
        """
        by_id = {str(r.id): r for r in rows}
        out = {}
        for arm, results in self.results.items():
            per = {}
            for res in results:
                if res is None or res.skipped:
                    continue
                extra = {"scores": res.scores} if res.scores is not None else {
                    "new_tokens": res.new_tokens, "truncated": res.truncated}
                per[res.id] = {"raw": res.output, **score(by_id[res.id], res.output or "").as_dict(),
                               "mode": res.mode, **extra}
            out[arm] = per
        return out


# ----------------------------------------------------------------------------- settings and rows
def progress_enabled(progress: bool | None = None) -> bool:
    """Bars only on a terminal, and never when ``HF_HUB_DISABLE_PROGRESS_BARS`` is set."""
    if progress is not None:
        return bool(progress)

    return enabled(True)


def check_settings(settings: EvalSettings, arms=()) -> None:
    """Every check that needs no model (run it before anything is loaded or downloaded)."""
    if settings.mode not in MODES:
        raise HeadbakeError(f"--mode must be one of {', '.join(MODES)}, got {settings.mode!r}")
    if settings.engine not in ENGINES:
        raise HeadbakeError(f"--engine must be one of {', '.join(ENGINES)}, got {settings.engine!r}")
    if settings.dtype not in DTYPES:
        raise HeadbakeError(f"--dtype must be one of {', '.join(DTYPES)}, got {settings.dtype!r}")
    for name in ("max_new_tokens", "batch_size"):
        v = getattr(settings, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HeadbakeError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if settings.device_map not in (None, "auto"):
        raise HeadbakeError(f"--device-map supports only 'auto', got {settings.device_map!r}")
    if settings.device_map and settings.device not in (None, "auto"):
        raise HeadbakeError("give either --device or --device-map auto, not both")
    if settings.engine == "vllm":
        if settings.mode != "generate":
            raise HeadbakeError("--engine vllm runs --mode generate only; forced scoring uses --engine transformers")
        hooked = [a.name for a in arms if not a.plain]
        if hooked:
            raise HeadbakeError(
                f"--engine vllm runs plain checkpoints only (vanilla, baked); {', '.join(hooked)} needs the "
                "runtime hook: run it with --engine transformers (every arm must use the same engine)"
            )
        _check_vllm()
    elif not settings.device_map:
        from headbake.devices import resolve_device

        resolve_device(settings.device)


def _default_question_text(row) -> str:
    return eval_rows.prompt_text(row)


def row_images(row) -> list:
    """The row's images as RGB PIL images (paths opened now)."""
    if hasattr(row, "open_images"):
        return row.open_images()

    out = []
    for im in row.images:
        if isinstance(im, (str, os.PathLike)):
            with Image.open(im) as f:
                out.append(f.convert("RGB"))
        else:
            out.append(im.convert("RGB"))
    return out


def _chat_text(processor, question: str, n_images: int, template) -> str:

    kwargs = {"template": template} if template is not None else {}
    return chat_text(processor, question, n_images, **kwargs)


def _think_suffix(prompt: str, tokenizer, think_close) -> str:
    if think_close is None or think_close == "":
        return ""
    if think_close != "auto":
        return think_close
    if prompt.rstrip().endswith("<think>"):  # the template opened the block itself
        return "\n</think>\n\n"
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if "<think>" in prompt or "</think>" in vocab:
        return THINK_CLOSE
    return ""


def prompt_text(processor, row, settings: EvalSettings, question_text) -> str:
    """The full text a row's prompt is in ``settings.mode`` (chat template applied)."""
    text = _chat_text(processor, question_text(row), len(row.images), settings.template)
    if settings.mode == "forced":
        text += _think_suffix(text, processor.tokenizer, settings.think_close) + settings.answer_prefix
    return text


def _batches(indices: list, size: int) -> list[list]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


# ----------------------------------------------------------------------------- forced choice
def option_token_ids(tokenizer, row) -> dict:
    """``{option: [first-token ids of its surface forms]}``: with and without a leading space.

    Tokenizers that prefix a space themselves (SentencePiece's "▁") give a
    lone-space first token for " A": it is skipped. Options whose forms
    share a first token cannot be told apart by one forward pass: refused.
    """
    if row.type == "yes_no":
        forms = dict(YES_NO_FORMS)
    else:
        n = len(row.choices or [])
        if not 2 <= n <= len(LETTERS):
            raise HeadbakeError(f"row {row.id}: forced mode needs 2 to {len(LETTERS)} choices, got {n}")
        forms = {LETTERS[i]: (LETTERS[i],) for i in range(n)}
    out = {}
    for option, surfaces in forms.items():
        ids = []
        for s in surfaces:
            for text in (s, " " + s):
                toks = tokenizer.encode(text, add_special_tokens=False)
                while toks and not tokenizer.decode(toks[:1]).strip():
                    toks = toks[1:]
                if toks and toks[0] not in ids:
                    ids.append(toks[0])
        if not ids:
            raise HeadbakeError(f"the tokenizer has no token for option {option!r}")
        out[option] = ids
    seen = {}
    for option, ids in out.items():
        for i in ids:
            if i in seen:
                raise HeadbakeError(
                    f"forced mode cannot tell options {seen[i]!r} and {option!r} apart: both start with token "
                    f"{tokenizer.decode([i])!r}; use --mode generate"
                )
            seen[i] = option
    return out


class ForcedScorer:
    """Forced-choice scoring of ``rows``, prepared once and run on any model or hook.

    ``keep_inputs`` keeps the processed batches for repeated runs (tuning runs
    one per trial on the same rows); an evaluation builds each batch when it
    needs it. Rows that are not multiple choice or yes/no are skipped.
    """
    def __init__(self, processor, rows, settings: EvalSettings, question_text=None, keep_inputs: bool = False):
        self.processor, self.rows, self.settings = processor, list(rows), settings
        self.question_text = question_text or _default_question_text
        self.keep_inputs = keep_inputs
        self.scored = [i for i, r in enumerate(self.rows) if r.type in FORCED_TYPES]
        self.options = {i: option_token_ids(processor.tokenizer, self.rows[i]) for i in self.scored}
        self.batches = _batches(self.scored, settings.batch_size)
        self._inputs: dict = {}

    def skipped(self, row) -> str | None:
        return None if row.type in FORCED_TYPES else f"forced mode scores multiple_choice and yes_no rows, not {row.type}"

    def inputs(self, batch: list):
        key = tuple(batch)
        got = self._inputs.get(key)
        if got is None:
            got = _processor_batch(self.processor, [self.rows[i] for i in batch], self.settings, self.question_text)
            if self.keep_inputs:
                self._inputs[key] = got
        return got

    def run_batch(self, model, batch: list, keep_logprobs: bool = False):
        """``[RowResult]`` (arm left empty) for the rows at ``batch``; with ``keep_logprobs`` also ``[B, V]`` log-probs."""
        inputs = _to_device(self.inputs(batch), input_device(model))
        kwargs = dict(inputs)
        kwargs["use_cache"] = False
        if _accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = 1
        with torch.no_grad():
            logits = model(**kwargs).logits[:, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1).cpu()
        out = []
        for b, i in enumerate(batch):
            scores = {opt: float(torch.logsumexp(logprobs[b, ids], 0)) for opt, ids in self.options[i].items()}
            choice = max(scores, key=lambda o: (scores[o], -list(scores).index(o)))
            out.append(RowResult(str(self.rows[i].id), "", "forced", output=choice, choice=choice, scores=scores))
        return (out, logprobs) if keep_logprobs else out

    def run(self, model, context=None, keep_logprobs: bool = False):
        """Every scorable row: ``{row index: RowResult}`` (and ``[n, V]`` log-probs in ``self.scored`` order)."""
        results, lps = {}, []
        with context(model) if context is not None else nullcontext():
            for batch in self.batches:
                got = self.run_batch(model, batch, keep_logprobs)
                if keep_logprobs:
                    got, lp = got
                    lps.append(lp)
                results.update(zip(batch, got))
        return (results, torch.cat(lps)) if keep_logprobs else results


# ----------------------------------------------------------------------------- generation
def _processor_batch(processor, rows, settings, question_text):
    texts, images = [], []
    for r in rows:
        imgs = row_images(r)
        texts.append(prompt_text(processor, r, settings, question_text))
        images.extend(imgs)
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"
    try:
        batch = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    except (ValueError, TypeError) as e:
        raise HeadbakeError(f"the processor rejected rows {rows[0].id}..{rows[-1].id}: {first_line(e)}") from None
    batch.pop("token_type_ids", None)
    return batch


def _end_ids(model, tokenizer) -> set:
    ids = set()
    for src in (getattr(model, "generation_config", None), model.config):
        eos = getattr(src, "eos_token_id", None)
        if eos is not None:
            ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids}


def generate_batch(model, processor, rows, settings: EvalSettings, question_text=None) -> list[RowResult]:
    """Greedy answers for ``rows`` in one left-padded batch (arm left empty)."""
    question_text = question_text or _default_question_text
    inputs = _to_device(_processor_batch(processor, rows, settings, question_text), input_device(model))
    tok = processor.tokenizer
    ends = _end_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else getattr(model.generation_config, "pad_token_id", None)
    with torch.no_grad():
        seqs = model.generate(
            **inputs, max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None, pad_token_id=pad if pad is not None else min(ends or {0}),
        )
    new = seqs[:, inputs["input_ids"].shape[1]:].cpu().tolist()
    out = []
    for r, toks in zip(rows, new):
        stop = next((k for k, t in enumerate(toks) if t in ends), None)
        body = toks if stop is None else toks[:stop]
        text = tok.decode(body, skip_special_tokens=True)
        out.append(RowResult(str(r.id), "", "generate", output=text, new_tokens=len(body),
                             truncated=stop is None and len(toks) >= settings.max_new_tokens))
    return out


# ----------------------------------------------------------------------------- models
def _to_device(batch, device):
    return batch.to(device) if hasattr(batch, "to") else {k: v.to(device) for k, v in batch.items()}


def _accepts(model, name: str) -> bool:

    return name in inspect.signature(model.forward).parameters


def load_model(model_dir, settings: EvalSettings, progress: bool = False):
    """The checkpoint loaded by headbake's one loader (``headbake.model.loading``), with its processor."""
    info = load_model_info(model_dir)
    model = load(model_dir, info, dtype=settings.dtype, device=settings.device, device_map=settings.device_map,
                 trust_remote_code=settings.trust_remote_code, progress=progress)
    return model, load_processor(model_dir, trust_remote_code=settings.trust_remote_code)


def _release() -> None:
    """Return freed model memory (call after dropping the last reference)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# ----------------------------------------------------------------------------- vLLM
def _check_vllm() -> None:

    if importlib.util.find_spec("vllm") is None:
        raise EnvironmentProblem("--engine vllm needs vLLM, which is not installed (pip install vllm; it runs on "
                                 "Linux with a CUDA GPU); use --engine transformers")

    if not torch.cuda.is_available():
        raise EnvironmentProblem("--engine vllm needs a CUDA GPU, and torch sees none on this machine; use "
                                 "--engine transformers")


def _vllm_generate(llm, processor, rows, settings, question_text) -> list[RowResult]:
    """Greedy answers through vLLM's ``LLM.generate``; the prompt strings are the same chat texts."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens)
    prompts = []
    for r in rows:
        imgs = row_images(r)
        prompts.append({"prompt": prompt_text(processor, r, settings, question_text),
                        "multi_modal_data": {"image": imgs[0] if len(imgs) == 1 else imgs}})
    outs = llm.generate(prompts, params, use_tqdm=False)
    return [RowResult(str(r.id), "", "generate", output=o.outputs[0].text, new_tokens=len(o.outputs[0].token_ids),
                      truncated=o.outputs[0].finish_reason == "length") for r, o in zip(rows, outs)]


def _vllm_load(model_dir, settings, rows):
    from vllm import LLM

    most = max((len(r.images) for r in rows), default=1)
    llm = LLM(model=str(model_dir), dtype=settings.dtype, seed=0, limit_mm_per_prompt={"image": max(most, 1)},
              trust_remote_code=settings.trust_remote_code)
    return llm, load_processor(model_dir, trust_remote_code=settings.trust_remote_code)


# ----------------------------------------------------------------------------- running arms
def run_arms(
    arms,
    rows,
    settings: EvalSettings = EvalSettings(),
    *,
    cache=None,
    question_text=None,
    progress: bool | None = None,
    on_row=None,
    cached_only: bool = False,
) -> EvalRun:
    """Evaluate every arm on every row; results in row order per arm.

    ``cache``: a path or ``ResultCache`` (default: in memory) -- rows found
    there are not recomputed. ``question_text(row)``: the user text of a row
    (default: ``headbake.evaluate.rows.prompt_text``). ``on_row(result)`` is
    called after each row is stored (tests use it to interrupt a run).
    ``cached_only``: load no model; rows not in the cache stay ``None`` (to
    find what an earlier run in another mode already answered).
    """
    arms = list(arms)
    check_arms(arms)
    check_settings(settings, arms)
    rows = list(rows)
    ids = [str(r.id) for r in rows]
    if len(set(ids)) != len(ids):
        raise HeadbakeError("row ids must be unique")
    question_text = question_text or _default_question_text
    cache = cache if isinstance(cache, ResultCache) else ResultCache(cache)
    settings_key = digest(settings.cache_dict())
    bar_on = progress_enabled(progress)

    fingerprints = {a.name: model_fingerprint(a.model_dir) for a in arms}
    groups: dict[str, list[Arm]] = {}
    for a in arms:
        groups.setdefault(str(Path(a.model_dir).resolve()), []).append(a)

    results: dict[str, list] = {a.name: [None] * len(rows) for a in arms}
    meta = {a.name: {"model": fingerprints[a.name], "identity": a.identity, "computed": 0, "seconds": 0.0,
                     "cpu_seconds": 0.0} for a in arms}
    for members in groups.values():
        _run_group(members, rows, settings, cache, settings_key, fingerprints, question_text, bar_on, on_row,
                   results, meta, cached_only)
    return EvalRun({a.name: results[a.name] for a in arms}, meta,
                   {**settings.cache_dict(), "device": settings.device, "device_map": settings.device_map,
                    "settings_sha256": settings_key})


def _row_keys(processor, rows, settings, question_text) -> list[str]:
    keys = []
    for r in rows:
        keys.append(digest({"id": str(r.id), "prompt": prompt_text(processor, r, settings, question_text),
                            "images": [image_digest(im) for im in r.images]}))
    return keys


def _run_group(members, rows, settings, cache, settings_key, fingerprints, question_text, bar_on, on_row,
               results, meta, cached_only=False) -> None:
    """Arms on one checkpoint: one processor, at most one loaded model, arm after arm."""
    model_dir = members[0].model_dir
    processor = load_processor(model_dir, trust_remote_code=settings.trust_remote_code)
    row_keys = _row_keys(processor, rows, settings, question_text)
    forced = ForcedScorer(processor, rows, settings, question_text) if settings.mode == "forced" else None
    model = None
    try:
        for arm in members:
            keys = [ResultCache.key(fingerprints[arm.name], {"arm": arm.name, **arm.identity}, settings_key, k)
                    for k in row_keys]
            missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
            if cached_only:
                _fill_from_cache(arm, rows, keys, cache, forced, results)
                continue
            if missing and model is None:
                if settings.engine == "vllm":
                    model, processor = _vllm_load(model_dir, settings, rows)
                else:
                    model, processor = load_model(model_dir, settings, bar_on)
            _run_arm(arm, model, processor, rows, keys, settings, cache, forced, question_text, bar_on, on_row,
                     results, meta)
    finally:
        if model is not None:
            model = None
            _release()


def _fill_from_cache(arm, rows, keys, cache, forced, results) -> list:
    out = results[arm.name]
    for i, k in enumerate(keys):
        got = cache.get(k)
        if got is not None:
            out[i] = RowResult.from_dict({**got, "arm": arm.name})
    if forced is not None:
        for i, r in enumerate(rows):
            reason = forced.skipped(r)
            if reason and out[i] is None:
                out[i] = RowResult(str(r.id), arm.name, "forced", skipped=reason)
    return out


def _run_arm(arm, model, processor, rows, keys, settings, cache, forced, question_text, bar_on, on_row,
             results, meta) -> None:

    out = _fill_from_cache(arm, rows, keys, cache, forced, results)
    if forced is not None:
        batches = forced.batches
    else:
        batches = _batches(list(range(len(rows))), settings.batch_size)
    todo = [b for b in batches if any(out[i] is None for i in b)]
    if not todo:
        return
    t0, c0 = time.perf_counter(), time.process_time()
    done = sum(r is not None for r in out)
    bar = progress_bar(len(rows), f"{arm.name} ({settings.mode})", unit="row", enabled=bar_on, initial=done)
    try:
        with ExitStack() as stack:
            if arm.context is not None:
                stack.enter_context(arm.context(model))
            for batch in todo:
                if forced is not None:
                    got = forced.run_batch(model, batch)
                elif settings.engine == "vllm":
                    got = _vllm_generate(model, processor, [rows[i] for i in batch], settings, question_text)
                else:
                    got = generate_batch(model, processor, [rows[i] for i in batch], settings, question_text)
                for i, res in zip(batch, got):
                    if out[i] is not None:  # cached from an earlier run: keep the first result
                        continue
                    res.arm = arm.name
                    out[i] = res
                    record = res.to_dict()
                    record.pop("arm")
                    cache.put(keys[i], record, arm=arm.name, row=res.id)
                    meta[arm.name]["computed"] += 1
                    bar.update(1)
                    if on_row is not None:
                        on_row(res)
    finally:
        bar.close()
        meta[arm.name]["seconds"] += time.perf_counter() - t0
        meta[arm.name]["cpu_seconds"] += time.process_time() - c0


def rows_per_second(run: EvalRun, arm: str, clock: str = "seconds") -> float:
    """Rows computed per second of the arm's own time (model loading excluded); ``clock``: seconds | cpu_seconds."""
    m = run.arms[arm]
    return m["computed"] / m[clock] if m[clock] > 0 and m["computed"] else math.nan
