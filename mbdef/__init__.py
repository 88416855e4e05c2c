"""mbdef: backdoor attacks and defenses (MB-Defense first) for instruction-tuned LLMs.

Importing mbdef does nothing but define these constants; `mbdef.config.register()` sets Hydra up for conf/.
"""

from pathlib import Path

__version__ = "0.7.0"

# conf/ sits beside the package in the repository (editable install, see README).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
