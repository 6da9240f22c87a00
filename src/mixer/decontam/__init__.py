"""Decontamination against evaluation sets: exact n-gram index, rules, actions, report.

Rules (``rule``): ``tulu3`` (an instance overlaps a record when more than ``threshold``
of its tokens lie in 8-grams the record shares; user turns by default), ``ngram`` (any
shared n-gram, GPT-3 style, default 13, optionally over gold answers: ``eval_text``),
``exact`` (the whole normalized prompt contained in one turn). Instances shorter than n
follow ``short: contain | skip`` and are reported apart. Modules: ``tokenize`` (word
tokenizer + normalization), ``hashing`` and ``index`` (the exact index), ``core``
(chunked matching), ``apply`` (actions, ledger), ``report`` (matrix, files, table),
``reference`` (a brute-force twin for tests).
"""

from mixer.decontam.apply import DecontamConfig, Outcome, decontaminate, load_evals
from mixer.decontam.core import MatchParams, find_matches

__all__ = ["DecontamConfig", "MatchParams", "Outcome", "decontaminate", "find_matches", "load_evals"]
