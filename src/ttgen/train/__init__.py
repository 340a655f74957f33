"""Training and serving: the paper's SFT recipe on ttgen's export (`ttgen train`), a model
initialised from a config (`tiny`), and an OpenAI-compatible server for a checkpoint
(`ttgen serve`). Needs the ``train`` extra (torch, transformers, TRL, veRL)."""
