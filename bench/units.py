"""Units shared by every measurement and report."""

MIB = 2**20
"""One mebibyte in bytes: every '_mib' metric (memory, checkpoint and parameter sizes) uses it."""
