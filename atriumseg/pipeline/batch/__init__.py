"""Batch applications, one job per module: ``options`` (how a run goes), ``inputs`` (discovery), ``plan``
(output names, refusals, resumption, claims), ``locks``, ``readahead``, ``segment`` (the per-case model
step), ``export`` (outputs between two records), ``patient``, ``records``, ``report``, ``qc`` (contact sheet);
``runner`` (:func:`run_batch`, many inputs, threads) and ``case`` (:func:`process_input`, one input)."""
