"""mgn-cutover: batch cutover orchestrator for AWS Application Migration Service (MGN)."""

__version__ = "0.1.0"
