"""LLM task synthesis: seed-based (`ttgen synth seeds`) and skill-based (`ttgen synth skills`).

answer.py  the XML answer format and its parser      build.py   answer → Harbor task directory
prompts.py the generation prompts (prompts/*.md)      gates.py   quality gates
engine.py  generation loop: retries, novelty, gates, records, resume
items.py   work items: seeds and sampled skills → prompts
"""
