"""A tiny Qwen2.5-VL whose answers carry a planted, known response to head gains.

Eval and tune need a model on which "the gains fix these rows" is a fact, not
a hope. This module builds one offline from the real transformers classes
(``headbake.demo.build_tiny_qwen25vl`` with hand-set weights) together with a
JSONL eval set of 56x56 solid-colour squares, and states in advance which
rows each gain setting gets right; ``tests/test_planted.py`` checks those
statements against the real model.

The circuit (4 decoder layers x 4 heads, GQA 2 KV heads, fp32, RoPE theta 1e6):

* Vision tower: the patch embedding reads the square's colour as
  ``s = (R - B) / 255`` (red against blue; the truth of every question) and
  ``n = (G - 128) / 255`` (green: a nuisance); the blocks add constants only,
  and the merger passes ``s`` and ``n`` on, so each of the 4 image tokens
  enters the language model as ``e_img + 0.1 s e_sig + 0.1 n e_noise``.
* Attention: queries are constant (bias only) and keys mark image tokens,
  ``<|im_start|>`` tokens and the option letters ``A``/``B``, in
  position-free RoPE dimensions; each head's ``S_v`` is set by its image
  score against the three ``<|im_start|>`` tokens, so it does not depend on
  the question's length.
* Heads that matter (``S_v`` as calibrated on the rows' questions):
  ``P`` (layer 0, head 0, S_v 0.92) carries the answer ``s + 1`` into a
  decision direction; ``R`` (3, 1, S_v 0.015) reads the option letters and
  pushes multiple-choice rows towards "A"; ``D`` (0, 1, 0.45), ``D2``
  (2, 0, 0.95), ``R2`` (1, 1, 0.005) and ``R3`` (3, 2, 0.11) carry the green
  nuisance ``n``; ``M`` (0, 2) flags multiple-choice prompts so generation
  answers with a letter. The other heads write to directions that only move
  unrelated logits (they change the KL, never an answer).
* The LM head answers "Yes"/"A" when ``sum(head writes) > bias``; the bias
  is 1.25 units for yes/no and 0.3 units more for multiple choice, so the
  vanilla model says "No"/"B" on red squares with a small margin.

In design units the decision margin of a row is::

    g_P (s + 1) - 1.25 + 0.8 n (g_D + g_D2 + g_R2 + g_R3) + [MC] (1.0 (g_R - 1) - 0.3)

(each term scaled by ``1/|x|`` of the image token, < 0.6% here).
Amplifying ``P`` by ~1.25 fixes red rows with small ``s``; multiple-choice
rows also need ``R`` at ~1.3; any nuisance head amplified by more than
~1.08 breaks the two green-cyan rows. So the rule's best configuration on
this model selects exactly ``{P}`` as perceptual and ``{R}`` as reasoning
heads (``BEST_SELECTION_BOUNDS``), with ``g_perc`` in [1.19, 1.31] and
``g_reas`` in a band around ``2.55 - g_perc`` (``best_gain_cells()``): 22
of 24 rows right against 13 for the vanilla model. Two rows are labelled
against their colour (no setting fixes them).

The facts hold for prompts laid out as ``question_text`` below (the layout of
``headbake.evaluate.rows.prompt_text``: options as "A. red" lines, so each
option letter appears once), with or without the forced-mode suffix
"Answer:", and for S_v calibrated on the rows' bare questions or on those
prompts (only R's S_v moves, 0.015 -> ~0.012). They do not hold for other
image sizes (S_v depends on the 4 image tokens a 56x56 square gives).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# ----------------------------------------------------------------------------- geometry
HIDDEN, LAYERS, HEADS, KV_HEADS = 64, 4, 4, 2
HEAD_DIM = HIDDEN // HEADS
ROPE_THETA = 1.0e6  # Qwen2.5's own; makes RoPE dims 5-7 (and 13-15) position-free over ~100 tokens

# residual-stream dimensions
TXT, IMG, SIG, NOISE, START, ANS, MCM = 0, 1, 2, 3, 4, 5, 6
DEC, MCFLAG = 8, 9
JUNK = (10, 11, 12, 13)
# key dims (each in its own RoPE pair, partner left at zero: no cross terms)
K_IMG, K_START, K_MC = 7, 6, 5
# value dims
V_SIG, V_NOISE, V_MC, V_IMG = 0, 1, 2, 3

UNIT = 0.02  # decision-direction write per design unit
FEATURE = 0.1  # image tokens carry 0.1 * s and 0.1 * n
Z_START = 12.0  # score of the three <|im_start|> tokens, every head
N_IMAGE_TOKENS, N_START = 4, 3
VISION_K = 50.0  # constant the vision blocks add, so the merger's RMSNorm is ~linear in s and n
GELU_BIAS = 6.0  # keeps the merger's GELU in its identity range
IMAGE_SIZE = 56

# decision design (units)
BIAS_YN = 1.25
MC_EXTRA = 0.3  # multiple-choice rows lean further to "B" ...
RHO = 1.0  # ... and R gives back RHO * g_R of it
MU = 0.8  # nuisance weight of each nuisance head

# LM head (logits are these times 8/|h| after the final RMSNorm)
W_DEC = 0.5 / UNIT  # half a logit-unit per design unit on each side
C0, C_AB, W_FLAG, MCFLAG_VALUE = 1.5, 1.0, 100.0, 0.02
W_EOS, C_EOS, W_JUNK, JUNK_UNITS = 8.0, 1.0, 30.0, 0.5
TIE = 0.05  # "Yes" over " Yes" (and so on), so greedy generation has no exact ties


@dataclass(frozen=True)
class Head:
    role: str  # P, D, D2, R, R2, R3, M or neutral
    sv: float  # target S_v on a prompt with no option letters
    z_mc: float = 0.0  # score of the option letters A/B
    writes: tuple = ()  # (value dim, residual dim, amount): amount in design units of that source's share


HEAD_TABLE = {
    (0, 0): Head("P", 0.92, writes=((V_SIG, DEC, 1.0), (V_IMG, DEC, 1.0))),
    (0, 1): Head("D", 0.45, writes=((V_NOISE, DEC, MU),)),
    (0, 2): Head("M", 0.001, z_mc=16.0, writes=((V_MC, MCFLAG, None),)),
    (0, 3): Head("neutral", 0.30, writes=((V_IMG, JUNK[0], JUNK_UNITS),)),
    (1, 0): Head("neutral", 0.55, writes=((V_IMG, JUNK[1], JUNK_UNITS),)),
    (1, 1): Head("R2", 0.005, writes=((V_NOISE, DEC, MU),)),
    (1, 2): Head("neutral", 0.15, writes=((V_IMG, JUNK[2], JUNK_UNITS),)),
    (1, 3): Head("neutral", 0.25, writes=((V_IMG, JUNK[3], JUNK_UNITS),)),
    (2, 0): Head("D2", 0.95, writes=((V_NOISE, DEC, MU),)),
    (2, 1): Head("neutral", 0.70, writes=((V_IMG, JUNK[0], JUNK_UNITS),)),
    (2, 2): Head("neutral", 0.04, writes=((V_IMG, JUNK[1], JUNK_UNITS),)),
    (2, 3): Head("neutral", 0.12, writes=((V_IMG, JUNK[2], JUNK_UNITS),)),
    (3, 0): Head("neutral", 0.35, writes=((V_IMG, JUNK[3], JUNK_UNITS),)),
    (3, 1): Head("R", 0.015, z_mc=Z_START, writes=((V_MC, DEC, RHO),)),
    (3, 2): Head("R3", 0.11, writes=((V_NOISE, DEC, MU),)),
    (3, 3): Head("neutral", 0.60, writes=((V_IMG, JUNK[0], JUNK_UNITS),)),
}
ROLE = {h.role: lh for lh, h in HEAD_TABLE.items() if h.role != "neutral"}
NUISANCE = ("D", "D2", "R2", "R3")

SV_DESIGN = [[HEAD_TABLE[(l, h)].sv for h in range(HEADS)] for l in range(LAYERS)]

BEST_PARAMS = dict(l_perc=0, tau_perc=0.70, g_perc=1.25, l_reas=3, tau_reas=0.05, g_reas=1.30)
# Settings whose selection is {P} perceptual and {R} reasoning, the best one (each bound independent of
# the others; the exact edges are the measured S_v of D, P, R and R3, a few thousandths below the design's):
BEST_SELECTION_BOUNDS = {
    "l_perc": (0, 1),  # inclusive: D2 sits in layer 2
    "tau_perc": (0.45, 0.90),  # tau_perc > 0.45 leaves D out; <= 0.90 keeps P (~0.918)
    "l_reas": (2, 3),  # inclusive: R2 sits in layer 1
    "tau_reas": (0.02, 0.10),  # >= 0.02 keeps R (~0.015); < 0.10 leaves R3 (~0.108) out
}


def _image_score(sv: float) -> float:
    """The image-token score that gives ``sv`` against the three start tokens."""
    return Z_START + math.log(N_START * sv / (N_IMAGE_TOKENS * (1.0 - sv)))


def _shares(head: Head, n_mc: int, key: float = 1.0):
    """(image share, option-letter share) of a head's attention at the last position (other text ~0).

    ``key`` is the image tokens' key (1/|x| of their residual: the RMSNorm).
    """
    terms = {"img": N_IMAGE_TOKENS * math.exp(_image_score(head.sv) * key), "start": N_START * math.exp(Z_START),
             "mc": n_mc * math.exp(head.z_mc)}
    total = sum(terms.values())
    return terms["img"] / total, terms["mc"] / total


# ----------------------------------------------------------------------------- rows
YES_NO_Q = "Is this square more red than blue?"
MC_Q = "Which colour dominates this square?"
MC_CHOICES = ["red", "blue"]
CLEAN_D = (13, 26, 38, 51, 77, 153, -13, -26, -77, -153)  # R - B of the clean squares
HARD_D = 204  # a clearly red square labelled "blue"/"no": no setting can fix it


@dataclass(frozen=True)
class RowSpec:
    id: str
    type: str  # yes_no | multiple_choice
    rgb: tuple
    answer: str

    @property
    def s(self) -> float:
        return (self.rgb[0] - self.rgb[2]) / 255.0

    @property
    def n(self) -> float:
        return (self.rgb[1] - 128) / 255.0

    @property
    def mc(self) -> bool:
        return self.type == "multiple_choice"


def _rgb(d: int, g: int = 128) -> tuple:
    return (128 + d - d // 2, g, 128 - d // 2)


def _row_specs() -> list[RowSpec]:
    rows = []
    for i, d in enumerate(CLEAN_D + (HARD_D,)):
        truth = "yes" if d > 0 and d != HARD_D else "no"
        rows.append(RowSpec(f"yn-{i:02d}", "yes_no", _rgb(d), truth))
    rows.append(RowSpec("yn-11", "yes_no", (4, 228, 255), "no"))  # green-cyan: the nuisance heads' victims
    rows.append(RowSpec("yn-12", "yes_no", (1, 225, 246), "no"))
    for i, d in enumerate(CLEAN_D + (HARD_D,)):
        truth = "A" if d > 0 and d != HARD_D else "B"
        rows.append(RowSpec(f"mc-{i:02d}", "multiple_choice", _rgb(d), truth))
    return rows


ROW_SPECS = _row_specs()
ROW_IDS = [r.id for r in ROW_SPECS]


def question_text(row) -> str:
    """The user text the eval runner shows (the same layout as ``headbake.evaluate.rows.prompt_text``)."""
    choices = getattr(row, "choices", None)
    parts = [row.question]
    if choices:
        parts.append("\n".join(f"{'ABCDEFGH'[i]}. {c}" for i, c in enumerate(choices)))
        parts.append("Answer with the option's letter from the given choices.")
    else:
        parts.append("Answer yes or no.")
    return "\n".join(parts)


EXTRA_CORPUS = [
    "Answer: Yes", "Answer: No", "Yes. No. Yes, No.", "Answer yes or no.",
    "Answer with the option's letter from the given choices.", YES_NO_Q, MC_Q, "A. red", "B. blue",
]


# ----------------------------------------------------------------------------- the design's predictions
def _norm(row: RowSpec) -> float:
    return math.sqrt(1.0 + FEATURE**2 * (row.s**2 + row.n**2))


ROLES = ("P", "D", "D2", "R2", "R3", "R")


def margin_coefficients(row: RowSpec) -> tuple[dict, float]:
    """``({role: c}, c0)`` with the row's margin = ``c0 + sum(c[role] * gain[role])`` (linear in the gains)."""
    inv = 1.0 / _norm(row)

    def img(role):  # a head's image share on this row, relative to the share its weights were set for
        head = HEAD_TABLE[ROLE[role]]
        return _shares(head, 2 if row.mc else 0, inv)[0] / _shares(head, 2)[0]

    c = {"P": img("P") * (row.s + 1.0) * inv, "R": RHO if row.mc else 0.0}
    c.update({r: MU * row.n * inv * img(r) for r in NUISANCE})
    return c, -BIAS_YN - ((RHO + MC_EXTRA) if row.mc else 0.0)


def design_margin(row: RowSpec, gains) -> float:
    """The decision margin in design units (> 0: "yes"/"A") that the circuit implements for ``gains``.

    Exact for layer 0; it neglects the few-per-mille drift of deeper layers' keys.
    """
    c, c0 = margin_coefficients(row)
    return c0 + sum(c[r] * float(gains[ROLE[r][0]][ROLE[r][1]]) for r in ROLES)


def predicted_answer(row: RowSpec, gains) -> str:
    yes = design_margin(row, gains) > 0
    if row.mc:
        return "A" if yes else "B"
    return "yes" if yes else "no"


def predicted_correct(gains) -> set:
    return {r.id for r in ROW_SPECS if predicted_answer(r, gains) == r.answer}


def best_gain_cells(step: float = 0.01) -> set:
    """``{(g_perc, g_reas)}`` on a ``step`` grid where the best selection reaches its maximum (the design)."""
    return set(search_design(step)[(frozenset({"P"}), frozenset({"R"}))][1])


def in_best_selection(params: dict) -> bool:
    """Whether ``params``' layer bounds and thresholds select the best head set (see BEST_SELECTION_BOUNDS)."""
    b = BEST_SELECTION_BOUNDS
    return (b["l_perc"][0] <= params["l_perc"] <= b["l_perc"][1] and b["tau_perc"][0] < params["tau_perc"] <= b["tau_perc"][1]
            and b["l_reas"][0] <= params["l_reas"] <= b["l_reas"][1]
            and b["tau_reas"][0] <= params["tau_reas"] < b["tau_reas"][1])


def unit_gains():
    return [[1.0] * HEADS for _ in range(LAYERS)]


def gains_for(params: dict, sv=None):
    """The gains matrix the paper's rule gives for ``params`` on ``sv`` (default: the design's S_v)."""
    from headbake.calibrate.selection import Params, select_heads

    return select_heads(SV_DESIGN if sv is None else sv, Params(**params)).gains


def search_design(step: float = 0.01, top: float = 1.6):
    """Brute force over every selection of the six relevant heads and a gain grid (the design, no model).

    Returns ``{(perceptual roles, reasoning roles): (max rows correct, [(g_perc, g_reas), ...] reaching it)}``.
    """
    import numpy as np

    coef = np.array([[margin_coefficients(r)[0][k] for k in ROLES] for r in ROW_SPECS])  # [rows, 6]
    c0 = np.array([margin_coefficients(r)[1] for r in ROW_SPECS])
    yes = np.array([r.answer in ("yes", "A") for r in ROW_SPECS])
    grid = np.round(np.arange(1.0, top + step / 2, step), 4)
    gp, gr = np.meshgrid(grid, grid, indexing="ij")
    out = {}
    for perc in itertools.product((0, 1), repeat=3):
        for reas in itertools.product((0, 1), repeat=3):
            on = dict(zip(("P", "D", "D2", "R", "R2", "R3"), perc + reas))
            g = np.stack([np.where(on[k], gp if k in ("P", "D", "D2") else gr, 1.0) for k in ROLES], -1)
            margins = c0 + np.einsum("abk,rk->abr", g, coef)
            correct = ((margins > 0) == yes).sum(-1)
            best = int(correct.max())
            i, j = np.nonzero(correct == best)
            key = (frozenset(k for k in ("P", "D", "D2") if on[k]), frozenset(k for k in ("R", "R2", "R3") if on[k]))
            out[key] = (best, [(float(grid[a]), float(grid[b])) for a, b in zip(i, j)])
    return out


@dataclass(frozen=True)
class Scenario:
    name: str
    params: dict | None  # selection-rule settings (None: hand-written gains)
    gains: list
    correct: frozenset
    fixed: frozenset  # wrong under vanilla, right here
    broken: frozenset  # right under vanilla, wrong here


def _scenario(name, params=None, gains=None) -> Scenario:
    gains = gains if gains is not None else gains_for(params)
    van = predicted_correct(unit_gains())
    cor = predicted_correct(gains)
    return Scenario(name, params, gains, frozenset(cor), frozenset(cor - van), frozenset(van - cor))


def scenarios() -> dict:
    """Named settings with their predicted outcome (checked against the real model in test_planted.py)."""
    best = dict(BEST_PARAMS)
    return {s.name: s for s in (
        _scenario("vanilla", gains=unit_gains()),
        _scenario("best", best),
        # perceptual head only: fixes the yes/no rows, not the multiple-choice ones
        _scenario("perceptual_only", dict(best, g_reas=1.0)),
        # reasoning head only: fixes the multiple-choice rows whose margin R alone can close
        _scenario("reasoning_only", dict(best, g_perc=1.0)),
        # tau_perc below D's S_v: D is amplified with P and breaks the two green-cyan rows
        _scenario("with_distractor", dict(best, tau_perc=0.40)),
        # l_reas=1 takes R2 in: breaks the same two rows
        _scenario("reasoning_too_shallow", dict(best, l_reas=1)),
        # too much perceptual gain: blue rows with small margins flip to "yes"
        _scenario("perceptual_too_strong", dict(best, g_perc=1.45)),
    )}


# ----------------------------------------------------------------------------- the weights
def _set_weights(model, tokenizer):
    """Zero every parameter, then write the circuit described in the module docstring."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():  # RMSNorm weights back to 1
            if name.endswith("norm.weight") or ".norm1." in name or ".norm2." in name or "ln_q" in name or (
                name.endswith("layernorm.weight")
            ):
                p.fill_(1.0)
        _vision(model)
        _embeddings(model, tokenizer)
        _attention(model)
        _lm_head(model, tokenizer)


def _vision(model):
    visual = model.model.visual
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP
    w = visual.patch_embed.proj.weight  # [32, 3, 2, 14, 14]
    per = 1.0 / (w.shape[2] * w.shape[3] * w.shape[4])
    # channel 0 of a patch: R/255 - B/255 (minus the means, added back below); channel 2: G/255
    w[0, 0] = std[0] * per
    w[0, 2] = -std[2] * per
    w[2, 1] = std[1] * per
    bias = visual.blocks[0].mlp.down_proj.bias
    bias[0] = mean[0] - mean[2]
    bias[1] = VISION_K
    bias[2] = mean[1] - 128.0 / 255.0
    ctx = w.shape[0]
    merger = visual.merger
    lin1, lin2 = merger.mlp[0], merger.mlp[2]
    for p in range(lin1.in_features // ctx):  # the 2x2 patches merged into one token
        lin1.weight[0, p * ctx + 0] = 1.0 / (lin1.in_features // ctx)
        lin1.weight[1, p * ctx + 2] = 1.0 / (lin1.in_features // ctx)
    lin1.bias[0] = GELU_BIAS
    lin1.bias[1] = GELU_BIAS
    # after the RMSNorm a patch's s is s * sqrt(ctx) / |x| with |x| ~ VISION_K
    scale = FEATURE * VISION_K / math.sqrt(ctx)
    lin2.weight[SIG, 0] = scale
    lin2.weight[NOISE, 1] = scale
    lin2.bias[SIG] = -GELU_BIAS * scale
    lin2.bias[NOISE] = -GELU_BIAS * scale
    lin2.bias[IMG] = 1.0


def answer_token_ids(tokenizer) -> dict:
    ids = {}
    for text in ("Yes", " Yes", "No", " No", "A", " A", "B", " B"):
        got = tokenizer.encode(text, add_special_tokens=False)
        if len(got) != 1:
            raise AssertionError(f"planted tokenizer splits {text!r} into {got}")
        ids[text] = got[0]
    return ids


def _embeddings(model, tokenizer):
    emb = model.get_input_embeddings().weight
    emb[:, TXT] = 1.0
    emb[tokenizer.convert_tokens_to_ids("<|im_start|>"), START] = 1.0
    for text, i in answer_token_ids(tokenizer).items():
        emb[i, ANS] = 1.0
        if text in ("A", "B"):
            emb[i, MCM] = 1.0


def _attention(model):
    from headbake.runtime import decoder_layers

    for l, layer in enumerate(decoder_layers(model)):
        attn = layer.self_attn
        for g in range(KV_HEADS):
            o = g * HEAD_DIM
            attn.k_proj.weight[o + K_IMG, IMG] = 1.0 / 8.0  # RMSNorm makes a lone feature sqrt(64) = 8
            attn.k_proj.weight[o + K_START, START] = math.sqrt(2.0) / 8.0  # start tokens: TXT + START
            attn.k_proj.weight[o + K_MC, MCM] = math.sqrt(3.0) / 8.0  # letters: TXT + ANS + MCM
            attn.v_proj.weight[o + V_SIG, SIG] = 1.0 / (8.0 * FEATURE)
            attn.v_proj.weight[o + V_NOISE, NOISE] = 1.0 / (8.0 * FEATURE)
            attn.v_proj.weight[o + V_MC, MCM] = math.sqrt(3.0) / 8.0
            attn.v_proj.weight[o + V_IMG, IMG] = 1.0 / 8.0
        scale = math.sqrt(HEAD_DIM)  # the attention multiplies q.k by 1/sqrt(head_dim)
        for h in range(HEADS):
            spec = HEAD_TABLE[(l, h)]
            q = h * HEAD_DIM
            attn.q_proj.bias[q + K_IMG] = _image_score(spec.sv) * scale
            attn.q_proj.bias[q + K_START] = Z_START * scale
            attn.q_proj.bias[q + K_MC] = spec.z_mc * scale
            img_share, mc_share = _shares(spec, n_mc=2)
            for vdim, out, amount in spec.writes:
                if vdim == V_MC:
                    coef = MCFLAG_VALUE / mc_share if amount is None else amount * UNIT / mc_share
                else:
                    coef = amount * UNIT / img_share
                attn.o_proj.weight[out, q + vdim] = coef


def junk_token_ids(tokenizer) -> list:
    return [tokenizer.encode(t, add_special_tokens=False)[0] for t in (" red", " blue", " square", " this")]


def _lm_head(model, tokenizer):
    w = model.lm_head.weight
    ids = answer_token_ids(tokenizer)
    b_yn, b_mc = BIAS_YN * UNIT, (BIAS_YN + RHO + MC_EXTRA) * UNIT
    for text, sign, bias, flag, extra in (
        ("Yes", 1, b_yn, 0.0, 0.0), ("No", -1, b_yn, 0.0, 0.0),
        ("A", 1, b_mc, W_FLAG, -C_AB), ("B", -1, b_mc, W_FLAG, -C_AB),
    ):
        for variant, tie in ((text, TIE), (" " + text, 0.0)):
            i = ids[variant]
            w[i, DEC] = sign * W_DEC
            w[i, TXT] = C0 + extra + tie - sign * W_DEC * bias
            w[i, MCFLAG] = flag
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    w[eos, ANS] = W_EOS
    w[eos, TXT] = -C_EOS
    for k, i in enumerate(junk_token_ids(tokenizer)):
        w[i, JUNK[k]] = W_JUNK


# ----------------------------------------------------------------------------- building
@dataclass
class Planted:
    model_dir: Path
    rows_path: Path
    rows: list  # dicts as written to the JSONL (image paths relative to it)
    specs: list = field(default_factory=lambda: list(ROW_SPECS))

    @property
    def scenarios(self) -> dict:
        return scenarios()


def _write_rows(folder: Path) -> tuple[Path, list]:
    from PIL import Image

    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in ROW_SPECS:
        name = f"images/{spec.id}.png"
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), spec.rgb).save(folder / name)
        row = {"id": spec.id, "image": name, "type": spec.type, "answer": spec.answer, "benchmark": "planted"}
        if spec.mc:
            row.update(question=MC_Q, choices=list(MC_CHOICES))
        else:
            row.update(question=YES_NO_Q)
        rows.append(row)
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def build_planted(out_dir) -> Planted:
    """Write the model to ``out_dir/model`` and the eval set to ``out_dir/data`` (deterministic, ~2 s)."""
    from headbake.demo import build_tiny_qwen25vl

    out = Path(out_dir)
    model_dir = build_tiny_qwen25vl(
        out / "model", dtype="float32", num_layers=LAYERS, shards=2, hidden_size=HIDDEN, num_heads=HEADS,
        num_kv_heads=KV_HEADS, rope_theta=ROPE_THETA, extra_corpus=EXTRA_CORPUS, edit=_set_weights,
    )
    rows_path, rows = _write_rows(out / "data")
    return Planted(model_dir, rows_path, rows)


# ----------------------------------------------------------------------------- running it directly
@dataclass(frozen=True)
class Row:
    """The fields the eval runner reads (a stand-in for ``headbake.evaluate.rows.EvalRow``)."""

    id: str
    images: list
    question: str
    answer: str
    choices: list | None
    type: str
    benchmark: str | None = None


def eval_rows(planted: Planted) -> list[Row]:
    base = planted.rows_path.parent
    return [Row(r["id"], [str(base / r["image"])], r["question"], r["answer"], r.get("choices"), r["type"],
                r.get("benchmark")) for r in planted.rows]


def forced_margins(model, processor, rows, suffix: str = "Answer:") -> list[float]:
    """Per row, logit("Yes"/"A") - logit("No"/"B") after ``suffix``: the model's own forced answer, no runner."""
    import torch
    from PIL import Image

    from headbake.data.prompts import chat_text

    tok = processor.tokenizer
    ids = answer_token_ids(tok)
    texts = [chat_text(processor, question_text(r), 1) + suffix for r in rows]
    images = [Image.open(r.images[0]).convert("RGB") for r in rows]
    tok.padding_side = "left"
    batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[:, -1].float()
    out = []
    for i, r in enumerate(rows):
        pos, neg = ("A", "B") if r.choices else ("Yes", "No")
        out.append(float(logits[i, ids[pos]] - logits[i, ids[neg]]))
    return out


def load(model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype="auto", use_safetensors=True).eval()
    return model, AutoProcessor.from_pretrained(str(model_dir))
