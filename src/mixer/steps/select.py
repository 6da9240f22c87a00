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
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator, model_validator

from mixer.infos import SUM
from mixer.meta import with_meta
from mixer.records import message_lists, removed_from
from mixer.select.cache import (
    KEY,
    EmbeddingCache,
    EmbedStats,
    default_root,
    embed,
    fill_texts,
    write_vectors,
)
from mixer.select.encoders import CausalLMEncoder, Encoder
from mixer.select.models import STATIC_MINILM, sentence_encoder
from mixer.select.rank import round_robin, task_scores, top_order
from mixer.select.targets import TargetSpec, load_targets, parse_target
from mixer.select.texts import Template, pool_texts, render, target_texts, topic
from mixer.steps.base import Decision, Mapped, Step, StepConfig, StepContext, register

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
    """``map`` returns compact keys per batch (id, source, topic and, for the scored methods,
    the 128-bit key of the record's templated text, whose vector it embeds into the cache
    when the cache lacks it); ``decide`` reads the pool's vectors back from the cache in key
    order (one mapped file, never the records), scores, picks and writes ``select/``;
    ``apply`` keeps the picked rows of each batch with their meta and lists the others."""

    name = "select"
    Config = SelectConfig
    info_rules = {"computed": SUM, "seconds": SUM}

    @property
    def is_global(self) -> bool:
        return True

    def prepare(self, ctx: StepContext) -> None:
        """Load the model once (its fingerprint keys the cache) before any batch is embedded."""
        c: SelectConfig = self.config  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._load_seconds = 0.0
        if c.method not in SCORED:
            return
        t = time.perf_counter()
        self._spec_dir = str(ctx.spec_dir) if ctx.spec_dir else None
        enc, _ = self._embedder()
        self._load_seconds = time.perf_counter() - t
        self._template: Template = c.template or ("tulu" if c.method == "rds_plus" else "plain")
        self._eos = enc.eos
        root = Path(c.cache_dir).expanduser() if c.cache_dir else default_root()
        if c.cache_dir and ctx.spec_dir is not None and not root.is_absolute():
            root = ctx.spec_dir / root
        self._root = root

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to workers without the lock (rebuilt there; the model loads once per process)."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _embedder(self) -> tuple[Encoder, EmbeddingCache | None]:
        c: SelectConfig = self.config  # type: ignore[assignment]
        enc = load_encoder(c.method, c.model or STATIC_MINILM, c.max_length, c.device, c.dtype, self._spec_dir)
        enc.batch_size = c.batch_size or (8 if c.method == "rds_plus" else 4096 if enc.fingerprint()["kind"] == "static" else 64)
        root = getattr(self, "_root", None)
        return enc, EmbeddingCache(root, enc.fingerprint(), c.store) if root is not None else None

    def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:
        """Keys ``id, source, _topic`` (and ``_hi, _lo``: the text key); the batch's distinct
        texts missing from the cache are embedded into it."""
        c: SelectConfig = self.config  # type: ignore[assignment]
        col = message_lists(batch)[0]
        keys = batch.select("id", "source", topic(render(pl.col(col), "plain")).alias("_topic"))
        if c.method not in SCORED:
            return Mapped(batch, keys=keys)
        texts = pool_texts(batch, self._template, self._eos)
        with self._lock:  # encoders learn as they go (static word tables): one batch at a time
            enc, cache = self._embedder()
            assert cache is not None
            text_key, _, _, stats = fill_texts(texts, enc, cache, c.shard_size, "select: pool", ctx.progress)
        keys = keys.with_columns(pl.Series("_hi", text_key["hi"]), pl.Series("_lo", text_key["lo"]))
        return Mapped(batch, keys=keys, info={"computed": stats.computed, "seconds": stats.seconds})

    def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """The keys collected whole (ids, topics, text keys: the pool's vectors are what is large)."""
        return self._decide(keys.collect(), ctx, info)

    def _decide(self, keys: pl.DataFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """The picks over the whole pool (``keys`` in canonical order): a table of every
        pool record's id, whether it is kept, its meta payload or its ledger detail."""
        c: SelectConfig = self.config  # type: ignore[assignment]
        n = keys.height
        if c.budget > n and not c.allow_fewer:
            raise SelectShortfall(f"{ctx.scope}: select asks for {c.budget} records but the pool holds {n} (set allow_fewer: true to keep them all)")
        take = min(c.budget, n)
        out: dict[str, Any] = {"method": c.method, "budget": c.budget, "pool": n}
        if n == 0:
            return Decision(pl.DataFrame(schema={"id": pl.Utf8, "selected": pl.Boolean, "_payload": pl.Utf8, "_detail": pl.Utf8}),
                            {**out, "selected": 0})
        scores, task_names, extra = None, [], {}
        t0 = time.perf_counter()
        if c.method == "random":
            items = np.sort(ctx.rng("select", "random").permutation(n)[:take])
            claim, ranks = np.full(take, -1, dtype=np.int32), np.arange(take)
        elif c.method == "random_balanced":
            items, claim, ranks, task_names = self._balanced(keys, ctx, take)
        else:
            scores, task_names, extra = self._scores(keys, ctx, info)
            orders = [top_order(scores[:, t], take) for t in range(len(task_names))]
            t1 = time.perf_counter()
            items, claim, ranks = round_robin(orders, take, n)
            extra["seconds"]["round_robin"] = round(time.perf_counter() - t1, 3)
        out["selected"] = int(items.size)
        table = self._table(keys, c.method, items, claim, ranks, scores, task_names)
        out.update(self._summary(table, task_names, extra))
        out["seconds_total"] = round(time.perf_counter() - t0, 3)
        if ctx.work_dir is not None:
            out["files"] = self._write(ctx.work_dir, table, out, extra)
        return Decision(table.select("id", "selected", "_payload", "_detail"), out)

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        d = batch.select("id").join(decision.data, on="id", how="left", maintain_order="left")
        picked = d["selected"].fill_null(False)
        kept = with_meta(batch.filter(picked), "select", d.filter(picked)["_payload"])
        rest = batch.filter(~picked).with_columns(d.filter(~picked)["_detail"].alias("_d"))
        return kept, removed_from(rest, self.name, "not_selected", pl.col("_d"))

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

    def _scores(self, keys: pl.DataFrame, ctx: StepContext, info: dict[str, Any]) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        """Scores (pool x tasks): the pool's vectors read back from the cache in key order
        (a mapped scratch file, deleted afterwards), the targets embedded here."""
        c: SelectConfig = self.config  # type: ignore[assignment]
        enc, cache = self._embedder()
        assert cache is not None
        targets, notes = load_targets(dict(c.targets), c.eval_dir, ctx.spec_dir, ctx.seed)
        pool_key = np.empty(keys.height, dtype=KEY)
        pool_key["hi"], pool_key["lo"] = keys["_hi"].to_numpy(), keys["_lo"].to_numpy()
        unique = len(np.unique(pool_key))
        computed = int(info.get("computed", 0))
        pool = EmbedStats(texts=keys.height, unique=unique, reused=unique - computed, computed=computed, seconds=info.get("seconds", 0.0))
        tgt_vecs, tst = embed(target_texts(targets, self._template, self._eos), enc, cache, c.shard_size, "select: targets", ctx.progress)
        names = list(c.targets)
        task_idx = targets["task"].replace_strict({t: i for i, t in enumerate(names)}, return_dtype=pl.Int32).to_numpy()
        with tempfile.TemporaryDirectory(prefix=".select-", dir=ctx.work_dir) as scratch:
            pool_vecs = write_vectors(cache, pool_key, Path(scratch) / "pool.npy")
            t1 = time.perf_counter()
            scores = task_scores(pool_vecs, tgt_vecs, task_idx, len(names), c.index, c.nlist, c.nprobe)
            kept_vecs = np.array(pool_vecs) if c.copy_embeddings else None
            del pool_vecs
        extra = {
            "targets": dict(targets.group_by("task", maintain_order=True).len().iter_rows()),
            "target_ids": targets.select("task", "instance_id"),
            "notes": notes,
            "template": self._template,
            "embedding": {"model": c.model or STATIC_MINILM, "fingerprint": enc.fingerprint(), "cache": str(cache.dir),
                          **({"distillation": enc.distill} if getattr(enc, "distill", None) else {}),
                          "pool": pool.as_dict(), "targets": tst.as_dict()},
            "seconds": {"load": round(self._load_seconds, 3), "embed_pool": round(pool.seconds, 3),
                        "embed_targets": round(tst.seconds, 3), "score": round(time.perf_counter() - t1, 3)},
            "pool_vecs": kept_vecs,
        }
        return scores, names, extra

    def _table(self, frame, method, items, claim, ranks, scores, names) -> pl.DataFrame:
        """One row per pool record (``frame``: the keys): selected?, claiming task, its
        score, best score; the meta payload of selected rows and the ledger detail of the
        others."""
        n, budget = frame.height, self.config.budget  # type: ignore[attr-defined]
        selected = np.zeros(n, dtype=bool)
        selected[items] = True
        pick = np.full(n, -1, dtype=np.int64)
        pick[items] = np.arange(items.size)
        task = np.full(n, -1, dtype=np.int32)
        task[items] = claim
        rank = np.full(n, -1, dtype=np.int64)
        rank[items] = ranks
        cols: dict[str, Any] = {"id": frame["id"], "source": frame["source"], "selected": selected,
                                "pick": pick, "rank": rank, "topic": frame["_topic"]}
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
