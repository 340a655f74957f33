"""Verifier scripts that adapter tasks carry in tests/ and run inside the container.

They use only Python's standard library, since all a task image is sure to have is python3.
`ttgen adapt` copies them into each task's tests/ folder next to the reference data.
"""
