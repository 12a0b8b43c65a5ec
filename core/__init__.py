"""The functional core: lifecycle, scoring and intake logic as pure functions.

Nothing here imports faust, aiokafka or prometheus_client, reads the clock, the environment or a global:
time (`now`), the policy and the state are arguments, and side effects are returned as output events.
"""
