"""Supervised fine-tuning on synthesized data: ``train/sft.py`` (the ``accelerate launch`` entry
point), tokenization with action-only labels, model loading (GGUF included) and GGUF export."""
