"""Pipeline package: the pipeline factory, the build CLIs and their AWS plumbing."""
