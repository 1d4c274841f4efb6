"""The ways to solve a task: classical baseline, prompting, RAG and LoRA fine-tuning.

Heavy libraries (torch, transformers, chromadb, langchain) are imported inside these modules,
never by `advisor` at import time, so `advisor --help` stays instant.
"""
