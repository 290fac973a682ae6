"""The learned scorer: hashed word/char n-grams of the prompt plus the numeric features of
:mod:`routing.features`, into logistic regressions; saved as a safe artifact.

Model. A scikit-learn ``ColumnTransformer`` turns a batch into one sparse matrix:

- ``word``: ``HashingVectorizer`` word 1–2-grams (2**18 buckets) → sublinear TF-IDF
  (``word_ngrams``, ``short_words``, ``min_df`` and ``word_vocabulary`` change it: +0.01 APGR
  on GSM8K with 1–3-grams, short words and ``min_df=2``, none on MMLU, 2.8× slower scoring);
- ``char`` (off by default, ``char_features=2**18`` turns it on): ``HashingVectorizer``
  ``char_wb`` 3–5-grams → sublinear TF-IDF. Measured on MMLU/GSM8K it moves APGR by less
  than the fold-to-fold noise (−0.005 / +0.008) and scores 7× slower (``docs/training.md``);
- ``counts``: ``log1p`` of the count features and of the input tokens, standardised;
- ``ratio``: ``non_ascii_ratio``, standardised (both numeric blocks weighted 0.1);
- ``embedding`` (off by default, ``embedding="all-MiniLM-L6-v2"`` turns it on): the prompt's
  sentence embedding (:mod:`routing.embedding`), weighted ``embedding_weight`` (0.5), plus a
  vote of the 100 nearest training prompts blended into the probabilities (0.35): MMLU APGR
  0.685 → 0.700, GSM8K 0.638 → 0.666, but ~60 prompts/s, 350× slower scoring.

Hashing keeps no vocabulary, so the artifact holds only the IDF and scaler vectors and the
coefficients. The target is ordinal, learned as cumulative binary classifiers
``P(level > k)`` (one ``LogisticRegression`` each, made monotone in ``k``). Their own
probabilities are used: ``CalibratedClassifierCV`` (sigmoid or isotonic, ``calibration=``)
gave no better Brier score on MMLU or GSM8K. Trained on several datasets, each gets its own
intercept (``_fit_with_offsets`` in :mod:`routing.learned.training`), which helps on unseen
distributions.

- ``label="needs"``: the level is the index of the cheapest *adequate* model (quality ≥ the
  best quality on that prompt − ``tolerance``), models listed cheapest first. With two models
  that is ``y = q_strong > q_weak + tolerance``. ``score`` = P(level > 0), "needs more than
  the cheapest tier"; :meth:`~routing.learned.scorer.LearnedScorer.tier_probabilities` gives
  P(level = k).
- ``label="win_rate"`` (two models; RouteLLM's label): the level is weak better / tie /
  strong better, and ``score`` = P(strong better) + ½ P(tie), the strong model's win rate.
  It ranks by expected quality gain, which is what APGR rewards (see ``docs/training.md``).

Artifact. A zip holding ``model.skops`` (skops, loaded with an explicit trusted-types list,
never pickle) and ``metadata.json`` (format, feature version, classifier version, training
fingerprint, metrics, versions, the SHA-256 of ``model.skops``).
:func:`~routing.learned.artifact.load_scorer` checks all of it and raises
:class:`~routing.errors.ConfigError`; it caches by path and mtime.

The modules: :mod:`~routing.learned.config` (what to learn: ``TrainConfig``, the ordinal
target), :mod:`~routing.learned.design` (the featurizer and its input frame),
:mod:`~routing.learned.training` (``fit_scorer``), :mod:`~routing.learned.scorer`
(``LearnedScorer``) and :mod:`~routing.learned.artifact` (save, load and check).
"""
