"""Iterative Reasoning Preference Optimization (Pang et al., 2024) for Hugging Face causal LMs.

`import irpo` stays light: heavy libraries (torch, transformers, vLLM) are imported by the
modules that need them, when they are used.
"""

__version__ = "0.1.0"
