"""Worked examples (not part of the installed package); run from the repository root with PYTHONPATH=."""
