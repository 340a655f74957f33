"""`ttgen run`: the whole pipeline from one PIPELINE.yaml into one run folder."""
