"""mbdef: backdoor attacks and defenses (MB-Defense first) for instruction-tuned LLMs."""

from pathlib import Path

__version__ = "0.1.0"

# conf/ sits beside the package in the repository (editable install, see README).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
