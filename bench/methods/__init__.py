"""Adaptation methods, one registration each. Importing this package registers them all."""

from bench.methods import full_ft, lora, p_tuning, prefix_tuning, prompt_tuning  # noqa: F401  (registers)
from bench.methods.registry import METHODS, Method, MethodError, get_method, register_method

__all__ = ["METHODS", "Method", "MethodError", "get_method", "register_method"]
