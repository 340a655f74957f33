"""Terminus 2, Harbor's reference agent: prompts, response parsing and the tmux terminal layer."""
