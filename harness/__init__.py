"""harness: prompt it, fine-tune it, or give it retrieval? Build all three on one task and compare them."""

__version__ = "0.1.0"
