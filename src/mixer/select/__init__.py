"""Data selection (RDS+ and baselines): embed a pool and a few examples per target task,
rank the pool per task by its best cosine to the task's examples, take round-robin.

Modules: ``pooling`` (position-weighted mean over real tokens), ``encoders`` (a causal LM's
final hidden states, or a sentence-transformers model), ``cache`` (content-keyed embedding
shards that survive rebuilds and interruptions), ``texts`` and ``targets`` (what gets
embedded), ``rank`` (faiss max-cosine per task, round-robin), ``report`` (select-report).
The step itself is ``mixer.steps.select``.
"""

from mixer.select.rank import round_robin, task_scores, top_order

__all__ = ["round_robin", "task_scores", "top_order"]
