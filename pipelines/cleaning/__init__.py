"""Cleaning rules as data: one rule interface, built-in rules, user plug-ins and the engine.

* ``rules``   — :class:`~pipelines.cleaning.rules.Decision`, the :class:`~pipelines.cleaning.rules.Rule`
  protocol and the built-in rules (normalize, langid, gopher_repetition, gopher_quality, c4, fineweb, pii).
* ``plugins`` — importing ``package.module:Class`` rules and validating ``clean.rules`` / ``clean.plugins``.
* ``engine``  — :class:`~pipelines.cleaning.engine.CleaningEngine`: builds the configured rules once and
  runs them over one document at a time.

Pure: no Beam, no Dagster, no I/O beyond what a rule's constructor loads (the language model, a
plug-in's weights) when a worker starts.
"""
