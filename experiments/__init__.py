"""Sweeps and benchmarks: the sweep-job hook run.py uses, the ``paper`` driver, headline benchmarks.

The figure sweeps themselves are Hydra experiment configs (``conf/experiment/fig*.yaml``), run as
``python run.py -m +experiment=fig11 experiment.size=quick``; the scripts here are run directly
(``python experiments/bench_headline.py``).
"""
