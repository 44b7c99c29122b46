"""The two objectives of a trial, on the dev rows, with the model already loaded: accuracy and KL from vanilla.

* accuracy: by default the forced-answer proxy of ``headbake eval --mode
  forced`` (one forward pass per row, multiple-choice and yes/no rows); with
  ``mode="generate"``, greedy generation graded by ``headbake.evaluate.scoring``.
* KL: ``KL(vanilla || trial)`` of the next-token distribution at the end of
  each dev prompt (the answer position in forced mode, the first generated
  token in generate mode), averaged over rows, in nats. The vanilla
  log-probabilities are computed once, when the scorer is built.

A trial's gains go in through ``headbake.runtime.apply_gains`` on the one
loaded model (no reload); results are remembered by the gains matrix's
digest, so the reference points (vanilla, the default preset) are never
scored twice.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from headbake.devices import input_device
from headbake.errors import HeadbakeError
from headbake.evaluate.arms import gains_digest
from headbake.evaluate.rows import prompt_text as row_text
from headbake.evaluate.runner import ForcedScorer, prompt_text, row_images
from headbake.runtime import apply_gains


@dataclass
class DevResult:
    accuracy: float
    kl: float  # mean KL(vanilla || trial) over the dev rows, nats
    correct: int
    n: int
    flags: dict = field(default_factory=dict)  # row id -> right?
    seconds: float = 0.0  # model time (0 for a remembered result)
    cached: bool = False


def _kl_rows(lp0, lp1):
    """Per-row ``KL(p0 || p1)`` from log-probabilities ``[B, V]`` (float64; zero-probability terms are 0)."""
    lp0, lp1 = lp0.double(), lp1.double()
    p0 = lp0.exp()
    return torch.where(p0 > 0, p0 * (lp0 - lp1), torch.zeros_like(p0)).sum(-1).clamp_min(0.0)


class _NextToken:
    """Log-probabilities of the token after each prompt (generate mode's KL), inputs built once."""
    def __init__(self, processor, rows, settings, question_text=None):

        question_text = question_text or row_text
        self.batches, self._inputs = [], []
        tok = getattr(processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"
        idx = list(range(len(rows)))
        for start in range(0, len(idx), settings.batch_size):
            batch = idx[start:start + settings.batch_size]
            texts, images = [], []
            for i in batch:
                texts.append(prompt_text(processor, rows[i], settings, question_text))
                images.extend(row_images(rows[i]))
            try:
                inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
            except (ValueError, TypeError) as e:
                from headbake.errors import first_line

                raise HeadbakeError(f"the processor rejected dev rows {rows[batch[0]].id}..{rows[batch[-1]].id}: "
                                    f"{first_line(e)}") from None
            inputs.pop("token_type_ids", None)
            self.batches.append(batch)
            self._inputs.append(inputs)

    def run(self, model):

        out = []
        for inputs in self._inputs:
            with torch.no_grad():
                logits = model(**inputs.to(input_device(model)), use_cache=False).logits[:, -1].float()
            out.append(torch.log_softmax(logits, -1).cpu())
        return out


class DevScorer:
    """Scores any gains matrix on the dev rows; built once per tune run (vanilla is scored here)."""
    def __init__(self, model, processor, rows, settings, question_text=None):

        self.model, self.processor, self.settings = model, processor, settings
        self.rows = list(rows)
        self.question_text = question_text
        self.mode = settings.mode
        if self.mode == "forced":
            self.forced = ForcedScorer(processor, self.rows, settings, question_text, keep_inputs=True)
            self.scored = [self.rows[i] for i in self.forced.scored]
            if not self.scored:
                raise HeadbakeError("--objective forced scores multiple_choice and yes_no rows, and the dev set has "
                                    "none; use --objective generate")
        elif self.mode == "generate":
            self.next_token = _NextToken(processor, self.rows, settings, question_text)
            self.scored = list(self.rows)
        else:
            raise HeadbakeError(f"--objective must be forced or generate, got {self.mode!r}")
        self.skipped = len(self.rows) - len(self.scored)
        self._memo: dict = {}
        self.evaluations = 0
        t0 = time.perf_counter()
        self._vanilla_lp = None
        self.vanilla = self._score(None)
        self.vanilla.seconds = time.perf_counter() - t0

    def _score(self, gains) -> DevResult:

        ctx = apply_gains(self.model, gains) if gains is not None else nullcontext()
        flags, lps = {}, []
        with ctx:
            if self.mode == "forced":
                for batch in self.forced.batches:
                    results, lp = self.forced.run_batch(self.model, batch, keep_logprobs=True)
                    lps.append(lp)
                    for i, res in zip(batch, results):
                        flags[str(self.rows[i].id)] = res.choice == self.rows[i].answer
            else:
                from headbake.evaluate.runner import generate_batch
                from headbake.evaluate.scoring import score_row

                lps = self.next_token.run(self.model)
                for batch in self.next_token.batches:
                    rows = [self.rows[i] for i in batch]
                    for row, res in zip(rows, generate_batch(self.model, self.processor, rows, self.settings,
                                                             self.question_text)):
                        flags[str(row.id)] = bool(score_row(row, res.output or "").correct)
        if self._vanilla_lp is None:
            self._vanilla_lp = lps
            kl = 0.0
        else:
            kl = float(torch.cat([_kl_rows(a, b) for a, b in zip(self._vanilla_lp, lps)]).mean())
        n, k = len(flags), sum(flags.values())
        return DevResult(k / n, kl, k, n, flags)

    def evaluate(self, gains) -> DevResult:
        """Accuracy and KL of ``gains`` (``[num_layers][num_heads]``); remembered per gains matrix."""
        if all(g == 1.0 for row in gains for g in row):
            v = self.vanilla
            return DevResult(v.accuracy, 0.0, v.correct, v.n, dict(v.flags), 0.0, True)
        key = gains_digest(gains)
        got = self._memo.get(key)
        if got is not None:
            return DevResult(got.accuracy, got.kl, got.correct, got.n, dict(got.flags), 0.0, True)
        t0 = time.perf_counter()
        res = self._score(gains)
        res.seconds = time.perf_counter() - t0
        self.evaluations += 1
        self._memo[key] = res
        return res
