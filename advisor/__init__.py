"""advisor: is prompting enough, does RAG fix it, or is a LoRA fine-tune worth the GPU spend?"""

__version__ = "0.1.0"
