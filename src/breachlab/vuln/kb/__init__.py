"""References from known fixes: a local index of vulnerable/fixed pairs, searched without a network.

``breachlab vuln kb build DATA --out KB`` indexes known pairs: the train split of a data run
(``breachlab vuln data build``) or a user's own fixes as JSON lines
(:mod:`breachlab.vuln.kb.store`). Search is lexical, over code tokens (identifiers, numbers,
operators): TF-IDF over 1–2-grams with cosine similarity, or BM25 (:mod:`breachlab.vuln.kb.index`).
The index is rebuilt from ``pairs.jsonl`` when a KB is opened (seconds for thousands of pairs),
so a KB folder holds only text and JSON.

Two uses:

* **references**: ``breachlab vuln eval … --set kb=KB --set kb_k=1`` shows the model the k
  most similar known pairs ("a similar known vulnerable function and its fix") before the code
  it judges (:func:`breachlab.vuln.prompts.reference_block`);
* **a retrieval baseline with no model**: ``breachlab vuln kb score KB --data DATA`` scores each
  function by its similarity to the nearest known vulnerable halves minus that to the nearest
  fixed halves; any model that does not beat it has learnt nothing retrieval gives for free.

Scan triage can open a KB once (``KnowledgeBase.load(path)``) and, per function, call
:func:`breachlab.vuln.kb.retrieve.references_for` (the pairs to show a model; render them with
:func:`breachlab.vuln.prompts.reference_block`) and ``KnowledgeBase.score`` (the baseline's score).
"""
