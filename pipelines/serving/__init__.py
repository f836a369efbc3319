"""A local endpoint that speaks SageMaker's inference contract (``/ping``, ``/invocations``) on loopback."""
