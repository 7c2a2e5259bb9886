"""Synthetic ESD-like emotional speech corpus rendered with espeak-ng."""
