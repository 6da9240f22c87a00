"""``select``: keep ``budget`` records of the pool that best serve the target tasks.

``rds_plus`` (Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning") embeds every record as its
templated conversation and every target as prompt + gold answer with the base LM (final
hidden states, position-weighted mean, unit length), ranks the pool per task by the best
cosine to any of the task's targets and takes items round-robin across tasks, skipping
items already taken. ``embedding`` does the same with a static model (MiniLM distilled with
model2vec, ``static:all-MiniLM-L6-v2``, by default) or any sentence-transformers model.
``random`` and ``random_balanced`` (round-robin over sources) are the baselines the study
compares against.

Selected records keep their canonical order and get ``meta.select = {method, task, score,
rank, pick}``; every other record gets a ``not_selected`` ledger row naming its best score
and task. Embeddings live in a content-keyed cache that outlives builds (see
``mixer.select.cache``); the build keeps a pointer to it and the full score table in
``select/``.

    mix:
      - select:
          method: rds_plus              # or embedding | random | random_balanced
          budget: 326000
          model: meta-llama/Llama-2-7b-hf   # the base LM to be fine-tuned (or a local folder)
          eval_dir: evals/              # local benchmark files (default: the hub)
          store: float16                # halves the cache for 4096-dim vectors
          targets:
            gsm8k: {evalset: gsm8k, split: train, n: 8}
            mmlu: mmlu:dev              # shorthand: benchmark[:split]
            mine: {path: my_examples.jsonl, prompt_field: instruction, answer_field: output}
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator, model_validator

from mixer.meta import with_meta
from mixer.records import message_lists, removed_from
from mixer.select.cache import EmbeddingCache, default_root, embed
from mixer.select.encoders import CausalLMEncoder, Encoder
from mixer.select.models import STATIC_MINILM, sentence_encoder
from mixer.select.rank import round_robin, task_scores, top_order
from mixer.select.targets import TargetSpec, load_targets, parse_target
from mixer.select.texts import pool_texts, render, target_texts, topic
from mixer.steps.base import Step, StepConfig, StepContext, StepResult, register

SCORED = ("rds_plus", "embedding")


class SelectShortfall(Exception):
    """The budget exceeds the pool and ``allow_fewer`` is false."""


class SelectConfig(StepConfig):
    method: Literal["rds_plus", "embedding", "random", "random_balanced"]
    budget: int = Field(gt=0)
    targets: dict[str, TargetSpec] = {}
    eval_dir: str | None = None  # where registry benchmarks are read from (default: the hub)
    model: str | None = None  # rds_plus: the base LM (hub name or folder); embedding: static:all-MiniLM-L6-v2
    template: Literal["tulu", "plain"] | None = None  # default: tulu for rds_plus, plain for embedding
    max_length: int | None = None  # tokens; default 2048 for rds_plus, the model's own for embedding
    batch_size: int | None = None  # default 8 (causal LM) / 64 (sentence model) / 4096 (static)
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] | None = None  # causal LM compute dtype
    index: Literal["exact", "ivf"] = "exact"
    nlist: int | None = None
    nprobe: int = 8
    cache_dir: str | None = None  # default: $MIXER_CACHE/embeddings or ~/.cache/mixer/embeddings
    store: Literal["float32", "float16"] = "float32"  # on-disk vectors
    shard_size: int = Field(8192, gt=0)
    copy_embeddings: bool = False  # also write the pool's vectors into the build
    allow_fewer: bool = False

    @field_validator("targets", mode="before")
    @classmethod
    def _parse_targets(cls, v: Any) -> Any:
        if isinstance(v, list):  # [gsm8k, "mmlu:dev"] -> one task per benchmark
            v = {str(x).partition(":")[0]: x for x in v}
        if isinstance(v, dict):
            return {k: parse_target(x) for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SelectConfig:
        if self.method in SCORED and not self.targets:
            raise ValueError(f"method {self.method!r} needs 'targets' (task name -> examples)")
        if self.method == "rds_plus" and not self.model:
            raise ValueError("method 'rds_plus' needs 'model': the base LM to be fine-tuned (hub name or folder)")
        if self.method not in SCORED and (self.targets or self.model):
            raise ValueError(f"method {self.method!r} takes no 'targets' or 'model'")
        return self


@functools.lru_cache(maxsize=4)
def load_encoder(kind: str, model: str, max_length: int | None, device: str, dtype: str | None, base: str | None) -> Encoder:
    """One loaded model per process and setting (tests and multi-step specs reuse it)."""
    b = Path(base) if base else None
    if kind == "rds_plus":
        return CausalLMEncoder(model, max_length or 2048, 8, device, dtype, b)
    return sentence_encoder(model, max_length, None, device, b)


def _json_str(values: list[str]) -> dict[str, str]:
    return {v: json.dumps(v, ensure_ascii=False) for v in values}


def _out_dir(work_dir: Path) -> Path:
    """``select/``, or ``select-2/``... when the spec has several select steps."""
    d, k = work_dir / "select", 1
    while d.exists():
        k += 1
        d = work_dir / f"select-{k}"
    d.mkdir(parents=True)
    return d


@register
class Select(Step):
    name = "select"
    Config = SelectConfig

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        c: SelectConfig = self.config  # type: ignore[assignment]
        n = frame.height
        if c.budget > n and not c.allow_fewer:
            raise SelectShortfall(f"{ctx.scope}: select asks for {c.budget} records but the pool holds {n} (set allow_fewer: true to keep them all)")
        take = min(c.budget, n)
        info: dict[str, Any] = {"method": c.method, "budget": c.budget, "pool": n}
        if n == 0:
            return StepResult(frame, info={**info, "selected": 0})
        scores, task_names, extra = None, [], {}
        t0 = time.perf_counter()
        if c.method == "random":
            items = np.sort(ctx.rng("select", "random").permutation(n)[:take])
            claim, ranks = np.full(take, -1, dtype=np.int32), np.arange(take)
        elif c.method == "random_balanced":
            items, claim, ranks, task_names = self._balanced(frame, ctx, take)
        else:
            scores, task_names, extra = self._scores(frame, ctx)
            orders = [top_order(scores[:, t], take) for t in range(len(task_names))]
            t1 = time.perf_counter()
            items, claim, ranks = round_robin(orders, take, n)
            extra["seconds"]["round_robin"] = round(time.perf_counter() - t1, 3)
        info["selected"] = int(items.size)
        table = self._table(frame, c.method, items, claim, ranks, scores, task_names)
        kept_mask = table["selected"]
        kept = with_meta(frame.filter(kept_mask), "select", table.filter(kept_mask)["_payload"])
        removed = removed_from(frame.filter(~kept_mask).with_columns(table.filter(~kept_mask)["_detail"].alias("_d")),
                               self.name, "not_selected", pl.col("_d"))
        info.update(self._summary(table, task_names, extra))
        info["seconds_total"] = round(time.perf_counter() - t0, 3)
        if ctx.work_dir is not None:
            info["files"] = self._write(ctx.work_dir, table, info, extra)
        return StepResult(kept, removed, info)

    # ------------------------------------------------------------------ pieces

    def _balanced(self, frame: pl.DataFrame, ctx: StepContext, take: int):
        """Round-robin over sources (spec order), each source in its own random order."""
        sources = frame["source"].to_numpy()
        present = list(dict.fromkeys(frame["source"].to_list()))
        rank = ctx.source_rank()
        names = sorted(present, key=lambda s: (rank.get(s, len(rank)), present.index(s)))
        orders = []
        for s in names:
            idx = np.flatnonzero(sources == s)
            orders.append(idx[ctx.rng("select", "balanced", s).permutation(idx.size)])
        items, claim, ranks = round_robin(orders, take, frame.height)
        return items, claim, ranks, names

    def _scores(self, frame: pl.DataFrame, ctx: StepContext) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        c: SelectConfig = self.config  # type: ignore[assignment]
        t0 = time.perf_counter()
        model = c.model or STATIC_MINILM
        enc = load_encoder(c.method, model, c.max_length, c.device, c.dtype, str(ctx.spec_dir) if ctx.spec_dir else None)
        enc.batch_size = c.batch_size or (8 if c.method == "rds_plus" else 4096 if enc.fingerprint()["kind"] == "static" else 64)
        template = c.template or ("tulu" if c.method == "rds_plus" else "plain")
        targets, notes = load_targets(dict(c.targets), c.eval_dir, ctx.spec_dir, ctx.seed)
        root = Path(c.cache_dir).expanduser() if c.cache_dir else default_root()
        if c.cache_dir and ctx.spec_dir is not None and not root.is_absolute():
            root = ctx.spec_dir / root
        cache = EmbeddingCache(root, enc.fingerprint(), c.store)
        t_load = time.perf_counter() - t0
        pool_vecs, pst = embed(pool_texts(frame, template, enc.eos), enc, cache, c.shard_size, "select: pool", ctx.progress)
        tgt_vecs, tst = embed(target_texts(targets, template, enc.eos), enc, cache, c.shard_size, "select: targets", ctx.progress)
        names = list(c.targets)
        task_idx = targets["task"].replace_strict({t: i for i, t in enumerate(names)}, return_dtype=pl.Int32).to_numpy()
        t1 = time.perf_counter()
        scores = task_scores(pool_vecs, tgt_vecs, task_idx, len(names), c.index, c.nlist, c.nprobe)
        extra = {
            "targets": dict(targets.group_by("task", maintain_order=True).len().iter_rows()),
            "target_ids": targets.select("task", "instance_id"),
            "notes": notes,
            "template": template,
            "embedding": {"model": model, "fingerprint": enc.fingerprint(), "cache": str(cache.dir),
                          **({"distillation": enc.distill} if getattr(enc, "distill", None) else {}),
                          "pool": pst.as_dict(), "targets": tst.as_dict()},
            "seconds": {"load": round(t_load, 3), "embed_pool": round(pst.seconds, 3),
                        "embed_targets": round(tst.seconds, 3), "score": round(time.perf_counter() - t1, 3)},
            "pool_vecs": pool_vecs if c.copy_embeddings else None,
        }
        return scores, names, extra

    def _table(self, frame, method, items, claim, ranks, scores, names) -> pl.DataFrame:
        """One row per pool record: selected?, claiming task, its score, best score; the
        meta payload of selected rows and the ledger detail of the others."""
        n, budget = frame.height, self.config.budget  # type: ignore[attr-defined]
        selected = np.zeros(n, dtype=bool)
        selected[items] = True
        pick = np.full(n, -1, dtype=np.int64)
        pick[items] = np.arange(items.size)
        task = np.full(n, -1, dtype=np.int32)
        task[items] = claim
        rank = np.full(n, -1, dtype=np.int64)
        rank[items] = ranks
        col = message_lists(frame)[0]
        cols: dict[str, Any] = {"id": frame["id"], "source": frame["source"], "selected": selected,
                                "pick": pick, "rank": rank,
                                "topic": frame.select(topic(render(pl.col(col), "plain")))[:, 0]}
        cols["task"] = pl.Series("task", [None, *names], dtype=pl.Utf8).gather(task + 1)
        if scores is not None:
            best_t = scores.argmax(1)
            cols["score"] = np.where(selected, scores[np.arange(n), np.maximum(task, 0)], np.nan).astype(np.float32)
            cols["best_task"] = pl.Series("best_task", names, dtype=pl.Utf8).gather(best_t)
            cols["best_score"] = scores.max(1)
            for i, t in enumerate(names):
                cols[f"score:{t}"] = scores[:, i]
        else:
            cols["score"] = np.full(n, np.nan, dtype=np.float32)
        table = pl.DataFrame(cols)
        q = _json_str([method, *names])
        task_json = pl.col("task").replace_strict(q, default="null", return_dtype=pl.Utf8) if names else pl.lit("null")
        score_json = pl.when(pl.col("score").is_nan()).then(pl.lit("null")).otherwise(pl.col("score").round(6).cast(pl.Utf8))
        payload = pl.concat_str([
            pl.lit('{"method":' + q[method] + ',"task":'), task_json, pl.lit(',"score":'), score_json,
            pl.lit(',"rank":'), pl.col("rank").cast(pl.Utf8), pl.lit(',"pick":'), pl.col("pick").cast(pl.Utf8), pl.lit("}"),
        ])
        kept_n = int(items.size)
        if scores is not None:
            floor = table.filter("selected").group_by("task").agg(pl.col("score").min().alias("_floor"))
            table = table.join(floor, left_on="best_task", right_on="task", how="left", maintain_order="left")
            detail = pl.format("best score {} for {} (lowest {} pick: {}); {} kept {} of {}",
                               pl.col("best_score").round(4), pl.col("best_task"), pl.col("best_task"),
                               pl.col("_floor").round(4).cast(pl.Utf8).fill_null("none"),
                               pl.lit(method), pl.lit(kept_n), pl.lit(n))
        elif method == "random_balanced":
            detail = pl.lit(f"random_balanced: not among the {kept_n} of {n} drawn round-robin over {len(names)} sources")
        else:
            detail = pl.lit(f"random: not among the {kept_n} of {n} drawn (budget {budget})")
        table = table.with_columns(payload.alias("_payload"), detail.alias("_detail"))
        return table.drop("_floor", strict=False)

    def _summary(self, table: pl.DataFrame, names: list[str], extra: dict[str, Any]) -> dict[str, Any]:
        sel = table.filter("selected")
        out: dict[str, Any] = {
            "selected_by_source": dict(sel.group_by("source").len().sort("source").iter_rows()),
        }
        if names:
            per = {}
            for t in names:
                s = sel.filter(pl.col("task") == t)["score"]
                d: dict[str, Any] = {"claimed": s.len()}
                if "targets" in extra:
                    d["targets"] = extra["targets"].get(t, 0)
                if s.len() and not s.is_nan().all():
                    d.update(score_min=round(float(s.min()), 4), score_median=round(float(s.median()), 4),
                             score_max=round(float(s.max()), 4))
                per[t] = d
            out["tasks"] = per
        for k in ("notes", "template", "embedding", "seconds"):
            if k in extra:
                out[k] = extra[k]
        return out

    def _write(self, work_dir: Path, table: pl.DataFrame, info: dict[str, Any], extra: dict[str, Any]) -> str:
        d = _out_dir(work_dir)
        table.drop("_payload", "_detail").write_parquet(d / "scores.parquet", compression="zstd")
        if isinstance(extra.get("target_ids"), pl.DataFrame):
            extra["target_ids"].write_parquet(d / "targets.parquet")
        if extra.get("pool_vecs") is not None:
            np.save(d / "pool_embeddings.npy", extra["pool_vecs"])
        config = self.config.model_dump(mode="json")  # type: ignore[attr-defined]
        (d / "selection.json").write_text(json.dumps({"config": config, **info}, indent=2, default=_json_default))
        return d.name


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)
