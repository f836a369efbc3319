"""The SageMaker project template of this repository and its packaging (``package-template``).

Not part of the projects it seeds: the seed-code zip leaves this package out.
"""
