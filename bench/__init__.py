"""The benchmark: ingest against the scripts a user would otherwise write.

corpus.py generates seeded CSV corpora; peers/ holds one module per rival;
measure.py times a process tree; check.py compares answers; run.py and
service.py drive it all and report. See bench/README.md.
"""
