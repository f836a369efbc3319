"""The local runner: executes a SageMaker pipeline definition JSON on one machine, without AWS."""
