"""Benchmarks as eval components: the eval hook runs ``eval.benchmarks`` on the base model and after every stage.

    eval:
      benchmarks:
        - {name: k-mmbench, source: NCSOFT/K-MMBench, limit: 500}
        - {name: k-llava-w, judge: {url: http://localhost:8000/v1}}
        - {name: kmmlu, source: ./data/KMMLU, num_fewshot: 5}

Each benchmark's numbers go into the checkpoint's ``eval.json`` as ``bench/<name>/<metric>`` (with
``<metric>_stderr``, ``n`` and the bad-row counts), and its per-row answers into ``<stage>/bench/<name>.jsonl``.
One module per family: ``choice`` (K-MMBench, K-SEED, K-MMStar, K-DTCBench), ``llava_w`` (K-LLaVA-W with a local
judge), ``text_tasks`` (KMMLU, HAE-RAE, CLIcK, KoBEST through lm-eval), ``koffvqa`` (KOFFVQA, criteria graded by a
judge), ``konet`` (KoNET exam images, judged), ``korean_mc`` (K-Viscuit, KRETA, KMMLU-Redux, KMMLU-Pro, KoBALT by
generation), ``caption``, ``latency``; ``registry``
the names and families (the recipe schema checks names against it); ``run`` runs them.
"""
